"""Append-only JSONL shards: one writer per process, crash-safe, resumable.

Every process r writes `pl-rank{r:05d}.jsonl` (labels) and `failures-rank{r:05d}.jsonl` (ids whose
audio could not be decoded) and flushes + fsyncs after every batch, so a killed job loses at most
the batch in flight. A process killed mid-write leaves a last line without its newline: readers
ignore it and the owner truncates it before appending again, so the id is simply redone.

Which process labels an id is decided by a stable hash of the id, not by its position in the
dataset, so shards stay disjoint however the dataset is ordered, filtered or streamed.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Iterable, Iterator

logger = logging.getLogger(__name__)

__all__ = [
    "LABEL_PREFIX",
    "FAILURE_PREFIX",
    "stable_hash",
    "shard_of",
    "shard_path",
    "repair_shard",
    "read_shard",
    "read_shards",
    "completed_ids",
    "ShardWriter",
    "write_rank_stats",
    "read_rank_stats",
]

LABEL_PREFIX = "pl"
FAILURE_PREFIX = "failures"
RUN_FILE = "pl_run.json"  # what the run was started with (modeling_mlpl.run_inputs)
STATS_PREFIX = "stats"  # stats-rankNNNNN.json: what each process of the last run did (for the closing totals)


def stable_hash(uid: str) -> int:
    """blake2b of the id as a 64-bit integer: the same in every process, run and Python version (the
    built-in `hash` of a str is salted per process)."""
    return int.from_bytes(hashlib.blake2b(uid.encode("utf-8"), digest_size=8).digest(), "big")


def shard_of(uid: str, world_size: int) -> int:
    """The process (0 .. world_size-1) that owns `uid` (a stable hash of the id)."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    return stable_hash(uid) % world_size


def shard_path(directory: str | os.PathLike, rank: int, prefix: str = LABEL_PREFIX) -> Path:
    return Path(directory) / f"{prefix}-rank{rank:05d}.jsonl"


def repair_shard(path: str | os.PathLike) -> int:
    """Truncate a trailing partial line (a write cut by a kill). Returns the bytes removed.

    Only the shard's owner calls this, before it appends: others just skip the partial line.
    A complete last line that is not valid JSON cannot come from our writer (lines are written
    whole and end with a newline) and is left for `read_shard` to report.
    """
    path = Path(path)
    if not path.exists():
        return 0
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return 0
        # Scan back for the last newline: everything after it is the partial line.
        pos, block = size, 1 << 16
        keep = 0
        while pos > 0:
            start = max(0, pos - block)
            f.seek(start)
            chunk = f.read(pos - start)
            idx = chunk.rfind(b"\n")
            if idx >= 0:
                keep = start + idx + 1
                break
            pos = start
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
    removed = size - keep
    logger.warning("%s: removed a partial last line (%d bytes) left by an interrupted run", path, removed)
    return removed


def read_shard(path: str | os.PathLike) -> Iterator[dict]:
    """Records of one shard, skipping a trailing partial line (and, with a warning, corrupt lines)."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.endswith(b"\n"):
                logger.info("%s: ignoring the partial last line %d", path, lineno)
                break
            try:
                yield json.loads(raw)
            except json.JSONDecodeError:
                logger.warning("%s:%d: not valid JSON, skipped", path, lineno)


def read_shards(directory: str | os.PathLike, prefix: str = LABEL_PREFIX) -> Iterator[dict]:
    for path in sorted(glob.glob(os.path.join(os.fspath(directory), f"{prefix}-rank*.jsonl"))):
        yield from read_shard(path)


def completed_ids(directory: str | os.PathLike, include_failures: bool = True) -> set[str]:
    """Ids already labelled (or failed, unless `include_failures` is False) by any process of any earlier
    run (also with another world size)."""
    done = set()
    for prefix in (LABEL_PREFIX, FAILURE_PREFIX) if include_failures else (LABEL_PREFIX,):
        done.update(record["id"] for record in read_shards(directory, prefix))
    return done


class ShardWriter:
    """Appends records to one process's shard; each `write` is one batch, flushed and fsync'd."""

    def __init__(self, path: str | os.PathLike, fsync: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_shard(self.path)
        self.fsync = fsync
        self._file = open(self.path, "ab")

    def write(self, records: Iterable[dict]) -> int:
        # One write call for the whole batch: a kill leaves at most one partial line at the end.
        data = b"".join(json.dumps(r, ensure_ascii=False).encode("utf-8") + b"\n" for r in records)
        if data:
            self._file.write(data)
            self._file.flush()
            if self.fsync:
                os.fsync(self._file.fileno())
        return len(data)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_rank_stats(directory: str | os.PathLike, rank: int, stats: dict) -> None:
    """This process's counts of the run that just ended, written whole (tmp + rename)."""
    path = Path(directory) / f"{STATS_PREFIX}-rank{rank:05d}.json"
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(stats) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_rank_stats(directory: str | os.PathLike, world_size: int) -> list[dict]:
    """The counts :func:`write_rank_stats` left for ranks 0..world_size-1 (after a barrier)."""
    return [json.loads((Path(directory) / f"{STATS_PREFIX}-rank{r:05d}.json").read_text(encoding="utf-8"))
            for r in range(world_size)]  # fmt: skip
