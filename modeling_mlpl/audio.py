"""Audio decoding for every mlpl stage: soundfile to decode, soxr to resample, 16 kHz mono float32.

Why not `datasets.Audio(decode=True)`: datasets >= 4 decodes through torchcodec, whose wheels do not
load with the CPU torch build we use (see README, "Environment"). Datasets therefore keep
`Audio(decode=False)` (a path or bytes) and decoding happens here, in one place.

A file that cannot be decoded raises :class:`AudioDecodeError` (a ``ValueError``) naming the file, so
callers can skip and count it (:func:`try_load_audio`) instead of crashing a long job.
"""

from __future__ import annotations

import io
import logging
import os
from typing import Any, Mapping, Union

import numpy as np
import soundfile as sf
import soxr

from .configuration_mlpl import SAMPLING_RATE

logger = logging.getLogger(__name__)

AudioSource = Union[str, os.PathLike, bytes, bytearray, dict]


class AudioDecodeError(ValueError):
    """A corrupt, empty, truncated or unreadable audio file (the message names the file)."""


def _describe(source: AudioSource) -> str:
    if isinstance(source, dict):
        return str(source.get("path") or "<bytes>")
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes>"
    return os.fspath(source)


def _open_target(source: AudioSource) -> Any:
    """What soundfile can open: a path, or a file-like for bytes (also `datasets.Audio` dicts)."""
    if isinstance(source, dict):
        if source.get("bytes"):
            return io.BytesIO(source["bytes"])
        if source.get("path"):
            return os.fspath(source["path"])
        raise AudioDecodeError(f"audio entry has neither bytes nor path: {source!r}")
    if isinstance(source, (bytes, bytearray)):
        return io.BytesIO(bytes(source))
    return os.fspath(source)


def load_audio(
    path_or_bytes: AudioSource,
    sampling_rate: int = SAMPLING_RATE,
    offset_s: float = 0.0,
    duration_s: float | None = None,
) -> np.ndarray:
    """Decode audio to a mono float32 array in [-1, 1] at `sampling_rate`.

    Args:
        path_or_bytes: a file path, the file's bytes, or a `datasets.Audio(decode=False)` dict.
        sampling_rate: target rate; audio at another rate is resampled with soxr (HQ), so a
            22.05 kHz espeak file becomes 16 kHz with its duration unchanged.
        offset_s, duration_s: read only a window (seconds, at the file's own rate), e.g. 10 s
            windows of a 40 s VoxPopuli recording without decoding it all twice.

    Channels are averaged (mono). Raises :class:`AudioDecodeError` for missing, empty, corrupt or
    zero-length input.
    """
    name = _describe(path_or_bytes)
    target = _open_target(path_or_bytes)
    _check_file(target)
    try:
        with sf.SoundFile(target) as f:
            sr = f.samplerate
            start = int(round(offset_s * sr))
            frames = -1 if duration_s is None else int(round(duration_s * sr))
            if start > 0:
                if f.seekable():
                    f.seek(min(start, f.frames))
                else:  # pragma: no cover - all libsndfile formats we use are seekable
                    f.read(start)
            data = f.read(frames=frames, dtype="float32", always_2d=True)  # (T, C)
    except AudioDecodeError:
        raise
    except Exception as err:  # soundfile raises LibsndfileError/RuntimeError/TypeError variants
        raise AudioDecodeError(f"cannot decode audio {name}: {err}") from err
    if data.size == 0 and offset_s == 0.0:
        raise AudioDecodeError(f"audio has no samples: {name}")
    audio = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]  # (T,)
    if sr != sampling_rate and audio.size:
        audio = soxr.resample(audio, sr, sampling_rate, quality="HQ")
    audio = np.asarray(audio, dtype=np.float32)
    if not np.all(np.isfinite(audio)):
        raise AudioDecodeError(f"audio contains NaN/inf samples: {name}")
    return np.clip(audio, -1.0, 1.0)


def row_segment(row: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """Where a dataset row's audio lies in its file, as ``(offset_s, duration_s)`` for :func:`load_segment`.

    A row with an ``offset`` (pseudo-label rows, agreement-cut segments) is the segment
    [offset, offset + duration) of a longer recording; a row without one is its whole file,
    ``(None, None)``, so that its rounded ``duration`` column never cuts the audio short.
    """
    offset = row.get("offset")
    if offset is None:
        return None, None
    duration = row.get("duration")
    return float(offset), None if duration is None else float(duration)


def load_segment(
    path_or_bytes: AudioSource,
    offset_s: float | None = None,
    duration_s: float | None = None,
    sampling_rate: int = SAMPLING_RATE,
) -> np.ndarray:
    """The one reader of (offset, duration) segments of recordings (training, slimIPL, dev sets,
    pseudo-labelling): ``offset_s=None`` decodes the whole file; otherwise [offset, offset + duration),
    to the end of the file when `duration_s` is None. A segment past the end is empty (callers skip
    it); a bad file raises :class:`AudioDecodeError` as :func:`load_audio` does.
    """
    if offset_s is None:
        return load_audio(path_or_bytes, sampling_rate)
    duration = None if duration_s is None else float(duration_s)
    return load_audio(path_or_bytes, sampling_rate, offset_s=float(offset_s), duration_s=duration)


def _check_file(target: Any) -> None:
    """Missing and 0-byte files get their own message (libsndfile's is cryptic)."""
    if isinstance(target, str):
        if not os.path.exists(target):
            raise AudioDecodeError(f"audio file not found: {target}")
        if os.path.getsize(target) == 0:
            raise AudioDecodeError(f"audio file is empty (0 bytes): {target}")


def try_load_audio(path_or_bytes: AudioSource, **kwargs: Any) -> np.ndarray | None:
    """:func:`load_audio`, but a bad file gives ``None`` and a warning (callers count the skips)."""
    try:
        return load_audio(path_or_bytes, **kwargs)
    except AudioDecodeError as err:
        logger.warning("skipping audio: %s", err)
        return None


def audio_duration(path_or_bytes: AudioSource) -> float:
    """Duration in seconds from the file header (no full decode). Raises :class:`AudioDecodeError`."""
    name = _describe(path_or_bytes)
    target = _open_target(path_or_bytes)
    _check_file(target)
    try:
        info = sf.info(target)
    except Exception as err:
        raise AudioDecodeError(f"cannot read audio header of {name}: {err}") from err
    if info.frames <= 0 or info.samplerate <= 0:
        raise AudioDecodeError(f"audio has no samples: {name}")
    return info.frames / info.samplerate


def write_audio(
    path: str | os.PathLike, audio: np.ndarray, sampling_rate: int = SAMPLING_RATE, compression_level: float | None = None
) -> None:
    """Write mono float audio; the container follows the extension (.mp3, .ogg = Vorbis, .flac, .wav).

    `compression_level` (0-1, lossy formats) trades size/quality for encoding speed.

    Written to a temporary name and renamed, so a killed job never leaves a truncated file that
    looks finished.
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    fmt = {".mp3": ("MP3", None), ".ogg": ("OGG", "VORBIS"), ".flac": ("FLAC", None), ".wav": ("WAV", None)}
    if ext not in fmt:
        raise ValueError(f"unsupported audio extension {ext!r} for {path} (use .mp3 .ogg .flac .wav)")
    file_format, subtype = fmt[ext]
    tmp = f"{path}.tmp{os.getpid()}"
    extra = {"compression_level": compression_level} if compression_level is not None and ext in (".mp3", ".ogg") else {}
    sf.write(tmp, np.asarray(audio, dtype=np.float32), sampling_rate, format=file_format, subtype=subtype, **extra)
    os.replace(tmp, path)
