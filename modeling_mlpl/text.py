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


# --- Teacher text -> student targets --------------------------------------------------------------
# Pseudo-labels from teachers other than an MLPL model (MMS/wav2vec2 CTC adapters, Whisper) are written
# in the teacher's conventions: MMS in lower case without punctuation, Whisper cased and punctuated with
# digits, sometimes with non-speech annotations ("[Music]", "♪"). The student is trained on Common Voice
# text as the paper keeps it (case and punctuation kept), so the default for an external teacher only
# removes what is not speech; every other change is a rule the user picks per run (docs/teachers_text.md).

# The rules, from least to most change. Each is "none" plus the steps named by its flags.
PL_TEXT_RULES: dict[str, dict[str, bool]] = {
    # NFC and whitespace only (:func:`normalize_transcript`): what every corpus gets.
    "none": {"annotations": False, "nopunct": False, "lower": False},
    # The default for external teachers: also remove non-speech annotations (square-bracketed tags such
    # as Whisper's "[Music]" or "[BLANK_AUDIO]", leftover "<|...|>" special tokens, music symbols).
    # Case, punctuation and digits stay: nothing that changes what was said.
    "student": {"annotations": True, "nopunct": False, "lower": False},
    # student + punctuation removed (word-internal apostrophes and hyphens kept: "l'homme", "twenty-one").
    "nopunct": {"annotations": True, "nopunct": True, "lower": False},
    # student + lower case.
    "lower": {"annotations": True, "nopunct": False, "lower": True},
    # student + lower case + punctuation removed: the MMS convention.
    "lower_nopunct": {"annotations": True, "nopunct": True, "lower": True},
}
DEFAULT_PL_TEXT_RULE = "student"
# Non-speech annotations: [tags], <|special tokens|>, and music symbols (Whisper marks sung/instrumental audio).
_ANNOTATION = re.compile(r"\[[^\[\]]*\]|<\|[^|]*\|>|[\u2669-\u266f]")
# Word-internal characters kept by the no-punctuation rules: apostrophes (ASCII, U+2019, modifier letter)
# and hyphens (ASCII, U+2010, U+2011) between two letters or digits.
_WORD_JOINERS = frozenset("'\u2019\u02bc-\u2010\u2011")
# Punctuation by Unicode (category Po) that is read out ("10%": "ten per cent"): kept like symbols.
_SPOKEN_PUNCTUATION = frozenset("%\u2030\u2031&@#\u00a7")
# Languages whose dotted/dotless i pair lower-cases differently from Unicode's default (İ -> i, I -> ı).
_DOTLESS_I_LANGUAGES = frozenset({"tr", "az"})


def _strip_punctuation(text: str) -> str:
    """Punctuation (Unicode category P*) -> space, except apostrophes/hyphens inside a word. Symbols
    (S*: "€", "+") and the punctuation that is read out (:data:`_SPOKEN_PUNCTUATION`: "%", "&", "@",
    ...) are words the speaker said and stay."""
    out = []
    for i, c in enumerate(text):
        if unicodedata.category(c).startswith("P") and c not in _SPOKEN_PUNCTUATION:
            inside = 0 < i < len(text) - 1 and text[i - 1].isalnum() and text[i + 1].isalnum()
            if not (c in _WORD_JOINERS and inside):
                c = " "
        out.append(c)
    return "".join(out)


def normalize_pl_text(text: str | None, rule: str = DEFAULT_PL_TEXT_RULE, language: str | None = None) -> str:
    """A teacher's transcript in the student's conventions, by one of :data:`PL_TEXT_RULES`.

    "student" (the default) never changes what was said: NFC, whitespace, non-speech annotations
    removed. Lower-casing and removing punctuation are the user's choice: a student trained on Common
    Voice (case and punctuation kept, the paper's vocabulary) learns from an uncased teacher either
    uncased targets for this language ("lower", "lower_nopunct": its case and punctuation outputs are
    then untaught by the PLs) or targets whose casing disagrees with its labelled data ("student"). The
    rule is picked per run, and the teacher's own text stays in each row's ``text_raw``.

    Digits are kept (numbers are never spelled out: how to say "1984" depends on the language and the
    context); the merge counts the rows that have them. `language` matters only when lower-casing
    Turkish and Azerbaijani (dotted and dotless i).
    """
    if rule not in PL_TEXT_RULES:
        raise ValueError(f"unknown text rule {rule!r}; one of {', '.join(PL_TEXT_RULES)}")
    steps = PL_TEXT_RULES[rule]
    text = normalize_transcript(text)
    if steps["annotations"]:
        text = _ANNOTATION.sub(" ", text)
    if steps["nopunct"]:
        text = _strip_punctuation(text)
    if steps["lower"]:
        if language in _DOTLESS_I_LANGUAGES:
            text = text.replace("I", "ı").replace("İ", "i")
        text = unicodedata.normalize("NFC", text.lower())
    return _WHITESPACE.sub(" ", text).strip()


def count_digits(text: str) -> int:
    """Decimal digits (any script: Unicode category Nd) in `text`; the merge reports rows that have them."""
    return sum(1 for c in text if unicodedata.category(c) == "Nd")


# --- Decoder loops --------------------------------------------------------------------------------
# CTC with an LM and seq2seq decoders (Whisper) can fall into loops ("the the the", a phrase repeated to
# the end of the window). Two measures over a transcript's words, used by the agreement selection
# (per segment) and by the merge's label-free filters (per recording).


def longest_word_run(words: Sequence[str]) -> int:
    """Length of the longest run of one word repeated back to back (0 without words)."""
    best = run = 0
    for i, w in enumerate(words):
        run = run + 1 if i and w == words[i - 1] else 1
        best = max(best, run)
    return best


def most_repeated_ngram(words: Sequence[str], n: int) -> int:
    """How often the most frequent word `n`-gram occurs (overlapping occurrences count; 0 when the
    text has fewer than `n` words)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    counts = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return max(counts.values(), default=0)
