"""Readers for the table formats the corpora ship: tab-separated files written without quoting
(Common Voice, VoxPopuli), Parquet copies with embedded audio bytes, and `audiofolder` metadata.

Each yields plain dicts and counts malformed rows in a :class:`LoadReport` instead of raising,
because one bad line must not cost a user the other million.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Iterator

from .load_report import LoadReport


def unquote_sentence(text: str) -> tuple[str, bool]:
    """Undo CSV quoting of a whole field: ``"He said ""hi"".`` + closing quote becomes ``He said "hi".``

    Common Voice TSVs are written without quoting, so quotes are normally part of the sentence;
    only a field that is wrapped in quotes and whose inner quotes are all doubled is a quoted
    copy (made by pandas/csv re-exports). Returns (text, was_unquoted).
    """
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        inner = text[1:-1]
        if '"' not in inner.replace('""', ""):
            return inner.replace('""', '"'), True
    return text, False


def read_tsv(
    path: str | os.PathLike, report: LoadReport, free_text_column: str, required: tuple[str, ...]
) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows of an unquoted TSV as dicts keyed by the header, with their line numbers.

    A row with more fields than the header is taken to have tabs inside `free_text_column` (the
    sentence): the surplus is joined back with spaces and counted as repaired. A row missing a
    `required` column is counted as malformed and skipped.
    """
    path = Path(path)
    with open(path, "rb") as f:  # decoded line by line: one non-UTF-8 line is one skipped row, not a crash
        header_line = decode_utf8(f.readline(), path, 1)
        if header_line is None:
            raise ValueError(f"{path}: the header is not UTF-8 text (re-save the file as UTF-8)")
        header = header_line.rstrip("\r\n").lstrip("\ufeff").split("\t")
        missing = [c for c in required if c not in header]
        if missing:
            raise ValueError(f"{path}: header lacks column(s) {missing}; header is {header}")
        text_idx = header.index(free_text_column) if free_text_column in header else None
        for lineno, raw in enumerate(f, start=2):
            line = decode_utf8(raw, path, lineno, report)
            if line is None:
                continue
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("\t")
            extra = len(fields) - len(header)
            if extra > 0 and text_idx is not None:
                merged = " ".join(fields[text_idx : text_idx + extra + 1])
                fields = fields[:text_idx] + [merged] + fields[text_idx + extra + 1 :]
                report.repair("tab_in_sentence", f"{path.name}:{lineno}")
            row = dict(zip(header, fields))
            if any(not row.get(c) and c != free_text_column for c in required) or any(c not in row for c in required):
                report.skip("malformed_row", f"{path.name}:{lineno}")
                continue
            yield lineno, row


def decode_utf8(raw: bytes, path: Path, lineno: int | None = None, report: LoadReport | None = None) -> str | None:
    """``raw`` as UTF-8 text, or None, counted in ``report`` as ``not_utf8`` with the file (and line), when it
    is not: a Latin-1 transcript is a bad row like any other, and the message says which file to re-save."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        if report is not None:
            report.skip("not_utf8", f"{path.name}:{lineno}" if lineno is not None else str(path))
        return None


def read_parquet_rows(files: list[Path], columns: list[str] | None = None) -> Iterator[dict]:
    """Rows of Parquet files in order, read batch by batch (audio bytes never all in memory)."""
    import pyarrow.parquet as pq

    for file in files:
        pf = pq.ParquetFile(file)
        names = pf.schema_arrow.names
        cols = [c for c in columns if c in names] if columns else None
        for batch in pf.iter_batches(batch_size=256, columns=cols):
            yield from batch.to_pylist()


def read_audiofolder_metadata(path: Path) -> Iterator[dict]:
    """Rows of an `audiofolder` metadata.csv / metadata.jsonl (standard CSV quoting)."""
    if path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)
    else:
        with open(path, encoding="utf-8", newline="") as f:
            yield from csv.DictReader(f)


def find_parquet(directory: Path, split: str) -> list[Path]:
    """Parquet files of `split` under `directory`: `<split>/*.parquet` or `<split>[-_.]*.parquet`."""
    files = sorted((directory / split).glob("*.parquet")) if (directory / split).is_dir() else []
    if not files:
        files = sorted(p for p in directory.glob(f"{split}*.parquet") if p.name[len(split)] in "-_.")
    if not files and (directory / "data").is_dir():
        files = find_parquet(directory / "data", split)
    return files
