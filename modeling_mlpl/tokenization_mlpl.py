"""Character CTC tokenizer: blank = pad = id 0, `|` between words, case and punctuation kept."""

from __future__ import annotations

import json
import os
import tempfile
import unicodedata
from collections import Counter
from collections.abc import Iterable
from itertools import groupby

from transformers import Wav2Vec2CTCTokenizer

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
    """

    vocab_files_names = {"vocab_file": "vocab.json"}
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, vocab_file, unk_token=UNK_TOKEN, pad_token=PAD_TOKEN, word_delimiter_token=WORD_DELIMITER,
                 bos_token=None, eos_token=None, **kwargs):  # fmt: skip
        self.unknown_characters: Counter = Counter()
        kwargs.pop("do_lower_case", None)  # case is kept (paper); saved configs carry the key back
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
        # Wav2Vec2CTCTokenizer (transformers 5) drops special tokens, the blank included, before merging
        # repeats, so "a <blank> a" would decode to "a". Merge repeats first when no offsets are asked for.
        wants_offsets = kwargs.get("output_char_offsets") or kwargs.get("output_word_offsets")
        if skip_special_tokens and group_tokens and not wants_offsets:
            token_ids = [k for k, _ in groupby(int(i) for i in token_ids)]
            group_tokens = False
        return super()._decode(token_ids, skip_special_tokens=skip_special_tokens, group_tokens=group_tokens, **kwargs)

    def oov_characters(self, text: str) -> set[str]:
        """Characters of `text` that the vocabulary lacks (would become `<unk>`)."""
        return {ch for ch in transcript_characters(text) if ch not in self.encoder}

    def __len__(self) -> int:
        return len(self.encoder)


__all__ = ["MLPLTokenizer", "transcript_characters", "PAD_TOKEN", "UNK_TOKEN", "WORD_DELIMITER"]
