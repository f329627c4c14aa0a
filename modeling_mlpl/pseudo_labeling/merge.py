"""Merge per-process shards into one `datasets.Dataset`, filter at merge time, write a stats report.

Filters live here, not in the labeling job, so the same raw labels can be filtered several ways
(e.g. drop the 25 % least confident, or keep everything) without relabelling.
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from datasets import Dataset, DatasetInfo, Features, List, Value
from datasets.table import InMemoryTable

from ..data.common import FEATURES
from ..tokenization_mlpl import transcript_characters
from ..resumable import Accounting, read_shards
from .shards import FAILURE_PREFIX, LABEL_PREFIX

logger = logging.getLogger(__name__)

LOAD_REPORT = "load_report.json"

__all__ = ["LOAD_REPORT", "PL_FEATURES", "MergeFilters", "merge_pseudo_labels", "merge_with_stats", "records_to_dataset"]

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
    }
)
PL_FEATURES = Features({**FEATURES, **PL_COLUMNS})


@dataclass
class MergeFilters:
    """min_confidence: drop labels whose `confidence_key` score is lower. top_percent: keep only the
    most confident p % of each language (per language, so that a language whose model is less sure
    overall is not dropped wholesale). min_chars: drop labels with fewer characters (1 drops empty
    outputs; 0 keeps them). min_duration_s: drop shorter recordings."""

    min_confidence: float | None = None
    top_percent: float | None = None
    min_chars: int = 1
    min_duration_s: float = 0.0
    confidence_key: str = "confidence"

    def __post_init__(self):
        if self.top_percent is not None and not 0 < self.top_percent <= 100:
            raise ValueError(f"top_percent must be in (0, 100], got {self.top_percent}")
        if self.confidence_key not in ("confidence", "path_score", "ctc_score"):
            raise ValueError(f"confidence_key must be confidence, path_score or ctc_score, got {self.confidence_key!r}")


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


def _apply_filters(records: list[dict], filters: MergeFilters) -> tuple[list[dict], dict[str, int]]:
    dropped: dict[str, int] = defaultdict(int)
    kept = []
    for r in records:
        n_chars = len(transcript_characters(r["text"]))
        if n_chars == 0 and filters.min_chars > 0:
            dropped["empty"] += 1
        elif n_chars < filters.min_chars:
            dropped["too_short_text"] += 1
        elif r["duration"] < filters.min_duration_s:
            dropped["too_short_audio"] += 1
        elif filters.min_confidence is not None and r[filters.confidence_key] < filters.min_confidence:
            dropped["low_confidence"] += 1
        else:
            kept.append(r)
    if filters.top_percent is not None and filters.top_percent < 100:
        by_language = defaultdict(list)
        for r in kept:
            by_language[r["language"]].append(r)
        kept = []
        for rows in by_language.values():
            rows.sort(key=lambda r: (-r[filters.confidence_key], r["id"]))
            n_keep = int(np.ceil(len(rows) * filters.top_percent / 100.0))
            kept += rows[:n_keep]
            dropped["below_top_percent"] += len(rows) - n_keep
    return kept, dict(dropped)


def _hours(records: list[dict]) -> float:
    return sum(r["duration"] for r in records) / 3600.0


def _plot_confidence(records: list[dict], kept: list[dict], key: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    values = [r[key] for r in records]
    bins = np.linspace(min(values), max(values), 31) if values and min(values) < max(values) else 30
    ax.hist(values, bins=bins, alpha=0.5, label=f"all ({len(values)})")
    ax.hist([r[key] for r in kept], bins=bins, alpha=0.7, label=f"kept ({len(kept)})")
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
        "| language | recordings | hours in | kept | hours kept | mean confidence |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for lang, s in sorted(stats["languages"].items()):
        lines.append(f"| {lang} | {s['records']} | {s['hours_in']:.3f} | {s['kept']} | {s['hours_kept']:.3f} | "
                     f"{s['mean_confidence']:.3f} |")  # fmt: skip
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
    kept, dropped = _apply_filters(records, filters)
    kept.sort(key=lambda r: r["id"])
    dataset = records_to_dataset(kept)

    languages = {}
    kept_ids = {r["id"] for r in kept}
    for lang in sorted({r["language"] for r in records}):
        rows = [r for r in records if r["language"] == lang]
        rows_kept = [r for r in rows if r["id"] in kept_ids]
        languages[lang] = {
            "records": len(rows),
            "hours_in": _hours(rows),
            "kept": len(rows_kept),
            "hours_kept": _hours(rows_kept),
            "mean_confidence": float(np.mean([r["confidence"] for r in rows])),
        }
    stats = {
        "shard_dir": str(shard_dir),
        "filters": asdict(filters),
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
        "languages": languages,
        "confidence_quantiles": (
            {q: float(np.quantile([r[filters.confidence_key] for r in records], q)) for q in (0.1, 0.25, 0.5, 0.75, 0.9)}
            if records else {}
        ),  # fmt: skip
    }
    if output_dir is not None:
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        dataset.save_to_disk(str(output_dir / "dataset"))
        if plot and records:
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
