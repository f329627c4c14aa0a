"""An on-disk cache of log-mel frames, shared by every training run of a corpus and all their processes.

Why: on a CPU, the log-mel features of an utterance cost more than a small model's update on it, and every
run of the recipe (theta, each theta', each stage-4 run and fine-tune) reads the same labelled utterances
again. Each whole segment's frames are computed once, by whichever run meets it first, and read back by
every later one (the in-memory caches of :class:`modeling_mlpl.training.train_data.TrainingSet` then keep
them for the epochs of one run).

What is stored: the *un-normalised* frames (T, 80) of :func:`log_mel_spectrogram` of the segment, as
float32, and its sample count: per-utterance normalisation and random crops are cut from them in the
training set, as from its in-memory frames (``docs/feature_cache.md`` gives the measured effect of float32).

Keys: (the audio: path + file size + modification time, or the SHA-1 of embedded bytes; the segment's
offset/duration; :func:`feature_config_hash`). A rewritten audio file or a change to the feature settings
therefore misses (its old entries are simply never read again). An entry that cannot be read or fails its
checks is recomputed and rewritten, and counted. Entries are written to a temporary file and renamed into
place (``os.replace``): two processes writing the same entry both succeed and leave one whole entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import zipfile
from collections import Counter
from typing import Any, Callable

import numpy as np
import torch

from . import feature_extraction_mlpl as fe

logger = logging.getLogger(__name__)

FEATURE_CACHE_ENV = "MLPL_FEATURE_CACHE"  # default folder when --feature_cache_dir is not given
FORMAT_VERSION = 1  # bump when what an entry holds changes


def feature_config_hash() -> str:
    """SHA-1 (16 hex digits) of every setting that changes the frames: a new setting, a new key."""
    settings = {"format": FORMAT_VERSION, "sampling_rate": fe.SAMPLING_RATE, "frame_length": fe.FRAME_LENGTH,
                "hop_length": fe.HOP_LENGTH, "n_fft": fe.N_FFT, "n_mels": fe.N_MELS, "signal_scale": fe.SIGNAL_SCALE,
                "preemphasis": fe.PREEMPHASIS, "mel_floor": fe.MEL_FLOOR, "dtype": "float32"}  # fmt: skip
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _audio_identity(audio: Any) -> list | None:
    """What identifies the audio's content: a file by path, size and mtime; embedded bytes by their hash.
    None when there is nothing to identify (a missing file: the reader reports it)."""
    if isinstance(audio, dict):
        audio = audio.get("bytes") or audio.get("path")
    if isinstance(audio, (bytes, bytearray)):
        return ["sha1", hashlib.sha1(audio).hexdigest()]
    if audio is None:
        return None
    path = os.path.abspath(os.fspath(audio))
    try:
        st = os.stat(path)
    except OSError:
        return None
    return ["file", path, st.st_size, st.st_mtime_ns]


class FeatureCache:
    """Log-mel frames of whole segments under `root` (see the module docstring). `stats` counts hits,
    misses, corrupt (recomputed) entries and writes of this process."""

    def __init__(self, root: str):
        self.root = root
        self.config_hash = feature_config_hash()
        self.stats: Counter = Counter()

    @classmethod
    def from_setting(cls, directory: str | None) -> "FeatureCache | None":
        """The cache in `directory`, else in $MLPL_FEATURE_CACHE, else None (no disk cache)."""
        directory = directory or os.environ.get(FEATURE_CACHE_ENV) or None
        return cls(directory) if directory else None

    def key(self, audio: Any, offset_s: float | None, duration_s: float | None) -> str | None:
        identity = _audio_identity(audio)
        if identity is None:
            return None
        return hashlib.sha1(json.dumps([identity, offset_s, duration_s, self.config_hash]).encode()).hexdigest()

    def path(self, key: str) -> str:
        return os.path.join(self.root, key[:2], f"{key}.npz")

    def get(self, key: str) -> tuple[torch.Tensor, int] | None:
        """(frames (T, 80) float32, samples) of a valid entry; None on a miss or a corrupt entry."""
        path = self.path(key)
        try:
            with np.load(path) as data:
                frames, samples = data["frames"], int(data["samples"])
        except FileNotFoundError:
            self.stats["misses"] += 1
            return None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            return self._corrupt(path, f"{type(err).__name__}: {err}")
        if not (frames.dtype == np.float32 and frames.ndim == 2 and frames.shape[1] == fe.N_MELS
                and frames.shape[0] == fe.num_feature_frames(samples) and np.isfinite(frames).all()):  # fmt: skip
            return self._corrupt(path, f"frames {frames.dtype} {frames.shape} for {samples} samples")
        self.stats["hits"] += 1
        return torch.from_numpy(frames), samples

    def _corrupt(self, path: str, reason: str) -> None:
        self.stats["corrupt"] += 1
        logger.warning("feature cache entry %s is unreadable (%s): recomputing it", path, reason)
        return None

    def put(self, key: str, frames: torch.Tensor, samples: int) -> None:
        """Write an entry atomically (temporary file in the same folder, then os.replace)."""
        path = self.path(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=f".{key}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, frames=frames.detach().to(torch.float32).numpy(), samples=np.int64(samples))
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        self.stats["writes"] += 1

    def frames(self, audio: Any, offset_s: float | None, duration_s: float | None,
               compute: Callable[[], tuple[torch.Tensor, int] | None]) -> tuple[torch.Tensor, int] | None:  # fmt: skip
        """The segment's (frames, samples): from the cache, else `compute()` (None: unreadable, not stored)
        written to the cache."""
        key = self.key(audio, offset_s, duration_s)
        hit = self.get(key) if key is not None else None
        if hit is not None:
            return hit
        result = compute()
        if result is not None and key is not None:
            self.put(key, *result)
        return result


__all__ = ["FeatureCache", "FEATURE_CACHE_ENV", "feature_config_hash"]
