"""LibriSpeech from a local copy: the original flac tree or the `openslr/librispeech_asr` Parquet.

Flac tree (openslr tarballs)::

    <root>/<split>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac
    <root>/<split>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt    "<utt id> <TEXT>" lines

`root` may also be the folder above ``LibriSpeech/``. Parquet (the Hub dataset's files)::

    <root>/{clean,other,all}/{test,validation,train.100,train.360,train.500}/*.parquet

Split names follow the tarballs (``test-clean``, ``dev-other``, ``train-clean-100``, ...).
Transcripts are upper case without punctuation, kept as they are (the model's character set has
upper case letters); ids are ``<speaker>-<chapter>-<utt>``, language ``en``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from datasets import Dataset, IterableDataset

from ..audio import AudioDecodeError, audio_duration
from ..text import normalize_transcript
from .common import finish, make_row
from .ids import StreamingIds
from .load_report import LoadReport
from .tables import find_parquet, read_parquet_rows

SPLITS = ("dev-clean", "dev-other", "test-clean", "test-other", "train-clean-100", "train-clean-360", "train-other-500")
# tarball split -> (Hub config, Hub split)
_HUB_SPLITS = {
    "dev-clean": ("clean", "validation"),
    "dev-other": ("other", "validation"),
    "test-clean": ("clean", "test"),
    "test-other": ("other", "test"),
    "train-clean-100": ("clean", "train.100"),
    "train-clean-360": ("clean", "train.360"),
    "train-other-500": ("other", "train.500"),
}


def _flac_rows(split_dir: Path, report: LoadReport) -> Iterator[dict]:
    ids = StreamingIds(f"LibriSpeech {split_dir}")
    for trans in sorted(split_dir.glob("*/*/*.trans.txt")):
        with open(trans, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                parts = line.strip().split(maxsplit=1)
                if not parts:
                    continue
                if len(parts) < 2:
                    report.skip("empty_sentence", f"{trans.name}:{lineno}")
                    continue
                uid, text = parts
                path = trans.parent / f"{uid}.flac"
                try:
                    if path.stat().st_size == 0:
                        report.skip("empty_audio", str(path))
                        continue
                    duration = audio_duration(path)
                except FileNotFoundError:
                    report.skip("missing_audio", str(path))
                    continue
                except AudioDecodeError as err:
                    report.skip("corrupt_audio", str(err))
                    continue
                if ids.assign([uid], str(path)) is None:  # the same line twice
                    report.skip("duplicate_id", f"{trans.name}:{lineno}")
                    continue
                report.loaded += 1
                yield make_row(uid, str(path), normalize_transcript(text), "en", duration)


def _parquet_rows(files: list[Path], report: LoadReport) -> Iterator[dict]:
    ids = StreamingIds(f"LibriSpeech {files[0].parent}")
    for i, row in enumerate(read_parquet_rows(files, ["id", "file", "audio", "text"])):
        audio = row.get("audio") or {}
        text = normalize_transcript(row.get("text") or "")
        uid = row.get("id") or Path(str(row.get("file") or audio.get("path") or i)).stem
        if not text:
            report.skip("empty_sentence", str(uid))
            continue
        if not audio.get("bytes"):
            report.skip("empty_audio", str(uid))
            continue
        source = {"bytes": audio["bytes"], "path": audio.get("path") or f"{uid}.flac"}
        try:
            duration = audio_duration(source)
        except AudioDecodeError as err:
            report.skip("corrupt_audio", str(err))
            continue
        if ids.assign([str(uid)], str(uid)) is None:  # LibriSpeech ids name utterances: a repeated row
            report.skip("duplicate_id", str(uid))
            continue
        report.loaded += 1
        yield make_row(str(uid), source, text, "en", duration)


def load_librispeech(root: str | os.PathLike, split: str, streaming: bool = False) -> Dataset | IterableDataset:
    """One LibriSpeech split (e.g. ``"test-clean"``) from a flac tree or a Parquet copy."""
    if split not in SPLITS:
        raise ValueError(f"unknown LibriSpeech split {split!r}; valid: {', '.join(SPLITS)}")
    root = Path(root)
    report = LoadReport(source=f"librispeech[{split}] {root}")
    for candidate in (root / split, root / "LibriSpeech" / split):
        if candidate.is_dir() and any(candidate.glob("*/*/*.trans.txt")):
            return finish(lambda _: _flac_rows(candidate, report), [split], report, streaming)
    config, hub_split = _HUB_SPLITS[split]
    for directory, name in ((root / config, hub_split), (root / "all", hub_split), (root, split), (root, hub_split)):
        files = find_parquet(directory, name) if directory.is_dir() else []
        if files:
            return finish(lambda _: _parquet_rows(files, report), [split], report, streaming)
    raise FileNotFoundError(
        f"LibriSpeech {split} not found under {root}: expected {root}/{split}/<spk>/<chapter>/*.trans.txt "
        f"or {root}/{config}/{hub_split}/*.parquet"
    )
