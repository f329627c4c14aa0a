"""`save_to_disk` folders (pseudo-label sets, or any dataset with audio and text) as mlpl datasets.

The folder holds a `Dataset` or a `DatasetDict` (then one split is picked). Audio decoding is
always switched off (``Audio(decode=False)``): :func:`modeling_mlpl.audio.load_audio` decodes, not
`datasets`' torchcodec. A spec (``disk:PATH[:SPLIT][@LANG]``) is parsed and opened by
:func:`modeling_mlpl.data.open_dataset`, the one way in (:func:`open_saved`, then :func:`complete_schema`
for the loaders' schema); this module does not know the spec syntax.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from datasets import Audio, Dataset, DatasetDict, load_from_disk

from ..audio import AudioDecodeError, audio_duration
from .ids import check_unique_ids

logger = logging.getLogger(__name__)

TEXT_COLUMNS = ("text", "sentence", "transcription")


def undecoded_audio(ds: Any, what: str) -> Any:
    """`ds` with its ``audio`` column read as path/bytes (decoding is ours); a dataset without one is refused.

    A streamed dataset whose features are unknown passes as it is (its rows are checked when read)."""
    features = getattr(ds, "features", None) or {}
    if features and "audio" not in features:
        raise ValueError(f"{what} has no 'audio' column (columns: {list(features)})")
    if isinstance(features.get("audio"), Audio) and features["audio"].decode:
        ds = ds.cast_column("audio", Audio(decode=False))
    return ds


def open_saved(path: str, split: str) -> Dataset:
    """The dataset saved at `path` (its `split` when it is a DatasetDict), audio not decoded."""
    ds = load_from_disk(path)
    if isinstance(ds, DatasetDict):
        if split not in ds:
            raise ValueError(f"{path} has splits {sorted(ds)}, not {split!r} (use PATH:SPLIT)")
        ds = ds[split]
    return undecoded_audio(ds, f"dataset {path}")


def complete_schema(ds: Dataset, path: str, language: str | None) -> Dataset:
    """`ds` in the loaders' schema: the transcript column (``sentence``/``transcription``) renamed ``text``,
    a missing ``language`` from ``@LANG``, a missing ``id`` numbered, a missing ``duration`` read from the
    audio headers. Repeated ids raise :class:`modeling_mlpl.data.DuplicateIdError` (ids key labels and resumes)."""
    text_col = next((c for c in TEXT_COLUMNS if c in ds.column_names), None)
    if text_col is None:
        raise ValueError(f"dataset {path} has no transcript column (one of {TEXT_COLUMNS}); columns: {ds.column_names}")
    if text_col != "text":
        ds = ds.rename_column(text_col, "text")
    if "language" not in ds.column_names:
        if language is None:
            raise ValueError(f"dataset {path} has no 'language' column: give its language as {path}@LANG")
        ds = ds.add_column("language", [language] * len(ds))
    elif language is not None:
        raise ValueError(f"dataset {path} has a 'language' column; drop the @{language} suffix")
    if "id" not in ds.column_names:
        ds = ds.add_column("id", [f"{os.path.basename(path.rstrip('/'))}/{i}" for i in range(len(ds))])
    check_unique_ids(ds, f"dataset {path}")  # before any header is read: a collision is an input error
    if "duration" not in ds.column_names:
        ds = ds.add_column("duration", [_duration_or_nan(a) for a in ds["audio"]])
    return ds


def _duration_or_nan(audio: Any) -> float:
    try:
        return audio_duration(audio)
    except AudioDecodeError as err:
        logger.warning("unreadable audio (will be dropped): %s", err)
        return float("nan")


__all__ = ["TEXT_COLUMNS", "complete_schema", "open_saved", "undecoded_audio"]
