"""Data layer: corpus loaders with one schema, length-bucketed batching, and the synthetic corpus.

Every loader returns a `datasets.Dataset` (or `IterableDataset` with ``streaming=True``) with the
columns of :data:`FEATURES`: ``id``, ``audio`` (Audio(decode=False)), ``text``, ``language``,
``duration``. Decode audio with :func:`modeling_mlpl.audio.load_audio`. The synthetic corpus
generator lives in :mod:`modeling_mlpl.data.synthetic` (imported on demand).
"""

from .common import FEATURES, get_load_report, make_row, rows_to_dataset
from .common_voice import load_common_voice, read_clip_durations
from .filters import filter_dataset
from .folder import load_audio_folder
from .ids import DuplicateIdError, check_unique_ids
from .languages import CV_LANGUAGES, VP_LANGUAGES, VP_TO_CV, validate_languages
from .librispeech import load_librispeech
from .report import Accounting, LoadReport
from .sampler import LengthBucketBatchSampler, pack_batches, padding_fraction, random_batches
from .voxpopuli import load_unlabelled_truth, load_voxpopuli_transcribed, load_voxpopuli_unlabelled

__all__ = [
    "Accounting",
    "CV_LANGUAGES",
    "DuplicateIdError",
    "FEATURES",
    "LengthBucketBatchSampler",
    "LoadReport",
    "VP_LANGUAGES",
    "VP_TO_CV",
    "check_unique_ids",
    "filter_dataset",
    "get_load_report",
    "load_audio_folder",
    "load_common_voice",
    "load_librispeech",
    "load_unlabelled_truth",
    "load_voxpopuli_transcribed",
    "load_voxpopuli_unlabelled",
    "make_row",
    "pack_batches",
    "padding_fraction",
    "random_batches",
    "read_clip_durations",
    "rows_to_dataset",
    "validate_languages",
]
