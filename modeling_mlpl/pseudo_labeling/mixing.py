"""PL sets of controlled quality: the teacher's PLs with a fixed share of recordings' true transcripts.

An analysis tool for synthetic corpora (their unlabeled audio ships its truth), not a method: it answers
"how much does stage 4 gain as the PLs get cleaner, audio and schedule held fixed?" — the curve between
the teacher's PLs (share 0) and the oracle (share 1) that says how good a teacher the targets need.

Which recordings take their truth is decided by a hash of the id alone (blake2b, as shards are assigned),
never by the PL's quality, so the mix is an unbiased subset and the same for every seed and share: the
recordings of share 0.25 are among those of share 0.5. Rows are written as one label shard plus the
teacher's failure shards and load report, so the ordinary merge (`pseudo_label.py --merge_only`) turns
the directory into a PL dataset with its stats, exactly as it does for a labelling run.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..resumable import ShardWriter, read_shards, shard_path
from .merge import LOAD_REPORT
from .shards import FAILURE_PREFIX, LABEL_PREFIX, stable_hash

__all__ = ["truth_ids", "mix_with_truth"]


def truth_ids(ids: list[str], share: float) -> set[str]:
    """The round(share * len(ids)) ids that take their true transcript: the lowest hashes."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share of true transcripts must be in [0, 1], got {share}")
    ordered = sorted(set(ids), key=stable_hash)
    return set(ordered[: round(share * len(ordered))])


def _rows_by_id(directory: str | os.PathLike) -> dict[str, dict]:
    rows: dict[str, dict] = {}
    for row in read_shards(directory, LABEL_PREFIX):
        rows.setdefault(row["id"], row)  # first wins, as in the merge
    return rows


def mix_with_truth(pl_dir: str | os.PathLike, truth_dir: str | os.PathLike, out_dir: str | os.PathLike,
                   share: float) -> dict:  # fmt: skip
    """Write `out_dir`'s shards: every recording of `pl_dir` (the teacher's PL shards), with its row from
    `truth_dir` (the oracle's force-aligned true transcripts of the same audio) for a `share` of them.

    A recording the truth set lacks keeps its PL (counted in `truth_missing`), so no row is dropped or
    added. Returns the counts, also written to `out_dir/mix.json`.
    """
    pl_rows, truth_rows = _rows_by_id(pl_dir), _rows_by_id(truth_dir)
    if not pl_rows:
        raise FileNotFoundError(f"no pseudo-label shards ({LABEL_PREFIX}-rank*.jsonl) in {pl_dir}")
    chosen = truth_ids(list(pl_rows), share)
    out = Path(out_dir)
    if out.exists():  # a re-run rebuilds the mix from its inputs, never appends to an old one
        shutil.rmtree(out)
    out.mkdir(parents=True)
    use_truth = chosen & truth_rows.keys()
    with ShardWriter(shard_path(out, 0, LABEL_PREFIX)) as writer:
        writer.write(truth_rows[uid] if uid in use_truth else row for uid, row in sorted(pl_rows.items()))
    for failures in Path(pl_dir).glob(f"{FAILURE_PREFIX}-rank*.jsonl"):
        shutil.copy(failures, out / failures.name)
    if (Path(pl_dir) / LOAD_REPORT).exists():
        shutil.copy(Path(pl_dir) / LOAD_REPORT, out / LOAD_REPORT)
    counts = {"share": share, "recordings": len(pl_rows), "truth": len(use_truth),
              "truth_missing": len(chosen) - len(use_truth), "pl_dir": os.fspath(pl_dir), "truth_dir": os.fspath(truth_dir)}  # fmt: skip
    (out / "mix.json").write_text(json.dumps(counts, indent=2))
    return counts
