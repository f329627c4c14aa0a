"""A plain folder of audio files (e.g. a user's own recordings to transcribe or pseudo-label)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from datasets import Dataset, IterableDataset

from ..audio import AudioDecodeError, audio_duration
from ..text import normalize_transcript
from .common import finish, make_row
from .report import LoadReport

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus")


def _folder_rows(root: Path, language: str, report: LoadReport) -> Iterator[dict]:
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()):
        uid = path.relative_to(root).with_suffix("").as_posix()
        try:
            duration = audio_duration(path)
        except AudioDecodeError as err:
            report.skip("empty_audio" if path.stat().st_size == 0 else "corrupt_audio", str(err))
            continue
        sidecar = path.with_suffix(".txt")
        text = normalize_transcript(sidecar.read_text(encoding="utf-8")) if sidecar.exists() else ""
        report.loaded += 1
        yield make_row(uid, str(path), text, language, duration)


def load_audio_folder(root: str | os.PathLike, language: str = "", streaming: bool = False) -> Dataset | IterableDataset:
    """Every audio file under `root` (recursively), id = relative path without extension.

    A ``<name>.txt`` next to ``<name>.wav`` is its transcript (else ``text == ""``); `language`
    fills the language column. Unreadable files are skipped and counted in ``load_report``.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"audio folder {root} is not a directory")
    report = LoadReport(source=f"audio folder {root}")
    return finish(lambda _: _folder_rows(root, language, report), [str(root)], report, streaming)
