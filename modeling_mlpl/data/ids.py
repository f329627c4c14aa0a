"""Unique ids: every row's ``id`` keys its pseudo-label, its prediction and every resume, so two
recordings with one id would silently lose one of them. Loaders build ids that are unique by
construction (:func:`disambiguate`); scripts check what they are given (:func:`check_unique_ids`).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

__all__ = ["DuplicateIdError", "check_unique_ids", "disambiguate", "duplicate_ids"]

_EXAMPLES = 3


class DuplicateIdError(ValueError):
    """Two or more rows share an id (the message lists a few, with their counts)."""


def duplicate_ids(ids: Sequence[str]) -> dict[str, int]:
    """id -> count for every id that occurs more than once (in first-seen order)."""
    return {uid: n for uid, n in Counter(ids).items() if n > 1}


def _describe(duplicates: dict[str, int]) -> str:
    shown = ", ".join(f"{uid!r} (x{n})" for uid, n in list(duplicates.items())[:_EXAMPLES])
    more = f" and {len(duplicates) - _EXAMPLES} more" if len(duplicates) > _EXAMPLES else ""
    return f"{len(duplicates)} duplicate id(s): {shown}{more}"


def check_unique_ids(ds: Any, what: str) -> None:
    """Raise :class:`DuplicateIdError` (one line) if the ``id`` column of `ds` repeats an id.

    `ds` is a `datasets.Dataset` (or anything with ``ds["id"]``) or a list of ids. A streaming
    `IterableDataset` cannot be checked without reading it: it passes here, and the labeler refuses
    a repeated id when it meets one. `what` names the input in the message (e.g. ``--data disk:x``).
    """
    if hasattr(ds, "column_names"):
        if ds.column_names is None or "id" not in ds.column_names or not hasattr(ds, "__len__"):
            return
        ids = ds["id"]
    else:
        ids = list(ds)
    duplicates = duplicate_ids(ids)
    if duplicates:
        raise DuplicateIdError(f"{what}: {_describe(duplicates)}; every row needs its own id "
                               "(ids key labels, predictions and resumes)")  # fmt: skip


def disambiguate(candidates: Sequence[Sequence[str]], what: str = "input") -> list[str]:
    """One unique id per item from its candidate ids, natural first, most specific last.

    Every item starts with its first candidate; all items that share an id move on to their next
    candidate, until no id is shared. So an id only grows where it has to (``x`` stays ``x``
    unless two files are called ``x``; then both become e.g. ``x.flac`` and ``x.mp3``), and the
    result depends only on the candidates, not on their order. Items that run out of candidates
    while still colliding raise :class:`DuplicateIdError` before any work is done.
    """
    level = [0] * len(candidates)
    while True:
        ids = [c[lv] for c, lv in zip(candidates, level)]
        duplicates = duplicate_ids(ids)
        if not duplicates:
            return ids
        advanced = False
        for i, uid in enumerate(ids):
            if uid in duplicates and level[i] + 1 < len(candidates[i]):
                level[i] += 1
                advanced = True
        if not advanced:
            raise DuplicateIdError(f"{what}: {_describe(duplicates)} that no naming rule tells apart")


class StreamingIds:
    """Ids for rows met one at a time (a table read in one pass, no look-ahead).

    :meth:`assign` takes the row's candidate ids (natural first) and what the row points at (its
    audio file): the first row gets the natural id; a later row for *another* recording with the
    same natural id gets its next candidate; a row for the *same* recording again gets ``None``
    (a repeated table row: the caller counts it as ``duplicate_id``, no recording is lost).
    """

    def __init__(self, what: str):
        self.what = what
        self._owner: dict[str, str] = {}

    def assign(self, candidates: Sequence[str], source: str) -> str | None:
        for uid in candidates:
            owner = self._owner.get(uid)
            if owner is None:
                self._owner[uid] = source
                return uid
            if owner == source:
                return None
        raise DuplicateIdError(f"{self.what}: {source} and {self._owner[candidates[-1]]} both get id "
                               f"{candidates[-1]!r}")  # fmt: skip
