"""The one schema every mlpl dataset has, and how loader rows become `datasets` objects.

Columns: ``id`` (unique, stable across runs: it keys pseudo-labels and resumes), ``audio``
(`datasets.Audio(decode=False)`: a path or bytes, decoded by :mod:`modeling_mlpl.audio`),
``text`` (normalised; "" for unlabelled audio), ``language`` (Common Voice code), ``duration``
(seconds, for length bucketing and filters).

Rows are turned into Arrow directly rather than through `Dataset.from_list(features=...)`
because datasets >= 4 insists on torchcodec to *encode* an Audio column, even for a bare path.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterator

import pyarrow as pa
from datasets import Audio, Dataset, DatasetInfo, Features, IterableDataset, Value
from datasets.table import InMemoryTable

from .ids import check_unique_ids
from .load_report import LoadReport

logger = logging.getLogger(__name__)

FEATURES = Features(
    {
        "id": Value("string"),
        "audio": Audio(decode=False),
        "text": Value("string"),
        "language": Value("string"),
        "duration": Value("float64"),
    }
)
COLUMNS = tuple(FEATURES)
_STREAM_CHUNK = 256

# Load reports by dataset fingerprint: `datasets` objects do not keep arbitrary attributes through
# map/filter, so the report is also attached (`ds.load_report`) where possible.
_REPORTS: dict[str, LoadReport] = {}


def make_row(id: str, audio: str | dict, text: str, language: str, duration: float) -> dict[str, Any]:
    if isinstance(audio, str):
        audio = {"bytes": None, "path": audio}
    return {"id": id, "audio": audio, "text": text, "language": language, "duration": float(duration)}


def rows_to_dataset(rows: list[dict], report: LoadReport | None = None) -> Dataset:
    """Rows (see :func:`make_row`) -> `datasets.Dataset` with :data:`FEATURES`; a repeated id raises
    :class:`~modeling_mlpl.data.ids.DuplicateIdError` (the loaders build unique ones)."""
    check_unique_ids([row["id"] for row in rows], report.source if report is not None else "rows")
    table = pa.Table.from_pylist(rows, schema=FEATURES.arrow_schema)
    ds = Dataset(InMemoryTable(table), info=DatasetInfo(features=FEATURES))
    if report is not None:
        attach_report(ds, report)
    return ds


def attach_report(ds: Dataset, report: LoadReport) -> None:
    _REPORTS[ds._fingerprint] = report
    try:
        ds.load_report = report
    except AttributeError:  # pragma: no cover - slots in a future datasets version
        pass


def get_load_report(ds: Any) -> LoadReport | None:
    """The :class:`LoadReport` of a dataset returned by an mlpl loader (``None`` if unknown)."""
    report = getattr(ds, "load_report", None)
    if report is None and hasattr(ds, "_fingerprint"):
        report = _REPORTS.get(ds._fingerprint)
    return report


def rows_to_iterable(
    generate_rows: Callable[[str], Iterator[dict]], shards: list[str], report: LoadReport | None = None
) -> IterableDataset:
    """Lazy variant: `generate_rows(shard)` is only called while iterating (one shard per
    language/file group, so DataLoader workers split by shard). Bad rows are counted into
    `report` as they are met, so it is complete only after a full pass."""
    from datasets.iterable_dataset import ArrowExamplesIterable  # internal, but the only path that
    # builds Audio columns from Arrow without encoding through torchcodec

    schema = FEATURES.arrow_schema

    def generate_tables(shards: list[str]) -> Iterator[tuple[str, pa.Table]]:
        for shard in shards:
            chunk: list[dict] = []
            for i, row in enumerate(generate_rows(shard)):
                chunk.append(row)
                if len(chunk) == _STREAM_CHUNK:
                    yield f"{shard}_{i}", pa.Table.from_pylist(chunk, schema=schema)
                    chunk = []
            if chunk:
                yield f"{shard}_end", pa.Table.from_pylist(chunk, schema=schema)

    ds = IterableDataset(ArrowExamplesIterable(generate_tables, {"shards": list(shards)}), info=DatasetInfo(features=FEATURES))
    if report is not None:
        try:
            ds.load_report = report
        except AttributeError:  # pragma: no cover
            pass
    return ds


def finish(
    rows_fn: Callable[[str], Iterator[dict]], shards: list[str], report: LoadReport, streaming: bool
) -> Dataset | IterableDataset:
    """Build the eager or streaming dataset from a per-shard row generator and log the report."""
    if streaming:
        return rows_to_iterable(rows_fn, shards, report)
    rows = [row for shard in shards for row in rows_fn(shard)]
    report.log()
    return rows_to_dataset(rows, report)
