"""A summary of what a loader skipped and why: bad input is counted and logged, never silent."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

# Examples kept per reason so a user can find the offending rows/files.
_MAX_EXAMPLES = 5


@dataclass
class LoadReport:
    """Counts of loaded rows and of skipped (or repaired) rows by reason, with a few examples.

    Reasons used by the loaders: missing_audio, empty_audio, corrupt_audio, empty_sentence,
    malformed_row, duplicate_id (a repeated table row), unsupported_format (folder: not audio
    libsndfile reads) (skipped); tab_in_sentence, quoted_sentence (repaired, kept).
    """

    source: str = ""
    loaded: int = 0
    skipped: Counter = field(default_factory=Counter)
    repaired: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, reason: str, example: str = "") -> None:
        self.skipped[reason] += 1
        self._example(reason, example)

    def repair(self, reason: str, example: str = "") -> None:
        self.repaired[reason] += 1
        self._example(reason, example)

    def _example(self, reason: str, example: str) -> None:
        bucket = self.examples.setdefault(reason, [])
        if example and len(bucket) < _MAX_EXAMPLES:
            bucket.append(example)

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    @property
    def found(self) -> int:
        """Rows (or files) the loader met: loaded + skipped."""
        return self.loaded + self.n_skipped

    def merge(self, other: "LoadReport") -> "LoadReport":
        self.loaded += other.loaded
        self.skipped.update(other.skipped)
        self.repaired.update(other.repaired)
        for reason, ex in other.examples.items():
            for e in ex:
                self._example(reason, e)
        return self

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "found": self.found,
            "loaded": self.loaded,
            "skipped": dict(self.skipped),
            "repaired": dict(self.repaired),
            "examples": self.examples,
        }

    def summary(self) -> str:
        text = f"{self.source}: found {self.found}, loaded {self.loaded} rows"
        if self.skipped:
            text += ", skipped " + ", ".join(f"{k}={v}" for k, v in sorted(self.skipped.items()))
        if self.repaired:
            text += ", repaired " + ", ".join(f"{k}={v}" for k, v in sorted(self.repaired.items()))
        return text

    def log(self) -> None:
        """Warn when anything was skipped (with examples), else info."""
        if self.skipped:
            logger.warning(self.summary())
            for reason in self.skipped:
                if self.examples.get(reason):
                    logger.warning("  %s e.g. %s", reason, "; ".join(self.examples[reason]))
        else:
            logger.info(self.summary())


@dataclass
class Accounting:
    """Where every input of a run went: ``found == done + failed + skipped + already_done + elsewhere +
    remaining``. `done`: handled by this run (labelled, decoded); `failed`: unreadable at decode time;
    `skipped`: rejected by the loader (see :class:`LoadReport`); `already_done`: by an earlier run
    (resume); `elsewhere`: other jobs' share (``--num_shards``); `remaining`: not reached (interrupted).
    """

    found: int
    done: int = 0
    failed: int = 0
    skipped: int = 0
    already_done: int = 0
    elsewhere: int = 0

    @property
    def remaining(self) -> int:
        return self.found - self.done - self.failed - self.skipped - self.already_done - self.elsewhere

    def to_dict(self, done_name: str = "done") -> dict[str, int]:
        return {"found": self.found, done_name: self.done, "failed": self.failed, "skipped": self.skipped,
                "already_done": self.already_done, "elsewhere": self.elsewhere,
                "remaining": self.remaining}  # fmt: skip

    def line(self, done_name: str = "done") -> str:
        """E.g. ``found 12 = labelled 7 + failed 1 + skipped 3 + already done 1``."""
        parts = [f"{done_name} {self.done}", f"failed {self.failed}", f"skipped {self.skipped}",
                 f"already done {self.already_done}"]  # fmt: skip
        if self.elsewhere:
            parts.append(f"other jobs' share {self.elsewhere}")
        if self.remaining:
            parts.append(f"not reached {self.remaining}")
        return f"found {self.found} = " + " + ".join(parts)
