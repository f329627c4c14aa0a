"""Merge per-process shards into one `datasets.Dataset`, filter at merge time, write a stats report.

Filters live here, not in the labeling job, so the same raw labels can be filtered several ways
(e.g. drop the 25 % least confident, or keep everything) without relabelling. The same holds for the
label-free filters of seq2seq teachers (Whisper's compression ratio, average log-probability and
no-speech rule, a loop check, an implausible speaking rate) and for the student's vocabulary: the shards
keep every labelled row with its scores and its teacher's own text (``text_raw``), and each merge says
how many rows each filter dropped (docs/teachers_text.md).
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import pyarrow as pa
from datasets import Dataset, DatasetInfo, Features, List, Value
from datasets.table import InMemoryTable

from ..data.common import FEATURES
from ..resumable import Accounting, read_shards
from ..text import count_digits, find_oov, most_repeated_ngram
from ..tokenization_mlpl import WORD_DELIMITER, transcript_characters
from .shards import FAILURE_PREFIX, LABEL_PREFIX

logger = logging.getLogger(__name__)

LOAD_REPORT = "load_report.json"

__all__ = ["LOAD_REPORT", "NO_SPEECH_LOGPROB", "PL_FEATURES", "MergeFilters", "load_student_vocab", "merge_pseudo_labels",
           "merge_with_stats", "records_to_dataset", "teacher_name"]

# Whisper's no-speech rule (openai/whisper transcribe.py): a window is silence when its no_speech_prob is
# above the threshold AND its average log-probability is below this (Whisper's logprob_threshold); a
# confident transcript with a high no_speech_prob is kept.
NO_SPEECH_LOGPROB = -1.0

# The training stage's contract: the loaders' schema (id, audio, text, language, duration: data.common.FEATURES)
# plus where the segment lies (offset), its confidence scores and its CTC alignment: token_times holds one start
# time in seconds from `offset` per target character of `text`, spaces included.
PL_COLUMNS = Features(
    {
        "offset": Value("float64"),
        "confidence": Value("float64"),
        "token_times": List(Value("float64")),
        "words": List({"word": Value("string"), "start": Value("float64"), "end": Value("float64")}),
        "path_score": Value("float64"),
        "ctc_score": Value("float64"),
        "num_frames": Value("int64"),
        "lid_top_k": List({"language": Value("string"), "prob": Value("float64")}),
        "language_source": Value("string"),
        "model": Value("string"),
        "decoder": Value("string"),
        # Teachers other than an MLPL model (pseudo_labeling/teachers/): the teacher's own text before
        # normalisation (modeling_mlpl.text.normalize_pl_text), who made the row, and Whisper's scores
        # (row level) and segments (its times when it has no word times). Absent (null) for MLPL rows.
        "text_raw": Value("string"),
        "teacher": {"kind": Value("string"), "name_or_path": Value("string"), "revision": Value("string"),
                    "weights_hash": Value("string")},
        "avg_logprob": Value("float64"),
        "compression_ratio": Value("float64"),
        "no_speech_prob": Value("float64"),
        "segments": List({"start": Value("float64"), "end": Value("float64"), "text": Value("string")}),
        # Rows selected by the consensus of two PL sets (pseudo_labeling/agreement.py): the teachers of the
        # label and of the reference it was compared with, how (words / segments / recording) and the CER.
        "consensus": {"labels": Value("string"), "reference": Value("string"), "level": Value("string"),
                      "disagreement": Value("float64")},
    }
)
PL_FEATURES = Features({**FEATURES, **PL_COLUMNS})


@dataclass
class MergeFilters:
    """Which labelled rows go into the merged dataset. Every drop is counted by reason (stats["dropped"]).

    min_confidence: drop labels whose `confidence_key` score is lower. top_percent: keep only the
    most confident p % of each language (per language, so that a language whose model is less sure
    overall is not dropped wholesale). Rows without that score (some external teachers give none)
    pass both and are not ranked. min_chars: drop labels with fewer characters (1 drops empty
    outputs; 0 keeps them). min_duration_s: drop shorter recordings.

    student_vocab: the student tokenizer's tokens (:func:`load_student_vocab`); a row whose text has a
    character outside it cannot be trained on: dropped, and its characters counted per language
    (stats["unwritable_chars"]). None: no check.

    Label-free filters for seq2seq teachers; each applies only to rows that carry its score (rows of a
    CTC teacher have no compression_ratio and pass that filter), None turns it off:
    max_compression_ratio: drop rows whose gzip compression ratio is higher (Whisper's default 2.4: a
    looping transcript compresses well). min_avg_logprob: drop rows whose average token log-probability
    is lower (Whisper's -1.0). max_no_speech_prob: Whisper's silence rule, no_speech_prob above this
    (0.6) and avg_logprob below :data:`NO_SPEECH_LOGPROB`; counted apart, before min_avg_logprob.

    Filters on the text itself (every row; off by default): max_repeated_ngram: drop rows whose most
    repeated word `repeated_ngram_size`-gram occurs more often than this (a decoder loop;
    :func:`modeling_mlpl.text.most_repeated_ngram`). max_chars_per_second: drop rows with more CTC
    target characters (spaces included) per second of audio than this (an implausible speaking rate:
    read speech is ~10-20, text hallucinated over a short clip far more)."""

    min_confidence: float | None = None
    top_percent: float | None = None
    min_chars: int = 1
    min_duration_s: float = 0.0
    confidence_key: str = "confidence"
    student_vocab: frozenset[str] | None = None
    max_compression_ratio: float | None = 2.4
    min_avg_logprob: float | None = -1.0
    max_no_speech_prob: float | None = 0.6
    max_repeated_ngram: int | None = None
    repeated_ngram_size: int = 3
    max_chars_per_second: float | None = None

    def __post_init__(self):
        if self.top_percent is not None and not 0 < self.top_percent <= 100:
            raise ValueError(f"top_percent must be in (0, 100], got {self.top_percent}")
        if self.confidence_key not in ("confidence", "path_score", "ctc_score"):
            raise ValueError(f"confidence_key must be confidence, path_score or ctc_score, got {self.confidence_key!r}")
        if self.student_vocab is not None:
            self.student_vocab = frozenset(self.student_vocab)
            if not self.student_vocab:
                raise ValueError("student_vocab is empty")
        for name in ("max_compression_ratio", "max_chars_per_second"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.max_no_speech_prob is not None and not 0 <= self.max_no_speech_prob <= 1:
            raise ValueError(f"max_no_speech_prob must be in [0, 1], got {self.max_no_speech_prob}")
        if self.max_repeated_ngram is not None and self.max_repeated_ngram < 1:
            raise ValueError(f"max_repeated_ngram must be >= 1, got {self.max_repeated_ngram}")
        if self.repeated_ngram_size < 1:
            raise ValueError(f"repeated_ngram_size must be >= 1, got {self.repeated_ngram_size}")

    def describe(self) -> dict:
        """The filters as stats.json records them (the vocabulary by its size, not its 8000 tokens)."""
        out = asdict(self)
        if self.student_vocab is not None:
            out["student_vocab"] = f"{len(self.student_vocab)} tokens"
        return out


def load_student_vocab(model_dir: str | os.PathLike) -> frozenset[str]:
    """The tokens of the student's tokenizer saved in `model_dir` (a model or processor folder): its
    vocab.json (:func:`modeling_mlpl.decoding.lm_decoder.vocab_from_pretrained`), else any tokenizer
    transformers can load from the folder (offline)."""
    from ..decoding.lm_decoder import vocab_from_pretrained

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"student vocabulary: no such folder {model_dir}")
    if (model_dir / "vocab.json").is_file():
        try:
            return frozenset(vocab_from_pretrained(model_dir))
        except ValueError:  # e.g. a per-language vocab.json: the tokenizer knows how to read it
            pass
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    except (OSError, ValueError) as err:
        raise FileNotFoundError(f"student vocabulary: no tokenizer in {model_dir} ({str(err).splitlines()[0]})") from err
    return frozenset(tokenizer.get_vocab())


def records_to_dataset(records: list[dict]) -> Dataset:
    """Shard records -> Dataset with :data:`PL_FEATURES` (Arrow built directly: datasets would try to
    encode an Audio column through torchcodec, see modeling_mlpl.data.common)."""
    rows = []
    for r in records:
        row = {name: r.get(name) for name in PL_FEATURES}
        row["audio"] = {"bytes": None, "path": r.get("audio")}
        rows.append(row)
    table = pa.Table.from_pylist(rows, schema=PL_FEATURES.arrow_schema)
    return Dataset(InMemoryTable(table), info=DatasetInfo(features=PL_FEATURES))


def _scored(row: dict, key: str) -> bool:
    return row.get(key) is not None


def _drop_reason(r: dict, filters: MergeFilters, unwritable: dict[str, dict]) -> str | None:
    """Why a labelled row is left out of the merged dataset (None: kept, before top_percent). Reasons are
    checked in this order and each row is counted under the first that applies."""
    chars = transcript_characters(r["text"])
    if not chars and filters.min_chars > 0:
        return "empty"
    if len(chars) < filters.min_chars:
        return "too_short_text"
    if r["duration"] < filters.min_duration_s:
        return "too_short_audio"
    if filters.student_vocab is not None:
        oov = find_oov(r["text"], filters.student_vocab, WORD_DELIMITER)
        if oov:
            counts = unwritable.setdefault(r["language"], {"rows": 0, "chars": Counter()})
            counts["rows"] += 1
            counts["chars"].update(c for c in r["text"] if c in oov)
            return "unwritable_chars"
    if (filters.max_no_speech_prob is not None and _scored(r, "no_speech_prob") and _scored(r, "avg_logprob")
            and r["no_speech_prob"] > filters.max_no_speech_prob and r["avg_logprob"] < NO_SPEECH_LOGPROB):  # fmt: skip
        return "no_speech"
    if (filters.max_compression_ratio is not None and _scored(r, "compression_ratio")
            and r["compression_ratio"] > filters.max_compression_ratio):  # fmt: skip
        return "high_compression_ratio"
    if filters.min_avg_logprob is not None and _scored(r, "avg_logprob") and r["avg_logprob"] < filters.min_avg_logprob:
        return "low_avg_logprob"
    if (filters.max_repeated_ngram is not None
            and most_repeated_ngram(r["text"].split(), filters.repeated_ngram_size) > filters.max_repeated_ngram):  # fmt: skip
        return "repeated_ngram"
    if filters.max_chars_per_second is not None and len(chars) > filters.max_chars_per_second * r["duration"]:
        return "high_chars_per_second"
    if (filters.min_confidence is not None and _scored(r, filters.confidence_key)
            and r[filters.confidence_key] < filters.min_confidence):  # fmt: skip
        return "low_confidence"
    return None


def _apply_filters(records: list[dict], filters: MergeFilters) -> tuple[list[dict], dict[str, int], dict[str, dict]]:
    """The kept rows, the drops by reason, and the characters the student cannot write per language."""
    dropped: dict[str, int] = defaultdict(int)
    unwritable: dict[str, dict] = {}
    kept = []
    for r in records:
        reason = _drop_reason(r, filters, unwritable)
        if reason is None:
            kept.append(r)
        else:
            dropped[reason] += 1
    if filters.top_percent is not None and filters.top_percent < 100:
        by_language = defaultdict(list)
        unranked = [r for r in kept if not _scored(r, filters.confidence_key)]
        for r in kept:
            if _scored(r, filters.confidence_key):
                by_language[r["language"]].append(r)
        kept = unranked
        for rows in by_language.values():
            rows.sort(key=lambda r: (-r[filters.confidence_key], r["id"]))
            n_keep = int(np.ceil(len(rows) * filters.top_percent / 100.0))
            kept += rows[:n_keep]
            dropped["below_top_percent"] += len(rows) - n_keep
    unwritable = {lang: {"rows": u["rows"], "chars": dict(u["chars"].most_common())} for lang, u in sorted(unwritable.items())}
    return kept, dict(dropped), unwritable


def teacher_name(row: Mapping) -> str:
    """Who made a PL row, in one line: `kind:name_or_path` of its teacher; an MLPL row (no teacher
    field) by its model and decoder (greedy and LM decodes of one model are two teachers)."""
    teacher = row.get("teacher") or {}
    if teacher:
        return f"{teacher.get('kind')}:{teacher.get('name_or_path')}"
    return f"mlpl:{row.get('model')} ({row.get('decoder')})"


def _hours(records: list[dict]) -> float:
    return sum(r["duration"] for r in records) / 3600.0


def _plot_confidence(records: list[dict], kept: list[dict], key: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    values = [r[key] for r in records if _scored(r, key)]
    bins = np.linspace(min(values), max(values), 31) if values and min(values) < max(values) else 30
    ax.hist(values, bins=bins, alpha=0.5, label=f"all ({len(values)})")
    kept_values = [r[key] for r in kept if _scored(r, key)]
    ax.hist(kept_values, bins=bins, alpha=0.7, label=f"kept ({len(kept_values)})")
    ax.set_xlabel(key)
    ax.set_ylabel("recordings")
    ax.set_title("Pseudo-label confidence")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _markdown(stats: dict) -> str:
    lines = [
        "# Pseudo-label merge report",
        "",
        f"Shards: `{stats['shard_dir']}`; filters: `{json.dumps(stats['filters'])}`",
        "",
        "| | recordings | hours |",
        "|---|---:|---:|",
        f"| labelled (in) | {stats['records']} | {stats['hours_in']:.3f} |",
        f"| kept | {stats['kept']} | {stats['hours_kept']:.3f} |",
        f"| empty outputs | {stats['empty_outputs']} | |",
        f"| failed (unreadable audio) | {stats['failures']} | |",
        f"| skipped by the loader | {sum(stats['skipped_at_load'].values())} | |",
        f"| duplicates dropped | {stats['duplicates']} | |",
        "",
        f"Accounting: {stats['accounting_line']}",
        "",
        "Dropped by filter: " + (", ".join(f"{k} {v}" for k, v in sorted(stats["dropped"].items())) or "none"),
        "",
        "| language | recordings | hours in | kept | hours kept | mean confidence | with digits |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for lang, s in sorted(stats["languages"].items()):
        confidence = "—" if s["mean_confidence"] is None else f"{s['mean_confidence']:.3f}"
        lines.append(f"| {lang} | {s['records']} | {s['hours_in']:.3f} | {s['kept']} | {s['hours_kept']:.3f} | "
                     f"{confidence} | {s['rows_with_digits']} |")  # fmt: skip
    if stats["unwritable_chars"]:
        lines += ["", "Characters the student's vocabulary cannot write (those rows are dropped; the shards keep them):", ""]
        for lang, u in stats["unwritable_chars"].items():
            chars = ", ".join(f"{c!r} {n}" for c, n in u["chars"].items())
            lines.append(f"- {lang}: {u['rows']} rows; {chars}")
    lines += ["", "Rows by teacher: " + ", ".join(f"`{t}` {n}" for t, n in stats["teachers"].items())]
    if stats.get("histogram"):
        lines += ["", f"![confidence]({stats['histogram']})"]
    return "\n".join(lines) + "\n"


def merge_with_stats(shard_dir: str | os.PathLike, output_dir: str | os.PathLike | None = None,
                     filters: MergeFilters | None = None, plot: bool = True) -> tuple[Dataset, dict]:  # fmt: skip
    """Read every shard of `shard_dir`, drop duplicate ids (first wins), filter, sort by id.

    With `output_dir`: `dataset/` (save_to_disk), `stats.json`, `stats.md`, `confidence_hist.png`.
    """
    filters = filters or MergeFilters()
    shard_dir = Path(shard_dir)
    if not any(shard_dir.glob(f"{LABEL_PREFIX}-rank*.jsonl")) and not any(shard_dir.glob(f"{FAILURE_PREFIX}-rank*.jsonl")):
        raise FileNotFoundError(f"no pseudo-label shards ({LABEL_PREFIX}-rank*.jsonl) in {shard_dir}")
    records, seen, duplicates = [], set(), 0
    for r in read_shards(shard_dir, LABEL_PREFIX):
        if r["id"] in seen:
            duplicates += 1
            continue
        seen.add(r["id"])
        records.append(r)
    failures = {r["id"] for r in read_shards(shard_dir, FAILURE_PREFIX)} - seen
    # Files the loader already rejected by their header (written by run_scripts/pseudo_label.py).
    load_report = shard_dir / LOAD_REPORT
    load_info = json.loads(load_report.read_text()) if load_report.exists() else {}
    skipped_at_load = load_info.get("skipped", {})
    n_skipped = sum(skipped_at_load.values())
    # Every input of the runs into shard_dir: labelled + failed + skipped (+ not reached, if interrupted).
    accounting = Accounting(found=load_info.get("found", len(records) + len(failures) + n_skipped),
                            done=len(records), failed=len(failures), skipped=n_skipped)  # fmt: skip
    if duplicates:
        logger.warning("%d duplicate ids in %s (kept the first of each)", duplicates, shard_dir)
    kept, dropped, unwritable = _apply_filters(records, filters)
    kept.sort(key=lambda r: r["id"])
    dataset = records_to_dataset(kept)

    languages = {}
    kept_ids = {r["id"] for r in kept}
    for lang in sorted({r["language"] for r in records}):
        rows = [r for r in records if r["language"] == lang]
        rows_kept = [r for r in rows if r["id"] in kept_ids]
        confidences = [r["confidence"] for r in rows if _scored(r, "confidence")]
        languages[lang] = {
            "records": len(rows),
            "hours_in": _hours(rows),
            "kept": len(rows_kept),
            "hours_kept": _hours(rows_kept),
            "mean_confidence": float(np.mean(confidences)) if confidences else None,
            # Digits are kept as the teacher wrote them (never spelled out); how many rows have them.
            "rows_with_digits": sum(1 for r in rows if count_digits(r["text"])),
        }
    scores = [r[filters.confidence_key] for r in records if _scored(r, filters.confidence_key)]
    stats = {
        "shard_dir": str(shard_dir),
        "filters": filters.describe(),
        "records": len(records),
        "hours_in": _hours(records),
        "kept": len(kept),
        "hours_kept": _hours(kept),
        "empty_outputs": sum(1 for r in records if not r["text"]),
        "failures": len(failures),
        "failed_ids": sorted(failures)[:100],
        "skipped_at_load": skipped_at_load,
        "accounting": accounting.to_dict("labelled"),
        "accounting_line": accounting.line("labelled"),
        "duplicates": duplicates,
        "dropped": dropped,
        "unwritable_chars": unwritable,
        "teachers": dict(sorted(Counter(teacher_name(r) for r in records).items())),
        "languages": languages,
        "confidence_quantiles": (
            {q: float(np.quantile(scores, q)) for q in (0.1, 0.25, 0.5, 0.75, 0.9)} if scores else {}
        ),
    }
    if output_dir is not None:
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        dataset.save_to_disk(str(output_dir / "dataset"))
        if plot and scores:
            _plot_confidence(records, kept, filters.confidence_key, output_dir / "confidence_hist.png")
            stats["histogram"] = "confidence_hist.png"
        (output_dir / "stats.json").write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        (output_dir / "stats.md").write_text(_markdown(stats), encoding="utf-8")
    logger.info("merged %d labels (%.2f h) -> kept %d (%.2f h); %d failures", stats["records"], stats["hours_in"],
                stats["kept"], stats["hours_kept"], stats["failures"])  # fmt: skip
    return dataset, stats


def merge_pseudo_labels(shard_dir: str | os.PathLike, output_dir: str | os.PathLike | None = None,
                        filters: MergeFilters | None = None,
                        **filter_kwargs) -> Dataset:  # fmt: skip
    """The merged, filtered dataset (see :func:`merge_with_stats`). Filter options may be given as
    keyword arguments (`min_confidence=0.5`, `top_percent=75`, ...)."""
    if filters is None:
        filters = MergeFilters(**filter_kwargs)
    elif filter_kwargs:
        raise TypeError("give either `filters` or filter keyword arguments, not both")
    dataset, _ = merge_with_stats(shard_dir, output_dir, filters)
    return dataset
