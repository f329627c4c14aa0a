"""The one rule that turns CTC outputs into text, used by every decoder of the package.

Greedy decoding (``MLPLProcessor.greedy_decode`` / ``batch_decode(use_lm=False)``,
``LMDecoder.greedy_decode``, ``decoding.greedy_decode``), the pseudo-label alignment
(``pseudo_labeling.alignment``) and the beam-search backends all render text here, so the greedy
column of a table, lm_tuning's greedy baseline and a pseudo-label agree character for character.

The rule:

1. best path: argmax per frame (ties: the lowest id), repeats merged, blanks dropped; any
   other token between two equal ones (a special token too) keeps them apart, as CTC does;
2. the word delimiter (``|``) renders as a space; a run of delimiters (also with tokens that
   render as nothing between them) collapses to one space, and none is kept at either end;
3. special tokens (``<unk>``, ``<s>``, ``</s>``, ``<xx>`` language tags, ``[...]``) render as
   nothing (``unk_text`` can give ``<unk>`` a visible text);
4. a combining mark that NFC composes with the character before it into one character is merged
   into it (it keeps that character's start time); marks after a space are kept as they are.

Beam-search outputs are already words: :func:`normalize_text` applies rules 2-4 to them.
This module is copied as remote code by ``save_pretrained`` (the processor imports it), so it
depends on numpy and the standard library only.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "Span",
    "Piece",
    "CTCVocab",
    "is_special_token",
    "best_path",
    "best_path_ids",
    "spans_from_path",
    "path_text",
    "assemble",
    "render_spans",
    "greedy_text",
    "greedy_texts",
    "normalize_text",
]

_SPECIAL = re.compile(r"^<[^<>]+>$|^\[[^\[\]]+\]$")
SPACE = " "


def is_special_token(token: str) -> bool:
    """``<...>`` or ``[...]``: a token that is never text (blank, unk, sentence marks, language tags)."""
    return bool(_SPECIAL.match(token))


@dataclass(frozen=True)
class Span:
    """One emitted token: its id and the output frames [first, last] it occupies in the alignment."""

    token: int
    first: int
    last: int


@dataclass(frozen=True)
class Piece:
    """Rendered text of one emitted token (or several merged by rule 4) and its frames."""

    text: str
    first: int
    last: int
    token: int


@dataclass(frozen=True)
class CTCVocab:
    """How each token id renders: blank and specials -> "", word delimiter -> " ", others -> themselves."""

    tokens: tuple[str, ...]
    blank_id: int
    delimiter_id: int
    unk_id: int | None
    renders: tuple[str, ...]

    @classmethod
    def from_tokens(
        cls,
        tokens: Sequence[str],
        pad_token: str = "<pad>",
        word_delimiter: str = "|",
        unk_token: str = "<unk>",
        unk_text: str = "",
    ) -> "CTCVocab":
        """Tokens in id order; ``pad_token`` is the CTC blank."""
        tokens = tuple(tokens)
        if pad_token not in tokens:
            raise ValueError(f"blank/pad token {pad_token!r} not in the vocabulary")
        if word_delimiter not in tokens:
            raise ValueError(f"word delimiter {word_delimiter!r} not in the vocabulary")
        if SPACE in tokens:
            raise ValueError("the vocabulary has a ' ' token besides the word delimiter")
        if len(set(tokens)) != len(tokens):
            raise ValueError("the vocabulary has duplicate tokens")
        renders = []
        for token in tokens:
            if token == word_delimiter:
                renders.append(SPACE)
            elif token == unk_token:
                renders.append(unk_text)
            elif token == pad_token or is_special_token(token):
                renders.append("")
            else:
                renders.append(token)
        unk_id = tokens.index(unk_token) if unk_token in tokens else None
        return cls(tokens, tokens.index(pad_token), tokens.index(word_delimiter), unk_id, tuple(renders))

    @classmethod
    def from_id2token(cls, id2token: Mapping[int, str], blank: int = 0, word_delimiter: str = "|",
                      unk_token: str = "<unk>") -> "CTCVocab":  # fmt: skip
        """From an ``{id: token}`` map whose ids are 0..V-1 (the pseudo-labeler's layout)."""
        tokens = [id2token[i] for i in range(len(id2token))]
        return cls.from_tokens(tokens, tokens[blank], word_delimiter, unk_token)

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, unk_text: str = "") -> "CTCVocab":
        """From a ``Wav2Vec2CTCTokenizer``-like tokenizer (``get_vocab``, pad/unk/word-delimiter tokens)."""
        encoder = tokenizer.get_vocab()
        tokens = [tok for tok, _ in sorted(encoder.items(), key=lambda kv: kv[1])]
        if [encoder[t] for t in tokens] != list(range(len(tokens))):
            raise ValueError(f"tokenizer ids are not 0..{len(tokens) - 1}")
        delimiter = getattr(tokenizer, "word_delimiter_token", None) or "|"
        return cls.from_tokens(tokens, str(tokenizer.pad_token), str(delimiter), str(tokenizer.unk_token), unk_text)

    @property
    def special_ids(self) -> list[int]:
        """Ids of special tokens other than the blank, ``<unk>`` and the delimiter (never emitted as text)."""
        keep = {self.blank_id, self.delimiter_id, self.unk_id}
        return [i for i, t in enumerate(self.tokens) if i not in keep and is_special_token(t)]

    def __len__(self) -> int:
        return len(self.tokens)


def best_path_ids(logits: Any) -> np.ndarray:
    """Argmax over the last axis; torch tensors are reduced where they live (no (B, T, V) copy)."""
    if hasattr(logits, "detach"):  # torch, possibly bf16 on GPU
        return logits.detach().argmax(-1).cpu().numpy()
    return np.asarray(logits).argmax(-1)


def best_path(logits: Any, blank: int = 0) -> list[Span]:
    """Best path of (T, V) logits or log-probs: argmax per frame, repeats merged, blanks dropped."""
    return spans_from_path(best_path_ids(logits).reshape(-1), blank)


def spans_from_path(path: Any, blank: int = 0) -> list[Span]:
    """A frame-level token path (T,) -> one span per emitted token (repeats merged, blanks dropped)."""
    spans: list[Span] = []
    prev = blank
    for t, token in enumerate(np.asarray(path).tolist()):
        if token != blank and token == prev:
            spans[-1] = Span(token, spans[-1].first, t)
        elif token != blank:
            spans.append(Span(token, t, t))
        prev = token
    return spans


def assemble(pieces: Iterable[Piece]) -> list[Piece]:
    """Rules 2-4 over rendered pieces in order: empty pieces go, spaces collapse, marks merge."""
    out: list[Piece] = []
    for piece in pieces:
        if not piece.text:
            continue
        if piece.text == SPACE:
            if out and out[-1].text != SPACE:
                out.append(piece)
            continue
        if out and out[-1].text != SPACE and unicodedata.combining(piece.text[0]):
            merged = unicodedata.normalize("NFC", out[-1].text + piece.text)
            if len(merged) == 1:
                prev = out[-1]
                out[-1] = Piece(merged, prev.first, piece.last, prev.token)
                continue
        out.append(piece)
    while out and out[-1].text == SPACE:
        out.pop()
    return out


def render_spans(spans: Sequence[Span], vocab: CTCVocab) -> list[Piece]:
    """Emitted tokens -> the pieces of their text (join ``piece.text`` for the string)."""
    return assemble(Piece(vocab.renders[s.token], s.first, s.last, s.token) for s in spans)


def path_text(path: Any, vocab: CTCVocab) -> str:
    """Text of a frame-level token path (T,): a best path, or a beam search's token path."""
    return "".join(p.text for p in render_spans(spans_from_path(path, vocab.blank_id), vocab))


def greedy_text(logits: Any, vocab: CTCVocab) -> str:
    """Best-path text of one utterance's (T, V) logits."""
    return path_text(best_path_ids(logits).reshape(-1), vocab)


def greedy_texts(logits: Any, vocab: CTCVocab, lengths: Any = None) -> list[str]:
    """Best-path texts of (B, T, V) padded logits (``lengths``: valid frames) or a list of (T_i, V)."""
    if isinstance(logits, (list, tuple)):
        best = [best_path_ids(x).reshape(-1) for x in logits]
    else:
        ids = best_path_ids(logits)
        ids = ids[None] if ids.ndim == 1 else ids  # (B, T)
        if lengths is None:
            lengths = [ids.shape[1]] * ids.shape[0]
        lengths = [int(n) for n in np.asarray(_as_numpy(lengths)).reshape(-1)]
        if len(lengths) != ids.shape[0]:
            raise ValueError(f"{len(lengths)} lengths for a batch of {ids.shape[0]}")
        best = [row[:n] for row, n in zip(ids, lengths)]
    return [path_text(b, vocab) for b in best]


def _as_numpy(x: Any) -> Any:
    """A lengths tensor or sequence as numpy-compatible data (torch tensors are moved to the CPU)."""
    return x.detach().cpu().numpy() if hasattr(x, "detach") else x


def normalize_text(text: str) -> str:
    """Rules 2-4 for text that is already rendered (a beam search's words): one space between words."""
    pieces = (Piece(SPACE if ch.isspace() else ch, i, i, -1) for i, ch in enumerate(text))
    return "".join(p.text for p in assemble(pieces))
