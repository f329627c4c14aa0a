"""Transcript normalisation and filters, as in the paper: case and punctuation are kept.

Only what every corpus needs happens here: Unicode NFC (so "é" is one character whatever the
source), stripping, and collapsing whitespace runs to one space. Mapping the space to the word
delimiter ``|`` is the tokenizer's job. The filters drop rows a CTC model cannot learn from
(out-of-vocabulary characters, labels longer than the output frames) and say how many and why.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from .configuration_mlpl import CONV_STRIDE, SAMPLING_RATE
from .feature_extraction_mlpl import num_feature_frames

_WHITESPACE = re.compile(r"\s+")


def normalize_transcript(text: str) -> str:
    """NFC, strip, collapse any whitespace run (tabs, newlines, NBSP) to one space. Case and
    punctuation are kept (the paper's character set has both)."""
    if text is None:
        return ""
    text = unicodedata.normalize("NFC", str(text))
    # \s covers NBSP and other Unicode spaces, and the zero-width ones are removed outright.
    text = text.replace("\u200b", "").replace("\ufeff", "")
    return _WHITESPACE.sub(" ", text).strip()


# How pseudo-labels' text is normalised (the labeler's `text_normalization`): name -> function. A
# teacher's own text (e.g. Whisper's cased, punctuated output) is kept as `text_raw` beside it.
TEXT_NORMALIZATIONS: dict[str, Callable[[str], str]] = {"transcript": normalize_transcript}


def normalize_as(text: str, normalization: str = "transcript") -> str:
    """`text` normalised by the named rule of :data:`TEXT_NORMALIZATIONS`."""
    try:
        rule = TEXT_NORMALIZATIONS[normalization]
    except KeyError:
        raise ValueError(f"unknown text normalization {normalization!r}; known: {', '.join(TEXT_NORMALIZATIONS)}") from None
    return rule(text)


def model_output_frames(n_samples: int) -> int:
    """Output frames of the MLPL model for `n_samples` of 16 kHz audio (0 for < one 25 ms frame): the
    feature frames, then the stride-3 conv (padded, so ``(T - 1) // 3 + 1``)."""
    n_frames = num_feature_frames(n_samples)
    return 0 if n_frames == 0 else (n_frames - 1) // CONV_STRIDE + 1


def ctc_min_frames(label: Sequence[Any]) -> int:
    """Fewest frames CTC needs for `label`: one per token plus a blank between equal neighbours."""
    repeats = sum(1 for a, b in zip(label, label[1:]) if a == b)
    return len(label) + repeats


@dataclass
class FilterResult:
    """Rows that passed, and counts of the dropped rows by reason (reasons: empty_text,
    oov_characters, too_short_for_ctc). `oov_characters` counts which characters caused drops."""

    kept: list[dict]
    counts: dict[str, int] = field(default_factory=dict)
    oov_characters: Counter = field(default_factory=Counter)

    @property
    def n_dropped(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        parts = [f"kept {len(self.kept)}"] + [f"{k} {v}" for k, v in sorted(self.counts.items()) if v]
        if self.oov_characters:
            top = "".join(c for c, _ in self.oov_characters.most_common(20))
            parts.append(f"oov chars {top!r}")
        return ", ".join(parts)


def find_oov(text: str, vocabulary: Iterable[str], word_delimiter: str = "|") -> set[str]:
    """Characters of `text` not in `vocabulary`; a space counts as the word delimiter."""
    vocab = set(vocabulary)
    return {c for c in text if (word_delimiter if c == " " else c) not in vocab and c not in vocab}


def filter_transcripts(
    rows: Iterable[Mapping[str, Any]],
    vocabulary: Iterable[str] | None = None,
    frames_for_duration: Callable[[float], int] | None = None,
    samples_per_output_frame: int | None = None,
    sampling_rate: int = SAMPLING_RATE,
    text_key: str = "text",
    duration_key: str = "duration",
    word_delimiter: str = "|",
    drop_empty: bool = True,
) -> FilterResult:
    """Keep the rows a CTC model can be trained on; count the others by reason.

    Args:
        rows: dicts with `text_key` (normalised text) and `duration_key` (seconds).
        vocabulary: allowed characters (tokenizer vocab); ``None`` skips the OOV check. A space
            in the text is checked as `word_delimiter`.
        frames_for_duration: seconds -> output frames of the model. Default: the MLPL front end
            (:func:`model_output_frames`), or ``n_samples // samples_per_output_frame`` when that
            is given.
        drop_empty: drop rows with an empty transcript (labelled data only; unlabelled audio has
            ``text == ""`` and should not go through this filter).
    """
    if frames_for_duration is None:
        if samples_per_output_frame is not None:
            spf = int(samples_per_output_frame)
            frames_for_duration = lambda d: int(round(d * sampling_rate)) // spf  # noqa: E731
        else:
            frames_for_duration = lambda d: model_output_frames(int(round(d * sampling_rate)))  # noqa: E731
    vocab = set(vocabulary) if vocabulary is not None else None
    result = FilterResult(kept=[], counts={"empty_text": 0, "oov_characters": 0, "too_short_for_ctc": 0})
    for row in rows:
        text = row[text_key] or ""
        if drop_empty and not text:
            result.counts["empty_text"] += 1
            continue
        if vocab is not None:
            oov = find_oov(text, vocab, word_delimiter)
            if oov:
                result.counts["oov_characters"] += 1
                result.oov_characters.update(oov)
                continue
        if text and frames_for_duration(float(row[duration_key])) < ctc_min_frames(text):
            result.counts["too_short_for_ctc"] += 1
            continue
        result.kept.append(dict(row))
    return result
