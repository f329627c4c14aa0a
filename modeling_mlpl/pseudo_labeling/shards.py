"""Pseudo-label shards: what their files are called and which process labels an id.

Every process r appends `pl-rank{r:05d}.jsonl` (labels) and `failures-rank{r:05d}.jsonl` (ids whose
audio could not be decoded) with :class:`modeling_mlpl.resumable.ShardWriter` (flush + fsync per batch,
a torn last line repaired on resume); `pl_run.json` records what the run was started with.

Which process labels an id is decided by a stable hash of the id, not by its position in the
dataset, so shards stay disjoint however the dataset is ordered, filtered or streamed.
"""

from __future__ import annotations

import hashlib

__all__ = ["LABEL_PREFIX", "FAILURE_PREFIX", "RUN_FILE", "stable_hash", "shard_of"]

LABEL_PREFIX = "pl"
FAILURE_PREFIX = "failures"
RUN_FILE = "pl_run.json"  # what the run was started with (modeling_mlpl.resumable.bind_run)


def stable_hash(uid: str) -> int:
    """blake2b of the id as a 64-bit integer: the same in every process, run and Python version (the
    built-in `hash` of a str is salted per process)."""
    return int.from_bytes(hashlib.blake2b(uid.encode("utf-8"), digest_size=8).digest(), "big")


def shard_of(uid: str, world_size: int) -> int:
    """The process (0 .. world_size-1) that owns `uid` (a stable hash of the id)."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    return stable_hash(uid) % world_size
