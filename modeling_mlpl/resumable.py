"""One resumable run: append-only rows, the accounting of every input, and the record of its inputs.

A long job (pseudo-labeling thousands of hours, decoding a test set) must survive a kill and resume
without losing or repeating an input. Three pieces make that true, and every job uses these, not its own:

**Rows** (:class:`ShardWriter`, :func:`read_shard`, :func:`repair_shard`). A *shard* is one writer's
append-only JSONL file, one row per input, keyed by ``id``: a PL process's ``pl-rank00000.jsonl``,
an evaluation's ``predictions.jsonl``. The writer writes a batch in one call, then flushes and fsyncs,
so a kill loses at most the batch in flight and leaves at most one last line without its newline.
Readers ignore that torn line, and the owner truncates it before appending again, so its id is
simply redone: a resumed run skips the ids already written and ends with every id exactly once.
Several processes write one file each (:func:`shard_path`: ``PREFIX-rankNNNNN.jsonl``); their
closing counts go through :func:`write_rank_stats` / :func:`read_rank_stats`.

**Accounting** (:class:`Accounting`). Nothing is dropped silently: ``found == done + failed +
skipped + already_done + elsewhere + remaining``, kept by the job as it goes (one process's own
counts) and summed over processes by :meth:`Accounting.over_processes`.

**Run binding** (:func:`bind_run`, :func:`check_run`, :func:`write_run`). Appending to an output
made from other inputs would mix two runs and report them as one. So the first run writes a small JSON
file next to its output and a later run into the same place must match it, or is refused with a
one-line :class:`RunMismatch` naming the first difference and the flag that starts afresh.
Model identity is its resolved path plus a content hash of its weights file (:func:`model_identity`):
blake2b over the whole ``model.safetensors``, read once per run and process (0.4 s for 200 MB measured
here, so ~8 s for the 4 GB M-CTC-T large; the demo models are 5 MB). Size + mtime would be cheaper, but
a re-copied model with the same bytes would then look new and a resume be refused for nothing. So a
retrained model in the same folder is a different model, and a copied folder with the same weights is
a different path: both are refused rather than guessed at.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

logger = logging.getLogger(__name__)

__all__ = [
    # rows
    "ShardWriter",
    "repair_shard",
    "truncate_shard",
    "read_shard",
    "shard_path",
    "read_shards",
    "completed_ids",
    "write_rank_stats",
    "read_rank_stats",
    # accounting
    "Accounting",
    # run binding
    "RunMismatch",
    "bind_run",
    "check_run",
    "write_run",
    "read_run",
    "file_hash",
    "same_path",
    "model_identity",
    "lm_identity",
]

STATS_PREFIX = "stats"  # stats-rankNNNNN.json: what each process of the last run did (for the closing totals)


# --------------------------------------------------------------------------------------------- rows


def repair_shard(path: str | os.PathLike) -> int:
    """Truncate a trailing partial line (a write cut by a kill). Returns the bytes removed.

    Only the shard's owner calls this (through :class:`ShardWriter`), before it appends: others just
    skip the partial line. A complete last line that is not valid JSON cannot come from our writer
    (lines are written whole and end with a newline) and is left for :func:`read_shard` to report.
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
    """Rows of one shard, skipping a trailing partial line (and, with a warning, corrupt lines)."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.endswith(b"\n"):
                logger.info("%s: ignoring the partial last line %d", path, lineno)
                break
            try:
                yield json.loads(raw)
            except json.JSONDecodeError:
                logger.warning("%s:%d: not valid JSON, skipped", path, lineno)


def truncate_shard(path: str | os.PathLike, keep: Callable[[dict], bool]) -> tuple[int, dict | None]:
    """Cut a shard before its first row that `keep` rejects (a torn last line goes too). Returns the
    rows removed and the last row kept (None: nothing kept).

    For a log written in order and resumed from an earlier point than its end: training's batch-id log
    resumes at a checkpoint, and the rows written after it are written again by the resumed run, so
    they are removed rather than listed twice. A complete line that is not JSON is kept (as
    :func:`read_shard` skips it); every row after the cut is removed, whatever `keep` says of it.
    """
    path = Path(path)
    if not path.exists():
        return 0, None
    repair_shard(path)
    cut, removed, last = None, 0, None
    with open(path, "rb+") as f:
        offset = 0
        for lineno, raw in enumerate(f, 1):
            if cut is None:
                try:
                    row = json.loads(raw)
                except json.JSONDecodeError:
                    logger.warning("%s:%d: not valid JSON, kept", path, lineno)
                    row = None
                if row is not None and not keep(row):
                    cut = offset
                elif row is not None:
                    last = row
            removed += cut is not None
            offset += len(raw)
        if cut is not None:
            f.truncate(cut)
            f.flush()
            os.fsync(f.fileno())
    return removed, last


class ShardWriter:
    """Appends rows to one shard (repaired first); each :meth:`write` is one batch, flushed, and fsync'd
    unless `fsync=False` (then the owner calls :meth:`sync` at its own durable points, e.g. a checkpoint:
    a flushed row survives a killed process, only a machine crash can lose it)."""

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

    def sync(self) -> None:
        """fsync what was written so far (for a writer made with `fsync=False`)."""
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def shard_path(directory: str | os.PathLike, rank: int, prefix: str) -> Path:
    """Process `rank`'s shard of kind `prefix`: ``DIRECTORY/PREFIX-rankNNNNN.jsonl``."""
    return Path(directory) / f"{prefix}-rank{rank:05d}.jsonl"


def read_shards(directory: str | os.PathLike, prefix: str) -> Iterator[dict]:
    """Rows of every process's `prefix` shard in `directory` (any world size), rank by rank."""
    for path in sorted(glob.glob(os.path.join(glob.escape(os.fspath(directory)), f"{prefix}-rank*.jsonl"))):
        yield from read_shard(path)


def completed_ids(directory: str | os.PathLike, prefixes: Iterable[str]) -> set[str]:
    """Ids in any process's shard of these kinds, from any earlier run (also with another world size):
    the ids a resumed run skips. A torn last line is not done."""
    return {row["id"] for prefix in prefixes for row in read_shards(directory, prefix)}


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


# ---------------------------------------------------------------------------------------- accounting


@dataclass
class Accounting:
    """Where every input of a run went: ``found == done + failed + skipped + already_done + elsewhere +
    remaining``. `done`: handled by this run (labelled, decoded); `failed`: unreadable at decode time;
    `skipped`: rejected before the job saw it (the loader, see ``data.load_report.LoadReport``);
    `already_done`: by an earlier run (resume); `elsewhere`: other processes' or jobs' share;
    `remaining`: not reached (interrupted).

    A job keeps one of these as it goes, for its own process (``found``: the inputs it met);
    :meth:`over_processes` makes the run's from its processes'.
    """

    found: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0
    already_done: int = 0
    elsewhere: int = 0

    @property
    def remaining(self) -> int:
        return self.found - self.done - self.failed - self.skipped - self.already_done - self.elsewhere

    @classmethod
    def over_processes(cls, processes: Sequence["Accounting"]) -> "Accounting":
        """The run's accounting from its processes' own, when each met every input and took its share
        (PL processes over one dataset; the first one's `found` is the run's). Inputs none of them
        owns stay `elsewhere`: none when these are all the processes, the other jobs' share when they
        are some of independent jobs (``--num_shards``)."""
        if not processes:
            raise ValueError("over_processes needs at least one process's accounting")
        found = processes[0].found
        theirs = sum(p.found - p.elsewhere for p in processes)  # each input is one process's own
        return cls(found=found, done=sum(p.done for p in processes), failed=sum(p.failed for p in processes),
                   skipped=sum(p.skipped for p in processes),
                   already_done=sum(p.already_done for p in processes), elsewhere=found - theirs)  # fmt: skip

    def to_dict(self, done_name: str = "done") -> dict[str, int]:
        return {"found": self.found, done_name: self.done, "failed": self.failed, "skipped": self.skipped,
                "already_done": self.already_done, "elsewhere": self.elsewhere,
                "remaining": self.remaining}  # fmt: skip

    @classmethod
    def from_dict(cls, counts: Mapping[str, int], done_name: str = "done") -> "Accounting":
        """The inverse of :meth:`to_dict` (`remaining` is derived, so it is not read)."""
        return cls(found=counts["found"], done=counts[done_name], failed=counts["failed"],
                   skipped=counts["skipped"], already_done=counts["already_done"],
                   elsewhere=counts["elsewhere"])  # fmt: skip

    def line(self, done_name: str = "done") -> str:
        """E.g. ``found 12 = labelled 7 + failed 1 + skipped 3 + already done 1``."""
        parts = [f"{done_name} {self.done}", f"failed {self.failed}", f"skipped {self.skipped}",
                 f"already done {self.already_done}"]  # fmt: skip
        if self.elsewhere:
            parts.append(f"other jobs' share {self.elsewhere}")
        if self.remaining:
            parts.append(f"not reached {self.remaining}")
        return f"found {self.found} = " + " + ".join(parts)


# --------------------------------------------------------------------------------------- run binding

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_CHUNK = 1 << 20


class RunMismatch(ValueError):
    """A resume or re-run whose inputs differ from those the output was started with."""


def file_hash(path: str | os.PathLike, digest_size: int = 8) -> str:
    """blake2b hex digest of a file's bytes."""
    h = hashlib.blake2b(digest_size=digest_size)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def same_path(path: str | os.PathLike) -> str:
    """The resolved path (so ``exp/m`` and ``./exp/../exp/m`` are one input)."""
    return os.path.realpath(os.fspath(path))


def model_identity(model: str | os.PathLike) -> str:
    """``PATH (weights HASH)`` for a local model folder, the id itself for a Hub model."""
    if not os.path.isdir(model):
        return str(model)
    for name in WEIGHT_FILES:
        weights = Path(model, name)
        if weights.is_file():
            return f"{same_path(model)} (weights {file_hash(weights)})"
    config = Path(model, "config.json")
    return f"{same_path(model)} (config {file_hash(config)})" if config.is_file() else same_path(model)


def lm_identity(lm_dir: str | os.PathLike | None) -> str | None:
    """``PATH (LMs lang:bytes, ...)``: which n-gram files decode; None without an LM. The fusion
    weights are left out on purpose: re-tuning alpha/beta rewrites the decoder config, and callers
    that pass weights (evaluate.py --lm-params) record those themselves."""
    if lm_dir is None:
        return None
    from .decoding.lm_decoder import CONFIG_NAME, LM_SUBFOLDER

    for root in (Path(lm_dir, LM_SUBFOLDER), Path(lm_dir)):
        if (root / CONFIG_NAME).is_file():
            languages = json.loads((root / CONFIG_NAME).read_text(encoding="utf-8")).get("languages", {})
            sizes = []
            for lang, cfg in sorted(languages.items()):
                lm_file = root / str(cfg.get("lm_file", ""))
                sizes.append(f"{lang}:{lm_file.stat().st_size if lm_file.is_file() else 'missing'}")
            return f"{same_path(lm_dir)} (LMs {', '.join(sizes)})"
    return same_path(lm_dir)


def read_run(path: str | os.PathLike) -> dict[str, Any] | None:
    path = Path(path)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _show(value: Any) -> str:
    return "(unset)" if value is None or value == [] else str(value)


def check_run(path: str | os.PathLike, inputs: Mapping[str, Any], start_afresh: str) -> None:
    """Raise :class:`RunMismatch` if `path` records other `inputs` (keys are the flags' names).

    `start_afresh` says how to start over, e.g. ``"choose a new --output_dir"``. No record (a new
    output, or one from before run files existed) passes.
    """
    recorded = read_run(path)
    if recorded is None:
        return
    for key, value in inputs.items():
        if key in recorded and recorded[key] != _jsonable(value):
            raise RunMismatch(f"{Path(path).parent} was started with {key} {_show(recorded[key])}, not "
                              f"{_show(_jsonable(value))}: resume with the same inputs, or {start_afresh}")  # fmt: skip


def write_run(path: str | os.PathLike, inputs: Mapping[str, Any]) -> None:
    """Record `inputs` (written whole: tmp + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps({k: _jsonable(v) for k, v in inputs.items()}, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def bind_run(path: str | os.PathLike, inputs: Mapping[str, Any], start_afresh: str) -> None:
    """:func:`check_run`, then record `inputs` (one process; see the PL command for several)."""
    check_run(path, inputs, start_afresh)
    write_run(path, inputs)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))
