"""Data layer: corpus loaders with one schema and length-bucketed batching.

Every loader returns a `datasets.Dataset` (or `IterableDataset` with ``streaming=True``) with the
columns of :data:`FEATURES`: ``id``, ``audio`` (Audio(decode=False)), ``text``, ``language``,
``duration``. Data specs (``cv:DIR@dev``, ``disk:PATH[:SPLIT][@LANG]``, ...) are parsed and
opened by :func:`open_dataset` (:mod:`modeling_mlpl.data.specs`). Decode audio with
:func:`modeling_mlpl.audio.load_audio`. The synthetic corpus generator lives in
:mod:`modeling_mlpl.synthetic.corpus` (imported on demand).
"""

from .common import FEATURES, get_load_report, make_row, rows_to_dataset
from .common_voice import load_common_voice, read_clip_durations
from .filters import filter_dataset
from .folder import load_audio_folder
from .ids import DuplicateIdError, check_unique_ids
from .languages import CV_LANGUAGES, VP_LANGUAGES, VP_TO_CV, validate_languages
from .librispeech import load_librispeech
from .load_report import LoadReport
from .specs import DataSpec, DataSpecError, open_dataset, parse_data_spec
from .sampler import LengthBucketBatchSampler, pack_batches, padding_fraction, random_batches
from .voxpopuli import load_unlabelled_truth, load_voxpopuli_transcribed, load_voxpopuli_unlabelled

__all__ = [
    "CV_LANGUAGES",
    "DataSpec",
    "DataSpecError",
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
    "open_dataset",
    "pack_batches",
    "padding_fraction",
    "parse_data_spec",
    "random_batches",
    "read_clip_durations",
    "rows_to_dataset",
    "validate_languages",
]
