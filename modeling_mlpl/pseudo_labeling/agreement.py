"""Pseudo-label selection by agreement: keep the ~10 s segments on which greedy and LM decodes agree.

Why segments and not recordings: on the demo's PLs the errors are spread over every 15-40 s
recording, so dropping whole recordings removes little (issue 18, §2). The trainer crops 10 s
windows anyway, so the unit of selection is a training crop: each recording is cut at word
boundaries into segments of at most `segment_seconds`, and each segment is kept or dropped on its own.

Per segment (WeNet's noisy-student filter, Chen et al. 2022):
- disagreement = CER of the other decode's words against the label's words in the segment (words
  are assigned to segments by the midpoint of their CTC times, so both decodes are cut alike);
- repetition: the same word `max_repeats` times in a row, or a word `repeat_ngram`-gram occurring
  twice (the loops a CTC/LM decoder falls into);
- characters per second outside [min_cps, max_cps]; unset bounds come from the data: the language's
  median over all segments divided / multiplied by :data:`CPS_FACTOR`.

Threshold choice (never on test; the unlabelled pool is training data, and its synthetic truth is
only *reported*): a fixed `max_disagreement`, or one chosen per language from the agreement alone by
:func:`choose_threshold` (a target kept fraction, or ``auto``: the largest kept set whose pooled
disagreement is at most `auto_ratio` times that of all candidate segments). With the synthetic truth,
:func:`threshold_table` tabulates kept fraction against the true PL CER of the kept segments.

Any two PL sets of the same audio (:func:`select_by_consensus`), e.g. an MMS (CTC) set against a
Whisper set, are compared the same way. The "label" set must have word times (it is cut, and its rows
are what the student is taught); the "reference" set is compared at the finest level its rows allow
(`Segment.level`, counted per recording in the report):
- ``words``: it has word times; its words are assigned to the label's segments as above;
- ``segments``: only segment times (Whisper's segments without word alignment): the label's segments are
  grouped into comparison units whose boundaries no reference segment straddles, and each reference
  segment's text goes to the unit holding its midpoint;
- ``recording``: only a whole-recording text: one unit, the whole recording.
Every label segment of a unit shares the unit's disagreement (its error counts are the unit's, shared
out by label characters, so pooled rates count each unit once). The greedy/LM selection is the special
case of two decodes of one model (:func:`select_by_agreement`, label = the `label_source` decode).

Output rows have the merged PL schema (:data:`.merge.PL_FEATURES`): id ``<recording id>#<k>`` (k
counts every segment of the recording, kept or not, so ids are stable across thresholds), offset and
duration of the segment inside the recording's audio, token_times and words re-based to the segment
start. confidence, path_score and ctc_score are the recording's (the decoders score recordings);
num_frames is the segment's share of the recording's frames. Their `consensus` column names the
label's and the reference's teachers (:func:`.merge.teacher_name`), the level compared and the
segment's disagreement.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa
from datasets import Dataset, DatasetInfo, load_from_disk
from datasets.table import InMemoryTable

from ..evaluation.metrics import ErrorCounts, cer, error_counts
from ..text import longest_word_run, most_repeated_ngram, normalize_transcript
from ..tokenization_mlpl import WORD_DELIMITER, transcript_characters
from .merge import PL_FEATURES, teacher_name

logger = logging.getLogger(__name__)

__all__ = [
    "CPS_FACTOR",
    "DEFAULT_THRESHOLDS",
    "AgreementConfig",
    "Segment",
    "cut_segments",
    "score_recording",
    "score_segments",
    "resolve_cps_bounds",
    "choose_threshold",
    "apply_selection",
    "segment_truth_counts",
    "threshold_table",
    "segment_records",
    "pl_dataset_path",
    "select_by_agreement",
    "select_by_consensus",
    "LEVELS",
]

# Default cps bounds: median cps of the language's segments / and * this factor. Speaking rates of
# read speech vary ~1.75x (the synthetic corpus: 120-210 wpm); a decoder loop or a decoder that
# stopped emitting is far outside twice or half the median.
CPS_FACTOR = 2.0
# The thresholds tabulated in stats.md (CER between the two decodes, 0..1).
DEFAULT_THRESHOLDS = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, math.inf)
# How finely the reference set was compared with the labels (see the module docstring), finest first.
LEVELS = ("words", "segments", "recording")
DROP_REASONS = ("unaligned", "empty", "repetition", "low_cps", "high_cps", "disagreement")


@dataclass
class AgreementConfig:
    """segment_seconds: longest segment (the training crop). pad_seconds: audio kept on either side
    of a segment's first/last word (never past the midpoint of the pause to the neighbouring word).
    max_disagreement: keep segments whose disagreement is <= this (None: choose per language, see
    :func:`choose_threshold`). target_kept_fraction / auto_ratio: the choice rule when
    max_disagreement is None. label_source: which decode becomes the label ("lm" or "greedy"); the
    segments are cut at its word times (the other's when it has none). max_repeats: drop a segment
    with a word this many times in a row (0: off). repeat_ngram: drop a segment in which a word n-gram
    of this length occurs twice (0: off). min_cps / max_cps: characters (spaces included) per second
    of segment audio; None: from the data (:data:`CPS_FACTOR`)."""

    segment_seconds: float = 10.0
    pad_seconds: float = 0.5
    max_disagreement: float | None = 0.1
    target_kept_fraction: float | None = None
    auto_ratio: float = 0.5
    label_source: str = "lm"
    max_repeats: int = 3
    repeat_ngram: int = 3
    min_cps: float | None = None
    max_cps: float | None = None

    def __post_init__(self):
        if self.label_source not in ("lm", "greedy"):
            raise ValueError(f"label_source must be 'lm' or 'greedy', got {self.label_source!r}")
        if self.segment_seconds <= 0:
            raise ValueError(f"segment_seconds must be > 0, got {self.segment_seconds}")
        if self.target_kept_fraction is not None and not 0 < self.target_kept_fraction <= 1:
            raise ValueError(f"target_kept_fraction must be in (0, 1], got {self.target_kept_fraction}")
        if self.target_kept_fraction is not None and self.max_disagreement is not None:
            raise ValueError("give either max_disagreement or target_kept_fraction, not both")
        if not 0 < self.auto_ratio <= 1:
            raise ValueError(f"auto_ratio must be in (0, 1], got {self.auto_ratio}")


@dataclass
class Segment:
    """One cut of a recording: audio [start, end) in seconds from the recording's offset, the label's
    words [first_word, last_word) and text, the other decode's text (at `level` "segments"/"recording":
    the text of the segment's comparison unit), and why it is dropped (None: kept)."""

    recording_id: str
    index: int
    language: str
    start: float
    end: float
    first_word: int
    last_word: int
    text: str
    other_text: str
    agreement: ErrorCounts = field(default_factory=ErrorCounts)
    repetition: bool = False
    unaligned: bool = False
    reason: str | None = None
    level: str = "words"

    @property
    def id(self) -> str:
        return f"{self.recording_id}#{self.index}"

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def disagreement(self) -> float:
        """CER of the other decode against the label (1.0 when only the other decode has words)."""
        if self.agreement.ref_len == 0:
            return 0.0 if not self.other_text else 1.0
        return self.agreement.rate

    @property
    def cps(self) -> float:
        return len(self.text) / self.duration if self.duration > 0 else math.inf


def _word_bounds(words: Sequence[Mapping], duration: float, pad: float) -> list[tuple[float, float, float]]:
    """Per word: (territory start, audio start, audio end). Territories tile [0, duration) at the
    midpoints of the pauses; the audio of a word reaches `pad` into the pause on either side."""
    out = []
    for i, w in enumerate(words):
        before = 0.0 if i == 0 else (words[i - 1]["end"] + w["start"]) / 2
        after = duration if i == len(words) - 1 else (w["end"] + words[i + 1]["start"]) / 2
        out.append((before, max(before, w["start"] - pad), min(after, w["end"] + pad)))
    return out


def cut_segments(words: Sequence[Mapping], duration: float, segment_seconds: float,
                 pad_seconds: float = 0.5) -> list[tuple[int, int, float, float, float]]:  # fmt: skip
    """Greedy left-to-right cut of a recording's words into segments of at most `segment_seconds`.

    Returns (first word, last word + 1, territory start, audio start, audio end) per segment; the
    territories tile [0, duration) (every word of any decode falls in exactly one). A single word
    longer than `segment_seconds` makes a segment of its own. No words: one segment over everything.
    """
    if not words:
        return [(0, 0, 0.0, 0.0, duration)]
    bounds = _word_bounds(words, duration, pad_seconds)
    segments = []
    first = 0
    while first < len(words):
        last = first + 1
        while last < len(words) and bounds[last][2] - bounds[first][1] <= segment_seconds:
            last += 1
        segments.append((first, last, bounds[first][0], bounds[first][1], bounds[last - 1][2]))
        first = last
    return segments


def _words_between(words: Sequence[Mapping], start: float, end: float) -> list[int]:
    return [i for i, w in enumerate(words) if start <= (w["start"] + w["end"]) / 2 < end]


def _has_repetition(text: str, max_repeats: int, ngram: int) -> bool:
    """A word `max_repeats` times in a row (when > 1), or a word `ngram`-gram occurring twice (when > 0)."""
    words = text.split()
    return (max_repeats > 1 and longest_word_run(words) >= max_repeats) or (
        ngram > 0 and most_repeated_ngram(words, ngram) >= 2)


def _is_aligned(row: Mapping) -> bool:
    """The label contract the re-basing relies on: one time per CTC target, one entry per word.
    (Labels the labeler could not align, e.g. `transcript_unaligned`, have neither.)"""
    chars = transcript_characters(row["text"])
    if not chars or len(chars) != len(row["token_times"] or []):
        return not chars
    spelled = "".join(chars).split(WORD_DELIMITER)
    return spelled == [normalize_transcript(w["word"]) for w in row["words"] or []]


def reference_level(other: Mapping) -> str:
    """How finely a reference row can be compared (:data:`LEVELS`): by its words when it has word
    times, by its segments when it has segment times, else as one whole-recording text."""
    if other.get("words"):
        return "words"
    if any(seg.get("start") is not None and seg.get("end") is not None for seg in other.get("segments") or []):
        return "segments"
    return "recording"


def _share(counts: ErrorCounts, fraction: float) -> ErrorCounts:
    """`fraction` of a comparison unit's counts (a segment's share: the unit's rate, pooled once)."""
    return ErrorCounts(counts.substitutions * fraction, counts.deletions * fraction, counts.insertions * fraction,
                       counts.hits * fraction)  # fmt: skip


def _compare_units(segments: list[Segment], cuts: Sequence[tuple], other: Mapping, level: str, shift: float) -> None:
    """Set the agreement of label segments compared by unit (level "segments" or "recording"): units
    are runs of segments whose inner boundaries no reference segment straddles (`shift`: the reference's
    offset minus the label's, so that both time axes agree)."""
    if level == "recording":
        units, other_texts = [segments], [normalize_transcript(other["text"])]
    else:
        spans = [(seg["start"] + shift, seg["end"] + shift, normalize_transcript(seg.get("text")))
                 for seg in other["segments"] if seg.get("start") is not None and seg.get("end") is not None]  # fmt: skip
        units = [[segments[0]]]
        for k in range(1, len(segments)):
            boundary = cuts[k][2]
            if any(start < boundary < end for start, end, _ in spans):
                units[-1].append(segments[k])
            else:
                units.append([segments[k]])
        starts = [cuts[u[0].index][2] for u in units] + [math.inf]
        other_texts = [" ".join(t for start, end, t in spans if starts[j] <= (start + end) / 2 < starts[j + 1] and t)
                       for j in range(len(units))]  # fmt: skip
        # A reference segment before the first territory (negative times after the shift) counts in the first unit.
        early = " ".join(t for start, end, t in spans if (start + end) / 2 < starts[0] and t)
        other_texts[0] = " ".join(filter(None, (early, other_texts[0])))
    for unit, other_text in zip(units, other_texts):
        text = " ".join(seg.text for seg in unit if seg.text)
        counts = error_counts([text], [other_text], "char") if text else ErrorCounts()
        n_chars = sum(len(seg.text) for seg in unit)
        for seg in unit:
            seg.other_text, seg.level = other_text, level
            seg.agreement = _share(counts, len(seg.text) / n_chars) if n_chars else ErrorCounts()


def score_recording(label: Mapping, other: Mapping, config: AgreementConfig) -> list[Segment]:
    """The segments of one recording (label row and other row: merged PL rows with the same id), with
    their agreement counts and repetition flags. Dropping is left to :func:`apply_selection`.
    A label without a usable alignment is one segment, dropped as `unaligned` (it cannot be cut).
    The other row is compared by words, segments or as a whole (:func:`reference_level`)."""
    level = reference_level(other)
    if not _is_aligned(label):
        logger.warning("%s: the label has no usable token_times/words; dropped as unaligned", label["id"])
        return [Segment(label["id"], 0, label["language"], 0.0, float(label["duration"]), 0, 0, label["text"],
                        other["text"], unaligned=True, level=level)]  # fmt: skip
    label_words = list(label["words"] or [])
    other_words = list(other["words"] or []) if level == "words" else []
    cut_words = label_words or other_words
    cuts = cut_segments(cut_words, float(label["duration"]), config.segment_seconds, config.pad_seconds)
    segments = []
    for k, (_, _, territory, start, end) in enumerate(cuts):
        territory_end = cuts[k + 1][2] if k + 1 < len(cuts) else math.inf
        mine = _words_between(label_words, territory, territory_end)
        theirs = _words_between(other_words, territory, territory_end)
        text = " ".join(normalize_transcript(label_words[i]["word"]) for i in mine)
        other_text = " ".join(normalize_transcript(other_words[i]["word"]) for i in theirs)
        counts = error_counts([text], [other_text], "char") if text else ErrorCounts()
        first, last = (mine[0], mine[-1] + 1) if mine else (0, 0)
        if mine:  # the label's words decide the audio (they are what the model will be taught)
            start = min(start, label_words[first]["start"])
            end = max(end, label_words[last - 1]["end"])
        segments.append(Segment(
            recording_id=label["id"], index=k, language=label["language"], start=start, end=end,
            first_word=first, last_word=last, text=text, other_text=other_text, agreement=counts,
            repetition=_has_repetition(text, config.max_repeats, config.repeat_ngram),
        ))  # fmt: skip
    if level != "words":
        shift = float(other.get("offset") or 0.0) - float(label.get("offset") or 0.0)
        _compare_units(segments, cuts, other, level, shift)
    return segments


def _rows_by_id(dataset: Dataset, columns: Sequence[str] | None = None) -> dict[str, dict]:
    if columns is not None:  # the other decode needs no audio bytes (sets saved before a column existed lack it)
        dataset = dataset.select_columns([c for c in columns if c in dataset.column_names])
    return {row["id"]: row for row in dataset.to_list()}


# What the comparison reads of the reference set.
REFERENCE_COLUMNS = ("id", "text", "words", "segments", "offset", "teacher", "model", "decoder")


def score_pair(label_set: Dataset, reference_set: Dataset, config: AgreementConfig,
               names: tuple[str, str] = ("labels", "reference")) -> tuple[list[Segment], dict, dict, dict]:  # fmt: skip
    """Every segment of the recordings two PL sets share, the label side cut at its word times; the label
    rows by id; id mismatches counted (keys ``only_<name>``); the reference's teacher per recording id."""
    labels, others = _rows_by_id(label_set), _rows_by_id(reference_set, REFERENCE_COLUMNS)
    common = sorted(labels.keys() & others.keys())
    if not common:
        raise ValueError(f"the {names[0]} and {names[1]} pseudo-label sets share no recording id")
    if not any(r["words"] for r in labels.values()) and any(r["text"] for r in labels.values()):
        raise ValueError(f"the {names[0]} set has no word times, so it cannot be cut into segments: give the set "
                         f"with word times (a CTC teacher's) as the {names[0]} and this one as the {names[1]}")  # fmt: skip
    mismatch = {f"only_{names[0]}": len(labels.keys() - others.keys()),
                f"only_{names[1]}": len(others.keys() - labels.keys())}  # fmt: skip
    if any(mismatch.values()):
        logger.warning("ids in one PL set only (skipped): %s", mismatch)
    segments = [s for i in common for s in score_recording(labels[i], others[i], config)]
    return segments, {i: labels[i] for i in common}, mismatch, {i: teacher_name(others[i]) for i in common}


def score_segments(greedy: Dataset, lm: Dataset, config: AgreementConfig) -> tuple[list[Segment], dict, dict]:
    """:func:`score_pair` of a greedy and an LM decode, the label being the `config.label_source` one."""
    pair = (lm, greedy) if config.label_source == "lm" else (greedy, lm)
    names = ("lm", "greedy") if config.label_source == "lm" else ("greedy", "lm")
    segments, labels, mismatch, _ = score_pair(*pair, config, names)
    return segments, labels, mismatch


def resolve_cps_bounds(segments: Iterable[Segment], config: AgreementConfig) -> dict[str, tuple[float, float]]:
    """Per language (min_cps, max_cps): the config's, or the median of non-empty segments / and * CPS_FACTOR."""
    rates = defaultdict(list)
    for s in segments:
        if s.text and not s.unaligned:
            rates[s.language].append(s.cps)
    bounds = {}
    for lang, values in rates.items():
        median = float(np.median(values))
        bounds[lang] = (config.min_cps if config.min_cps is not None else median / CPS_FACTOR,
                        config.max_cps if config.max_cps is not None else median * CPS_FACTOR)  # fmt: skip
    return bounds


def _candidate_reason(s: Segment, bounds: Mapping[str, tuple[float, float]]) -> str | None:
    """Why a segment is dropped before agreement is looked at (None: it is a candidate)."""
    if s.unaligned:
        return "unaligned"
    if not s.text:
        return "empty"
    if s.repetition:
        return "repetition"
    low, high = bounds[s.language]  # every language with a non-empty segment has bounds
    if s.cps < low:
        return "low_cps"
    if s.cps > high:
        return "high_cps"
    return None


def choose_threshold(candidates: Sequence[Segment], total_seconds: float, config: AgreementConfig) -> float:
    """The disagreement threshold for one language, from the agreement alone (no truth).

    - ``config.max_disagreement`` set: that value.
    - ``target_kept_fraction`` f: the smallest threshold that keeps >= f of all the language's segment
      hours (`total_seconds`); if the other filters already drop more, every candidate is kept.
    - otherwise (``auto``): the largest threshold whose kept candidates' pooled disagreement (sum of
      character errors / sum of label characters) is <= `auto_ratio` x that of all candidates: the
      largest kept set whose PL CER, estimated by the greedy/LM disagreement, is halved (default 0.5).
    The pooled disagreement only grows with the threshold (each added segment disagrees more than
    all before it), so the rule is well defined; thresholds are taken among the segments' own values.
    """
    if config.max_disagreement is not None:
        return config.max_disagreement
    ordered = sorted(candidates, key=lambda s: s.disagreement)
    if not ordered:
        return 0.0
    if config.target_kept_fraction is not None:
        kept = 0.0
        for s in ordered:
            kept += s.duration
            if kept >= config.target_kept_fraction * total_seconds - 1e-9:
                return s.disagreement
        return ordered[-1].disagreement
    total = sum((s.agreement for s in ordered), ErrorCounts())
    target = config.auto_ratio * (total.errors / total.ref_len if total.ref_len else 0.0)
    best, running = ordered[0].disagreement, ErrorCounts()
    for i, s in enumerate(ordered):
        running += s.agreement
        tie = i + 1 < len(ordered) and ordered[i + 1].disagreement == s.disagreement
        if not tie and running.ref_len and running.errors / running.ref_len <= target + 1e-12:
            best = s.disagreement
    return best


def apply_selection(segments: list[Segment], config: AgreementConfig) -> dict:
    """Set each segment's `reason` (None: kept); returns the per-language thresholds and cps bounds."""
    bounds = resolve_cps_bounds(segments, config)
    by_language = defaultdict(list)
    for s in segments:
        by_language[s.language].append(s)
    thresholds = {}
    for lang, rows in sorted(by_language.items()):
        for s in rows:
            s.reason = _candidate_reason(s, bounds)
        candidates = [s for s in rows if s.reason is None]
        thresholds[lang] = choose_threshold(candidates, sum(s.duration for s in rows), config)
        for s in candidates:
            if s.disagreement > thresholds[lang]:
                s.reason = "disagreement"
    return {"thresholds": thresholds, "cps_bounds": {k: list(v) for k, v in bounds.items()}}


def segment_truth_counts(segments: Sequence[Segment], labels: Mapping[str, Mapping],
                         truth: Mapping[str, str]) -> dict[str, ErrorCounts]:  # fmt: skip
    """Segment id -> character errors of its label against the true transcript's part in it.

    The truth has no times, so its words are placed by a word alignment (jiwer) against the label's
    whole text: a true word aligned to a label word goes to that word's segment, a true word the label
    missed goes to the segment of the label word before it (the first segment when none).
    """
    import jiwer

    by_recording = defaultdict(list)
    for s in segments:
        by_recording[s.recording_id].append(s)
    counts = {}
    for rid, segs in by_recording.items():
        if rid not in truth:
            raise ValueError(f"no true transcript for {rid} (is --truth the corpus these PLs were made from?)")
        true_words = normalize_transcript(truth[rid]).split()
        label_words = [normalize_transcript(w["word"]) for w in labels[rid]["words"] or []]
        owner = [0] * len(true_words)  # true word -> label word index
        if true_words and label_words:
            for chunk in jiwer.process_words(" ".join(true_words), " ".join(label_words)).alignments[0]:
                for j in range(chunk.ref_start_idx, chunk.ref_end_idx):
                    if chunk.type == "delete":
                        owner[j] = max(chunk.hyp_start_idx - 1, 0)
                    else:
                        owner[j] = chunk.hyp_start_idx + j - chunk.ref_start_idx
        for s in segs:
            # A label without words, or one that could not be cut: the whole truth counts against segment 0.
            whole = (s.unaligned or not label_words) and s.index == 0
            ref = " ".join(w for w, o in zip(true_words, owner) if whole or s.first_word <= o < s.last_word)
            counts[s.id] = error_counts([ref], [s.text], "char") if ref else ErrorCounts(insertions=len(s.text))
    return counts


def threshold_table(segments: Sequence[Segment], thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
                    truth_counts: Mapping[str, ErrorCounts] | None = None) -> dict[str, list[dict]]:  # fmt: skip
    """Per language (and "all" when there are several), for each threshold, the segments that the
    other filters and that threshold keep: their share of the hours, their pooled disagreement (the
    estimate without truth) and, with `truth_counts`, their true PL CER. Reads the segments' `reason`
    only to know which segments the other filters drop (call :func:`apply_selection` first)."""
    groups = defaultdict(list)
    for s in segments:
        groups[s.language].append(s)
    if len(groups) > 1:
        groups["all"] = list(segments)
    table = {}
    for lang in sorted(groups, key=lambda g: (g == "all", g)):
        rows = groups[lang]
        total = sum(s.duration for s in rows)
        entries = []
        for t in thresholds:
            kept = [s for s in rows if s.reason in (None, "disagreement") and s.disagreement <= t]
            agree = sum((s.agreement for s in kept), ErrorCounts())
            entry = {
                "threshold": t,
                "segments": len(kept),
                "kept_fraction": sum(s.duration for s in kept) / total if total else 0.0,
                "disagreement": agree.rate if agree.ref_len else None,
            }
            if truth_counts is not None:
                true = sum((truth_counts[s.id] for s in kept), ErrorCounts())
                entry["true_cer"] = true.rate if true.ref_len else None
            entries.append(entry)
        if truth_counts is not None:  # the unfiltered PLs, cut the same way: the table's reference
            true = sum((truth_counts[s.id] for s in rows), ErrorCounts())
            entries.append({"threshold": "none (no filter)", "segments": len(rows), "kept_fraction": 1.0,
                            "disagreement": None, "true_cer": true.rate if true.ref_len else None})
        table[lang] = entries
    return table


def segment_records(segments: Iterable[Segment], labels: Mapping[str, Mapping],
                    references: Mapping[str, str] | None = None) -> list[dict]:  # fmt: skip
    """Kept segments -> merged-PL records (see the module docstring for what each field holds);
    `references`: recording id -> the reference's teacher, for the `consensus` column."""
    records = []
    for s in segments:
        if s.reason is not None:
            continue
        row = labels[s.recording_id]
        chars = transcript_characters(row["text"])
        word_starts = [i for i, c in enumerate(chars) if i == 0 or chars[i - 1] == WORD_DELIMITER]
        first = word_starts[s.first_word]
        last = word_starts[s.last_word] - 1 if s.last_word < len(word_starts) else len(chars)
        times = [round(min(max(t - s.start, 0.0), s.duration), 3) for t in row["token_times"][first:last]]
        words = [{"word": w["word"], "start": round(w["start"] - s.start, 3), "end": round(w["end"] - s.start, 3)}
                 for w in row["words"][s.first_word : s.last_word]]  # fmt: skip
        rate = row["num_frames"] / row["duration"] if row.get("num_frames") and row["duration"] else 0.0
        records.append({
            **row, "id": s.id, "offset": float(row.get("offset") or 0.0) + s.start,
            "duration": s.duration, "text": s.text, "token_times": times, "words": words,
            "num_frames": int(round(rate * s.duration)),
            "consensus": {"labels": teacher_name(row), "reference": (references or {}).get(s.recording_id),
                          "level": s.level, "disagreement": s.disagreement},
        })  # fmt: skip
    return records


def records_to_pl_dataset(records: list[dict]) -> Dataset:
    """Records whose `audio` is already an Audio dict (path and the bytes save_to_disk embedded) ->
    Dataset with :data:`.merge.PL_FEATURES` (:func:`.merge.records_to_dataset` takes paths only)."""
    table = pa.Table.from_pylist([{name: r.get(name) for name in PL_FEATURES} for r in records],
                                 schema=PL_FEATURES.arrow_schema)  # fmt: skip
    return Dataset(InMemoryTable(table), info=DatasetInfo(features=PL_FEATURES))


def pl_dataset_path(path: str | os.PathLike) -> Path:
    """A merged PL dataset: the save_to_disk folder itself, or a PL folder holding merged/dataset."""
    path = Path(path)
    for candidate in (path, path / "dataset", path / "merged" / "dataset"):
        if (candidate / "dataset_info.json").exists():
            return candidate
    raise FileNotFoundError(f"no merged pseudo-label dataset at {path} (nor {path}/merged/dataset)")


def _hours(segments: Iterable[Segment]) -> float:
    return sum(s.duration for s in segments) / 3600.0


def _summary(segments: Sequence[Segment], truth_counts: Mapping[str, ErrorCounts] | None) -> dict:
    """Segments and hours in/kept, drops by reason and, with the truth, the kept labels' true CER."""
    kept = [s for s in segments if s.reason is None]
    summary = {
        "segments": len(segments), "hours_in": _hours(segments), "kept": len(kept), "hours_kept": _hours(kept),
        "dropped": {r: n for r in DROP_REASONS if (n := sum(1 for s in segments if s.reason == r))},
    }  # fmt: skip
    if truth_counts is not None:
        true = sum((truth_counts[s.id] for s in kept), ErrorCounts())
        summary["true_cer_kept"] = true.rate if true.ref_len else None
    return summary


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def _threshold_cell(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return "∞" if math.isinf(value) else f"{value:g}"


def _markdown(stats: dict) -> str:
    config = stats["config"]
    truth = "recording_true_cer" in stats
    lines = [
        "# Pseudo-label selection by agreement",
        "",
        (f"Greedy `{stats['greedy']}`, LM `{stats['lm']}`; label: {config['label_source']}; " if "greedy" in stats
         else f"Labels `{stats['labels']}` ({', '.join(stats['teachers']['labels'])}) against reference "
              f"`{stats['reference']}` ({', '.join(stats['teachers']['reference'])}); ")
        + f"config `{json.dumps(config)}`",
        "",
        "Recordings compared by the reference's " + ", ".join(f"{level}: {n}" for level, n in stats["compared_by"].items())
        + " (words: word by word per segment; segments: per group of segments that no reference segment "
          "straddles; recording: the whole recording's text).",
        "",
        "| language | segments in | hours in | kept | hours kept | threshold | cps bounds | "
        + " | ".join(f"dropped: {r}" for r in DROP_REASONS) + " |" + (" true PL CER kept % |" if truth else ""),
        "|---|" + "---:|" * (6 + len(DROP_REASONS) + truth),
    ]
    for lang, s in sorted(stats["languages"].items()):
        bounds = "{:.1f}–{:.1f}".format(*s["cps_bounds"]) if s["cps_bounds"] else "—"
        cells = [lang, s["segments"], f"{s['hours_in']:.3f}", s["kept"], f"{s['hours_kept']:.3f}",
                 f"{s['threshold']:.3f}", bounds, *(s["dropped"].get(r, 0) for r in DROP_REASONS),
                 *([_percent(s["true_cer_kept"])] if truth else [])]  # fmt: skip
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    lines += ["", f"Recordings: {stats['recordings']}, {stats['hours_recordings']:.3f} h (segments leave out the "
              f"pauses beyond pad_seconds); ids in one set only (skipped): {stats['id_mismatch']}", ""]
    if stats.get("recording_true_cer"):
        per_language = ", ".join(f"{lang} {_percent(v)} %" for lang, v in stats["recording_true_cer"].items())
        lines += [f"True PL CER of the uncut labels (whole recordings): {per_language}", ""]
    lines += [
        "## Kept fraction against threshold",
        "",
        "Disagreement: pooled CER between the greedy and LM decodes of the kept segments (the estimate used "
        "without truth)." + (" True PL CER: the kept labels against the synthetic truth (a report: it never "
                             "chooses the threshold)." if truth else ""),  # fmt: skip
        "",
        "| language | threshold | segments | kept % hours | disagreement % |" + (" true PL CER % |" if truth else ""),
        "|---|---:|---:|---:|---:|" + ("---:|" if truth else ""),
    ]
    for lang, entries in stats["threshold_table"].items():
        for e in entries:
            cells = [lang, _threshold_cell(e["threshold"]), e["segments"], f"{100 * e['kept_fraction']:.1f}",
                     _percent(e["disagreement"]), *([_percent(e["true_cer"])] if truth else [])]  # fmt: skip
            lines.append("| " + " | ".join(map(str, cells)) + " |")
    if stats.get("plot"):
        lines += ["", f"![kept fraction vs PL CER]({stats['plot']})"]
    return "\n".join(lines) + "\n"


def _plot(table: Mapping[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    truth = "true_cer" in next(iter(table.values()))[0]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for n, (lang, entries) in enumerate(table.items()):
        rows = [e for e in entries if not isinstance(e["threshold"], str)]
        for key, style in (("true_cer", "-"), ("disagreement", "--")) if truth else (("disagreement", "-"),):
            points = [(100 * e["kept_fraction"], 100 * e[key]) for e in rows if e[key] is not None]
            if points:
                ax.plot(*zip(*points), style, marker="o", color=f"C{n}",
                        label=f"{lang} {'true PL CER' if key == 'true_cer' else 'greedy/LM disagreement'}")
    ax.set_xlabel("kept % of the segment hours")
    ax.set_ylabel("% of the kept segments")
    ax.set_title("PL selection by agreement (one point per threshold)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def select_by_consensus(labels: str | os.PathLike, reference: str | os.PathLike,
                        output_dir: str | os.PathLike | None = None, config: AgreementConfig | None = None,
                        truth: Mapping[str, str] | None = None, thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
                        plot: bool = True, names: tuple[str, str] = ("labels", "reference")) -> tuple[Dataset, dict]:  # fmt: skip
    """Cut, score and select the segments of two merged PL sets of the same recordings, made by any two
    teachers: `labels` (with word times: cut into segments, its rows become the output) against
    `reference` (compared by words, segments or whole recordings: see the module docstring).

    `labels`/`reference`: merged PL datasets (save_to_disk folders, or PL folders with merged/dataset).
    `truth`: id -> true transcript (:func:`modeling_mlpl.data.load_unlabelled_truth`), for the report only.
    `names`: what the two sets are called in messages and stats (the greedy/LM selection passes its own).
    With `output_dir`: dataset/ (save_to_disk, the merged-PL schema), stats.json, stats.md, agreement.png.
    """
    config = config or AgreementConfig()
    label_path, reference_path = pl_dataset_path(labels), pl_dataset_path(reference)
    label_set, reference_set = load_from_disk(str(label_path)), load_from_disk(str(reference_path))
    segments, labels, mismatch, references = score_pair(label_set, reference_set, config, names)
    chosen = apply_selection(segments, config)
    truth_counts = segment_truth_counts(segments, labels, truth) if truth is not None else None
    table = threshold_table(segments, sorted({*thresholds, *chosen["thresholds"].values()}), truth_counts)
    records = segment_records(segments, labels, references)
    dataset = records_to_pl_dataset(sorted(records, key=lambda r: r["id"]))

    languages = {}
    for lang in sorted({s.language for s in segments}):
        rows = [s for s in segments if s.language == lang]
        languages[lang] = {**_summary(rows, truth_counts), "threshold": chosen["thresholds"][lang],
                           "cps_bounds": chosen["cps_bounds"].get(lang)}  # fmt: skip
    levels = {s.recording_id: s.level for s in segments}
    stats = {
        "labels": str(label_path), "reference": str(reference_path), "names": list(names), "config": asdict(config),
        "teachers": {"labels": sorted({teacher_name(r) for r in labels.values()}),
                     "reference": sorted(set(references.values()))},
        # How each recording was compared (finest first): by the reference's words, segments, or whole text.
        "compared_by": {level: n for level in LEVELS if (n := sum(1 for v in levels.values() if v == level))},
        "recordings": len(labels), "id_mismatch": mismatch,
        "hours_recordings": sum(float(r["duration"]) for r in labels.values()) / 3600.0,
        **_summary(segments, truth_counts),
        # The keys of the merge report (modeling_mlpl.recipe.report.pl_statistics reads them), counted in segments.
        "records": len(segments), "empty_outputs": sum(1 for s in segments if s.reason == "empty"), "failures": 0,
        "languages": languages, "threshold_table": table,
    }  # fmt: skip
    if truth is not None:  # the uncut labels against the truth: what the segment-level rows should add up to
        stats["recording_true_cer"] = {
            lang: cer([normalize_transcript(truth[i]) for i in ids], [labels[i]["text"] for i in ids])
            for lang in languages if (ids := [i for i, r in labels.items() if r["language"] == lang])
        }  # fmt: skip
    if output_dir is not None:
        _write_outputs(dataset, stats, Path(output_dir), plot)
    logger.info("agreement selection: %d of %d segments kept (%.2f of %.2f h); dropped %s; compared by %s",
                stats["kept"], stats["segments"], stats["hours_kept"], stats["hours_in"], stats["dropped"],
                stats["compared_by"])  # fmt: skip
    return dataset, stats


def _write_outputs(dataset: Dataset, stats: dict, output_dir: Path, plot: bool) -> None:
    """OUTPUT_DIR/{dataset/, stats.json, stats.md, agreement.png}."""
    output_dir.mkdir(parents=True, exist_ok=True)
    dataset.save_to_disk(str(output_dir / "dataset"))
    if plot and stats["segments"]:
        _plot(stats["threshold_table"], output_dir / "agreement.png")
        stats["plot"] = "agreement.png"
    (output_dir / "stats.json").write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (output_dir / "stats.md").write_text(_markdown(stats), encoding="utf-8")


def select_by_agreement(greedy: str | os.PathLike, lm: str | os.PathLike, output_dir: str | os.PathLike | None = None,
                        config: AgreementConfig | None = None, truth: Mapping[str, str] | None = None,
                        thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
                        plot: bool = True) -> tuple[Dataset, dict]:  # fmt: skip
    """:func:`select_by_consensus` of the greedy and LM decodes of one model, the label being the
    `config.label_source` decode; stats also name the two sets as "greedy" and "lm"."""
    config = config or AgreementConfig()
    pair, names = ((lm, greedy), ("lm", "greedy")) if config.label_source == "lm" else ((greedy, lm), ("greedy", "lm"))
    dataset, stats = select_by_consensus(*pair, None, config, truth, thresholds, names=names)
    stats = {"greedy": str(pl_dataset_path(greedy)), "lm": str(pl_dataset_path(lm)), **stats}
    if output_dir is not None:
        _write_outputs(dataset, stats, Path(output_dir), plot)
    return dataset, stats
