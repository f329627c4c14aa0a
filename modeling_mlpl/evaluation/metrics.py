"""Word and character error rates, defined exactly as Hugging Face ``evaluate``'s ``wer``/``cer``.

``evaluate.load("wer")`` fetches its metric script from the Hub, which is unreachable offline,
so we compute the same numbers with jiwer, which those scripts wrap. evaluate 0.4.6
(``metrics/wer/wer.py``, ``metrics/cer/cer.py``, jiwer >= 3 branch, ``concatenate_texts=False``):

- each (reference, prediction) pair is aligned on its own with ``jiwer.process_words`` /
  ``jiwer.process_characters`` and jiwer's default transforms (words: collapse repeated spaces,
  strip, split on spaces; characters: strip, then every character *including spaces*);
- the corpus rate is ``sum(S + D + I) / sum(S + D + H)`` over pairs (not a mean of rates).

No case folding or punctuation removal happens here: normalise both sides first if you want it.
Keeping the raw counts (:class:`ErrorCounts`) lets reports be re-aggregated per language.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping, Sequence

import jiwer
import numpy as np

__all__ = [
    "ErrorCounts",
    "error_counts",
    "wer",
    "cer",
    "per_language_metrics",
    "mean_over_groups",
    "first_per_language",
    "metrics_to_markdown",
]


@dataclass
class ErrorCounts:
    """Edit-operation counts summed over utterances; ``errors / ref_len`` is the error rate."""

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    hits: int = 0

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def ref_len(self) -> int:
        return self.substitutions + self.deletions + self.hits

    @property
    def rate(self) -> float:
        if self.ref_len == 0:
            raise ValueError("error rate undefined: the references contain no words/characters")
        return self.errors / self.ref_len

    def __add__(self, other: "ErrorCounts") -> "ErrorCounts":
        return ErrorCounts(
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
            self.hits + other.hits,
        )

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def _check_pairs(references: Sequence[str], predictions: Sequence[str]) -> None:
    if isinstance(references, str) or isinstance(predictions, str):
        raise TypeError("references and predictions must be sequences of strings, not a string")
    if len(references) != len(predictions):
        raise ValueError(
            f"got {len(references)} references but {len(predictions)} predictions"
        )


def error_counts(
    references: Sequence[str], predictions: Sequence[str], unit: str = "word"
) -> ErrorCounts:
    """Sum jiwer's per-utterance S/D/I/H counts; ``unit`` is ``"word"`` or ``"char"``."""
    _check_pairs(references, predictions)
    if unit == "word":
        process = jiwer.process_words
    elif unit == "char":
        process = jiwer.process_characters
    else:
        raise ValueError(f"unit must be 'word' or 'char', got {unit!r}")
    total = ErrorCounts()
    for reference, prediction in zip(references, predictions):
        out = process(reference, prediction)
        total += ErrorCounts(out.substitutions, out.deletions, out.insertions, out.hits)
    return total


def wer(references: Sequence[str], predictions: Sequence[str]) -> float:
    """Corpus word error rate, as ``evaluate.load("wer").compute(...)``."""
    return error_counts(references, predictions, "word").rate


def cer(references: Sequence[str], predictions: Sequence[str]) -> float:
    """Corpus character error rate (spaces count as characters), as ``evaluate``'s ``cer``."""
    return error_counts(references, predictions, "char").rate


def per_language_metrics(
    rows: Iterable[Mapping[str, Any]],
    prediction_keys: Sequence[str] = ("prediction",),
    language_key: str = "language",
    reference_key: str = "reference",
) -> dict[str, dict[str, Any]]:
    """Per-language (and ``"all"``) WER/CER from per-utterance rows.

    ``rows`` are dicts such as the lines of a predictions JSONL file, e.g.
    ``{"language": "pt", "reference": "...", "prediction": "...", "prediction_lm": "..."}``;
    each key in ``prediction_keys`` (e.g. greedy and LM outputs) gets its own nested entry:
    ``{lang: {"n_utterances": n, "n_words": N, "n_chars": C, key: {"wer": .., "cer": ..}}}``.
    The ``"all"`` entry pools the counts of every utterance (not a mean over languages).
    """
    word: dict[str, dict[str, ErrorCounts]] = defaultdict(lambda: defaultdict(ErrorCounts))
    char: dict[str, dict[str, ErrorCounts]] = defaultdict(lambda: defaultdict(ErrorCounts))
    n_utts: dict[str, int] = defaultdict(int)
    for row in rows:
        language = str(row.get(language_key) or "unknown")
        reference = row[reference_key]
        n_utts[language] += 1
        for key in prediction_keys:
            if key not in row:
                raise KeyError(f"row of language {language!r} has no {key!r} field")
            for group in (language, "all"):
                word[group][key] += error_counts([reference], [row[key]], "word")
                char[group][key] += error_counts([reference], [row[key]], "char")
    n_utts["all"] = sum(n_utts.values())

    table: dict[str, dict[str, Any]] = {}
    for language in sorted(n_utts, key=lambda lang: (lang == "all", lang)):
        if n_utts[language] == 0:
            continue
        first = prediction_keys[0]
        entry: dict[str, Any] = {
            "n_utterances": n_utts[language],
            "n_words": word[language][first].ref_len,
            "n_chars": char[language][first].ref_len,
        }
        for key in prediction_keys:
            w, c = word[language][key], char[language][key]
            entry[key] = {
                "wer": w.rate if w.ref_len else float("nan"),
                "cer": c.rate if c.ref_len else float("nan"),
                "word_counts": w.to_dict(),
                "char_counts": c.to_dict(),
            }
        table[language] = entry
    return table


def mean_over_groups(table: Mapping[str, Mapping[str, Any]], key: str = "prediction", metric: str = "cer") -> float:
    """Unweighted mean of ``metric`` over the groups of a :func:`per_language_metrics` table (not
    ``"all"``): each language counts the same, as the paper averages CER over languages."""
    return float(np.mean([entry[key][metric] for group, entry in table.items() if group != "all"]))


def first_per_language(languages: Iterable[str], max_per_language: int | None) -> list[int]:
    """Indices of the first ``max_per_language`` items of each language (all of them for None): the
    per-language cap of evaluation and dev sets, which keeps small test/dev runs balanced."""
    seen: dict[str, int] = defaultdict(int)
    keep = []
    for i, language in enumerate(languages):
        seen[language] += 1
        if max_per_language is None or seen[language] <= max_per_language:
            keep.append(i)
    return keep


def metrics_to_markdown(
    table: Mapping[str, Mapping[str, Any]],
    prediction_keys: Sequence[str] = ("prediction",),
    labels: Mapping[str, str] | None = None,
) -> str:
    """Render :func:`per_language_metrics` output as a markdown table (rates in %)."""
    labels = dict(labels or {})
    header = ["language", "utts", "words"]
    for key in prediction_keys:
        name = labels.get(key, key)
        header += [f"CER {name}", f"WER {name}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for language, entry in table.items():
        cells = [language, str(entry["n_utterances"]), str(entry["n_words"])]
        for key in prediction_keys:
            cells += [f"{100 * entry[key]['cer']:.1f}", f"{100 * entry[key]['wer']:.1f}"]
        if language == "all":
            cells = [f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
