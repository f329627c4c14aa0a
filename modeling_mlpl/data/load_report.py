"""A summary of what a loader skipped and why: bad input is counted and logged, never silent.

A run's accounting of every input (:class:`modeling_mlpl.resumable.Accounting`) counts these skips as `skipped`.
"""

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
