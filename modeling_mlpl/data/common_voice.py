"""Common Voice from a local copy: the release layout, or Parquet / `audiofolder` re-exports.

Release layout (what Mozilla ships, and what the synthetic corpus writes)::

    <root>/<lang>/clips/*.mp3
    <root>/<lang>/{train,dev,test,validated,...}.tsv     client_id, path, sentence, ...
    <root>/<lang>/clip_durations.tsv                     clip, duration[ms]   (newer releases)

Parquet copy: ``<root>/<lang>/<split>/*.parquet`` or ``<root>/<lang>/<split>-*.parquet`` with
columns ``path``, ``audio`` ({bytes, path}), ``sentence``. Audiofolder copy:
``<root>/<lang>/<split>/metadata.csv`` with ``file_name`` and ``sentence`` (or ``transcription``/
``text``). Common Voice is no longer on the Hugging Face Hub, so nothing here downloads; users
with Hub access to a re-hosted copy can pass its Parquet snapshot directory as `root`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterator

from datasets import Dataset, IterableDataset

from ..audio import AudioDecodeError, audio_duration
from ..text import normalize_transcript
from .common import finish, make_row
from .ids import StreamingIds
from .languages import CV_LANGUAGES, validate_languages
from .load_report import LoadReport
from .tables import find_parquet, read_audiofolder_metadata, read_parquet_rows, read_tsv, unquote_sentence

logger = logging.getLogger(__name__)

_TEXT_COLUMNS = ("sentence", "transcription", "text")


def read_clip_durations(lang_dir: Path) -> dict[str, float]:
    """clip file name -> seconds, from `clip_durations.tsv` (empty dict when absent)."""
    path = lang_dir / "clip_durations.tsv"
    if not path.exists():
        return {}
    durations: dict[str, float] = {}
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\r\n").split("\t")
        scale = 1e-3 if "ms" in (header[1] if len(header) > 1 else "ms") else 1.0
        for line in f:
            parts = line.rstrip("\r\n").split("\t")
            if len(parts) >= 2:
                try:
                    durations[parts[0]] = float(parts[1]) * scale
                except ValueError:
                    continue
    return durations


def _layout(lang_dir: Path, split: str) -> str | None:
    if (lang_dir / f"{split}.tsv").exists():
        return "release"
    if find_parquet(lang_dir, split):
        return "parquet"
    for name in ("metadata.csv", "metadata.jsonl"):
        if (lang_dir / split / name).exists():
            return "audiofolder"
    return None


def _language_dirs(root: Path) -> dict[str, Path]:
    """Language code -> directory. `root` may also be one language's directory (has clips/)."""
    if (root / "clips").is_dir() or any(root.glob("*.tsv")):
        return {root.name: root}
    return {p.name: p for p in sorted(root.iterdir()) if p.is_dir()}


def _duration(path: str, clip: str, durations: dict[str, float], verify: bool, report: LoadReport) -> float | None:
    """Duration of a clip; missing/empty/corrupt files are counted and give None."""
    try:
        size = os.path.getsize(path)
    except OSError:
        report.skip("missing_audio", path)
        return None
    if size == 0:
        report.skip("empty_audio", path)
        return None
    known = durations.get(clip)
    if known is not None and not verify:
        return known
    try:
        measured = audio_duration(path)
    except AudioDecodeError as err:
        report.skip("corrupt_audio", str(err))
        return None
    return known if known is not None else measured


def _unique_row(ids: StreamingIds, report: LoadReport, where: str, lang: str, clip: str, source: str | dict,
                text: str, duration: float, origin: str) -> dict | None:  # fmt: skip
    """The loader row of `clip` (id ``lang/<clip stem>``, else ``lang/<clip>``), or None, counted, when both
    ids were given out already (a clip listed twice; `origin` names it in the id table)."""
    uid = ids.assign([f"{lang}/{Path(clip).stem}", f"{lang}/{clip}"], origin)
    if uid is None:
        report.skip("duplicate_id", where)
        return None
    report.loaded += 1
    return make_row(uid, source, text, lang, duration)


def _release_rows(lang: str, lang_dir: Path, split: str, verify: bool | None, report: LoadReport) -> Iterator[dict]:
    durations = read_clip_durations(lang_dir)
    ids = StreamingIds(f"Common Voice {lang_dir / split}.tsv")
    for lineno, row in read_tsv(lang_dir / f"{split}.tsv", report, "sentence", ("path", "sentence")):
        clip = row["path"].strip()
        clip_path = lang_dir / "clips" / clip
        if not clip_path.exists() and not clip.endswith(".mp3") and (lang_dir / "clips" / f"{clip}.mp3").exists():
            clip, clip_path = f"{clip}.mp3", lang_dir / "clips" / f"{clip}.mp3"  # pre-v5 paths lack .mp3
        sentence, was_quoted = unquote_sentence(row["sentence"])
        if was_quoted:
            report.repair("quoted_sentence", f"{split}.tsv:{lineno}")
        text = normalize_transcript(sentence)
        if not text:
            report.skip("empty_sentence", f"{split}.tsv:{lineno}")
            continue
        duration = _duration(str(clip_path), clip, durations, bool(verify) if verify is not None else not durations, report)
        if duration is None:
            continue
        row = _unique_row(ids, report, f"{split}.tsv:{lineno}", lang, clip, str(clip_path), text, duration,
                          origin=str(clip_path))  # fmt: skip
        if row is not None:
            yield row


def _embedded_rows(lang: str, rows: Iterator[dict], base: Path | None, split: str, report: LoadReport) -> Iterator[dict]:
    """Rows of a Parquet (audio bytes inside) or audiofolder (file_name) copy."""
    ids = StreamingIds(f"Common Voice {lang} {split}")
    for i, row in enumerate(rows):
        text_col = next((c for c in _TEXT_COLUMNS if c in row), None)
        audio = row.get("audio")
        if base is not None and row.get("file_name"):
            audio = str(base / row["file_name"])
        if text_col is None or audio is None:
            report.skip("malformed_row", f"{split} row {i}")
            continue
        if isinstance(audio, dict) and not audio.get("bytes") and audio.get("path"):
            audio = audio["path"]
        name = row.get("path") or (audio.get("path") if isinstance(audio, dict) else audio) or f"{split}_{i}"
        text = normalize_transcript(unquote_sentence(row[text_col] or "")[0])
        if not text:
            report.skip("empty_sentence", f"{split} row {i}")
            continue
        if isinstance(audio, dict):
            if not audio.get("bytes"):
                report.skip("empty_audio", f"{split} row {i}")
                continue
            source: str | dict = {"bytes": audio["bytes"], "path": audio.get("path") or str(name)}
        else:
            if not os.path.exists(audio):
                report.skip("missing_audio", audio)
                continue
            source = audio
        try:
            duration = float(row["duration"]) if row.get("duration") else audio_duration(source)
        except AudioDecodeError as err:
            report.skip("corrupt_audio", str(err))
            continue
        row = _unique_row(ids, report, f"{split} row {i}", lang, str(name), source, text, duration, origin=str(name))
        if row is not None:
            yield row


def _lang_rows(lang: str, lang_dir: Path, split: str, verify: bool | None, report: LoadReport) -> Iterator[dict]:
    layout = _layout(lang_dir, split)
    if layout == "release":
        yield from _release_rows(lang, lang_dir, split, verify, report)
    elif layout == "parquet":
        files = find_parquet(lang_dir, split)
        yield from _embedded_rows(lang, read_parquet_rows(files), None, split, report)
    elif layout == "audiofolder":
        meta = next(p for p in (lang_dir / split / "metadata.csv", lang_dir / split / "metadata.jsonl") if p.exists())
        yield from _embedded_rows(lang, read_audiofolder_metadata(meta), meta.parent, split, report)
    else:
        raise missing_split(lang, lang_dir, split)


def missing_split(lang: str, lang_dir: Path, split: str) -> ValueError:
    return ValueError(f"no split {split!r} for Common Voice language {lang!r} in {lang_dir}; available: "
                      f"{', '.join(splits_on_disk(lang_dir)) or '(none)'}")  # fmt: skip


def splits_on_disk(lang_dir: Path) -> list[str]:
    """Split names one language's folder holds (release TSVs, Parquet or audiofolder sub-folders)."""
    tsvs = {p.stem for p in lang_dir.glob("*.tsv")} - {"clip_durations", "reported"}
    folders = {p.name for p in lang_dir.iterdir() if p.is_dir() and p.name != "clips" and _layout(lang_dir, p.name)}
    return sorted(tsvs | folders)


def load_common_voice(
    root: str | os.PathLike,
    languages: list[str] | str | None = None,
    split: str = "train",
    streaming: bool = False,
    verify_audio: bool | None = None,
) -> Dataset | IterableDataset:
    """Load Common Voice `split` for `languages` (default: every language found under `root`).

    Args:
        root: directory holding ``<lang>/`` folders (a release, Parquet or audiofolder copy), or a
            single language's folder.
        languages: Common Voice codes (e.g. ``["pt", "fy-NL"]``); unknown codes raise ValueError.
        split: a TSV name of the release (``train``, ``dev``, ``test``, ``validated``, ...).
        streaming: return an `IterableDataset` that reads rows lazily.
        verify_audio: read every clip's header to catch corrupt files. Default: only when
            `clip_durations.tsv` is absent (then the header gives the duration anyway); on a full
            release that would read millions of files, so corrupt ones are then caught at
            decode time (:func:`modeling_mlpl.audio.try_load_audio`).

    Skipped rows (missing/empty/corrupt clips, empty sentences, malformed lines, duplicate ids)
    are logged and counted in the returned dataset's ``load_report``
    (:func:`modeling_mlpl.data.get_load_report`).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Common Voice root {root} is not a directory")
    dirs = _language_dirs(root)
    known = {code: path for code, path in dirs.items() if code in CV_LANGUAGES and _layout(path, split)}
    if languages is None:
        ignored = sorted(set(dirs) - set(known))
        if ignored:
            logger.warning("Common Voice: ignoring folders without a known language code or %s split: %s", split, ignored)
        langs = sorted(known)
        if not langs:
            raise ValueError(f"no Common Voice language with a {split!r} split under {root}")
    else:
        validate_languages(languages, CV_LANGUAGES, what="Common Voice")
        without_split = [lang for lang in ([languages] if isinstance(languages, str) else languages)
                         if lang in dirs and lang not in known]  # fmt: skip
        if without_split:  # the language is there, the split is not: say so (not "language not found")
            raise missing_split(without_split[0], dirs[without_split[0]], split)
        langs = validate_languages(languages, CV_LANGUAGES, available=list(known), what="Common Voice")
    report = LoadReport(source=f"common_voice[{split}] {root}")
    return finish(lambda lang: _lang_rows(lang, known[lang], split, verify_audio, report), langs, report, streaming)
