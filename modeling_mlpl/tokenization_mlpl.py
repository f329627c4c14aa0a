"""Character CTC tokenizer: blank = pad = id 0, `|` between words, case and punctuation kept."""

from __future__ import annotations

import json
import os
import tempfile
import unicodedata
from collections import Counter
from collections.abc import Iterable

from transformers import Wav2Vec2CTCTokenizer

from .ctc_text import CTCVocab, path_text

PAD_TOKEN = "<pad>"  # also the CTC blank
UNK_TOKEN = "<unk>"
WORD_DELIMITER = "|"
SPECIAL_TOKENS = (PAD_TOKEN, UNK_TOKEN, WORD_DELIMITER)


def transcript_characters(text: str) -> list[str]:
    """The CTC targets of a transcript: NFC characters, whitespace runs -> one `|`."""
    return list(WORD_DELIMITER.join(unicodedata.normalize("NFC", text).split()))


class MLPLTokenizer(Wav2Vec2CTCTokenizer):
    r"""Character-level CTC tokenizer (the paper's 8064 characters + blank for CV 6.1).

    Unknown characters map to `<unk>` and are counted in `unknown_characters` (a `Counter`), so a data
    pipeline can report or filter them instead of silently training on `<unk>`.

    Transcript text is characters only: a literal `<pad>` (or `<unk>`, `<s>`, ...) in it is split into
    its characters (`split_special_tokens=True`), never the special id; `<pad>` would otherwise be the
    CTC blank inside training targets, and the spaces around it would be lost. Characters the
    vocabulary lacks become `<unk>` and are counted as above (the data filters drop those rows).
    """

    vocab_files_names = {"vocab_file": "vocab.json"}
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, vocab_file, unk_token=UNK_TOKEN, pad_token=PAD_TOKEN, word_delimiter_token=WORD_DELIMITER,
                 bos_token=None, eos_token=None, **kwargs):  # fmt: skip
        self.unknown_characters: Counter = Counter()
        kwargs.pop("do_lower_case", None)  # case is kept (paper); saved configs carry the key back
        kwargs["split_special_tokens"] = True  # text never spells a special token (see the class docstring)
        super().__init__(
            vocab_file,
            bos_token=bos_token,
            eos_token=eos_token,
            unk_token=unk_token,
            pad_token=pad_token,
            word_delimiter_token=word_delimiter_token,
            do_lower_case=False,
            **kwargs,
        )
        if self.encoder.get(str(pad_token)) != 0:
            raise ValueError(f"{pad_token!r} (the CTC blank) must have id 0 in {vocab_file}")

    @classmethod
    def build_from_texts(cls, texts: Iterable[str], min_count: int = 1, save_directory: str | None = None,
                         **kwargs) -> "MLPLTokenizer":  # fmt: skip
        """Vocabulary = special tokens, then every character seen >= `min_count` times, in code-point order.

        Code-point order (not frequency) makes the ids independent of corpus order and sampling.
        """
        counts = Counter(ch for text in texts for ch in transcript_characters(text))
        chars = sorted(ch for ch, n in counts.items() if n >= min_count and ch not in SPECIAL_TOKENS)
        vocab = {tok: i for i, tok in enumerate([*SPECIAL_TOKENS, *chars])}
        directory = save_directory or tempfile.mkdtemp(prefix="mlpl-tokenizer-")
        os.makedirs(directory, exist_ok=True)
        vocab_file = os.path.join(directory, "vocab.json")
        with open(vocab_file, "w", encoding="utf-8") as f:
            json.dump(vocab, f, ensure_ascii=False, indent=0)
        return cls(vocab_file, **kwargs)

    def _tokenize(self, text, **kwargs):
        tokens = transcript_characters(text)
        for ch in tokens:
            if ch not in self.encoder:
                self.unknown_characters[ch] += 1
        return tokens

    def _decode(self, token_ids, skip_special_tokens=False, group_tokens=True, **kwargs):
        # A CTC frame path (group_tokens) without offsets is rendered by the package's one text rule
        # (ctc_text.py: repeats merged, blanks and special tokens dropped, one space between words), so
        # the ASR pipeline, `processor.greedy_decode` and the PL labels agree. (Wav2Vec2CTCTokenizer in
        # transformers 5 would also drop the blank before merging repeats: "a <blank> a" -> "a".)
        # With offsets (the pipeline's timestamps), special tokens' frames become blank frames first, so
        # the characters and their times follow the same rule.
        wants_offsets = kwargs.get("output_char_offsets") or kwargs.get("output_word_offsets")
        if group_tokens and not wants_offsets:
            return path_text([int(i) for i in token_ids], self.ctc_vocab)
        if group_tokens:
            table = self.ctc_vocab
            drop = {i for i, text in enumerate(table.renders) if not text and i != table.blank_id}
            token_ids = [table.blank_id if int(i) in drop else int(i) for i in token_ids]
            skip_special_tokens = False  # the blank must stay until repeats are merged
        return super()._decode(token_ids, skip_special_tokens=skip_special_tokens, group_tokens=group_tokens, **kwargs)

    @property
    def ctc_vocab(self) -> CTCVocab:
        """How each id renders as text under the CTC text rule (rebuilt if tokens were added)."""
        cached = getattr(self, "_ctc_vocab", None)
        if cached is None or len(cached) != len(self):
            cached = self._ctc_vocab = CTCVocab.from_tokenizer(self)
        return cached

    def oov_characters(self, text: str) -> set[str]:
        """Characters of `text` that the vocabulary lacks (would become `<unk>`)."""
        return {ch for ch in transcript_characters(text) if ch not in self.encoder}

    def __len__(self) -> int:
        return len(self.encoder)


__all__ = ["MLPLTokenizer", "transcript_characters", "PAD_TOKEN", "UNK_TOKEN", "WORD_DELIMITER"]
