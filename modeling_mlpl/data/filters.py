"""Apply the transcript filters of :mod:`modeling_mlpl.text` to a loaded dataset."""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable

from datasets import Dataset

from ..text import FilterResult, filter_transcripts

logger = logging.getLogger(__name__)


def filter_dataset(
    ds: Dataset,
    vocabulary: Iterable[str] | None = None,
    frames_for_duration: Callable[[float], int] | None = None,
    **kwargs: Any,
) -> tuple[Dataset, FilterResult]:
    """Drop rows with out-of-vocabulary characters, empty text or labels too long for CTC.

    Returns the filtered dataset and the :class:`~modeling_mlpl.text.FilterResult` (its ``kept``
    holds the kept rows' ``text``/``duration``/``index``); the counts are logged.
    """
    rows = ({"text": t, "duration": d, "index": i} for i, (t, d) in enumerate(zip(ds["text"], ds["duration"])))
    result = filter_transcripts(rows, vocabulary=vocabulary, frames_for_duration=frames_for_duration, **kwargs)
    (logger.warning if result.n_dropped else logger.info)("transcript filter: %s", result.summary())
    return ds.select([r["index"] for r in result.kept]), result
