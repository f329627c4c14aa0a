"""A plain folder of audio files (e.g. a user's own recordings to transcribe or pseudo-label).

Every file below the folder is accounted for: it is loaded, or counted in ``load_report`` with the
reason it was not (``unsupported_format``: not a format libsndfile reads, e.g. .m4a/.webm, or not
audio at all; ``empty_audio``/``corrupt_audio``: a header that does not read). ``<name>.txt`` next
to an audio file is its transcript, not a skipped file. So ``loaded + skipped == files found``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import soundfile as sf
from datasets import Dataset, IterableDataset

from ..audio import AudioDecodeError, audio_duration
from ..text import normalize_transcript
from .common import finish, make_row
from .ids import disambiguate
from .load_report import LoadReport
from .tables import decode_utf8

# libsndfile major format -> the file extensions it is known by. Left out on purpose: RAW (no header:
# rate and encoding cannot be known), MAT4/MAT5 (.mat is usually data, not audio), MPC2K (.mpc is
# usually Musepack, which libsndfile does not read).
_FORMAT_EXTENSIONS = {
    "WAV": (".wav", ".wave"), "WAVEX": (".wav",), "RF64": (".rf64",), "W64": (".w64",), "NIST": (".sph", ".nist"),
    "AIFF": (".aiff", ".aif", ".aifc"), "AU": (".au", ".snd"), "CAF": (".caf",), "FLAC": (".flac",),
    "OGG": (".ogg", ".oga", ".opus"), "MP3": (".mp3",), "IRCAM": (".sf", ".ircam"), "VOC": (".voc",),
    "SVX": (".svx", ".iff", ".8svx"), "PAF": (".paf",), "PVF": (".pvf",), "SD2": (".sd2",), "SDS": (".sds",),
    "AVR": (".avr",), "HTK": (".htk",), "WVE": (".wve",), "XI": (".xi",),
}  # fmt: skip


def readable_extensions() -> frozenset[str]:
    """Extensions of the formats this machine's libsndfile reads (``soundfile.available_formats()``)."""
    available = sf.available_formats()
    return frozenset(ext for fmt, exts in _FORMAT_EXTENSIONS.items() if fmt in available for ext in exts)


AUDIO_EXTENSIONS = tuple(sorted(readable_extensions()))
TRANSCRIPT_EXTENSION = ".txt"


def folder_ids(root: Path, paths: list[Path]) -> list[str]:
    """Relative path without extension; where two files share it (``x.flac`` and ``x.mp3``), both
    keep their extension, so each recording has its own id whatever else is in the folder."""
    rel = [p.relative_to(root) for p in paths]
    return disambiguate([[r.with_suffix("").as_posix(), r.as_posix()] for r in rel], what=f"audio folder {root}")


def _scan(root: Path, report: LoadReport) -> list[Path]:
    """Audio files under `root`, sorted; every other file except transcripts is counted as skipped."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    audio = [p for p in files if p.suffix.lower() in AUDIO_EXTENSIONS]
    stems = {p.with_suffix("") for p in audio}
    for path in files:
        suffix = path.suffix.lower()
        if suffix in AUDIO_EXTENSIONS or (suffix == TRANSCRIPT_EXTENSION and path.with_suffix("") in stems):
            continue
        report.skip("unsupported_format", str(path.relative_to(root)))
    return audio


def _folder_rows(root: Path, paths: list[Path], ids: list[str], language: str, report: LoadReport) -> Iterator[dict]:
    for path, uid in zip(paths, ids):
        try:
            duration = audio_duration(path)
        except AudioDecodeError as err:
            report.skip("empty_audio" if path.stat().st_size == 0 else "corrupt_audio", str(err))
            continue
        sidecar = path.with_suffix(TRANSCRIPT_EXTENSION)
        text = decode_utf8(sidecar.read_bytes(), sidecar.relative_to(root), report=report) if sidecar.exists() else ""
        if text is None:  # counted as not_utf8: this recording's transcript cannot be read
            continue
        text = normalize_transcript(text)
        report.loaded += 1
        yield make_row(uid, str(path), text, language, duration)


def load_audio_folder(root: str | os.PathLike, language: str = "", streaming: bool = False) -> Dataset | IterableDataset:
    """Every audio file under `root` (recursively) that libsndfile reads; id = relative path
    without extension (with it where two files would share one, see :func:`folder_ids`).

    A ``<name>.txt`` next to ``<name>.wav`` is its transcript (else ``text == ""``); `language`
    fills the language column. Unreadable and non-audio files are skipped and counted in
    ``load_report`` (with examples), so ``loaded + n_skipped`` is the number of files found.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"audio folder {root} is not a directory")
    report = LoadReport(source=f"audio folder {root}")
    paths = _scan(root, report)
    ids = folder_ids(root, paths)
    return finish(lambda _: _folder_rows(root, paths, ids, language, report), [str(root)], report, streaming)
