"""VoxPopuli from a local copy: unlabelled long-form audio and the transcribed subset.

Layout (as the VoxPopuli download scripts write it)::

    <root>/unlabelled_data/<lang>/<year>/<session>.ogg          long-form, ~15-40 s here
    <root>/transcribed_data/<lang>/asr_{train,dev,test}.tsv      id, raw_text, normalized_text, ...
    <root>/transcribed_data/<lang>/<year>/<id>.ogg

The synthetic corpus adds ``<root>/unlabelled_truth/<lang>.tsv`` (id, text): the true transcript of
each unlabelled recording, for the oracle control and for measuring pseudo-label CER.
Language codes are VoxPopuli's (``sv``) or Common Voice's (``sv-SE``); the ``language`` column
always holds the Common Voice code, as the model's language ids do.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from datasets import Dataset, IterableDataset

from ..audio import AudioDecodeError, audio_duration
from ..text import normalize_transcript
from .common import finish, make_row
from .ids import disambiguate
from .languages import CV_TO_VP, VP_LANGUAGES, VP_TO_CV, validate_languages
from .load_report import LoadReport
from .tables import read_tsv, unquote_sentence

AUDIO_EXTENSIONS = (".ogg", ".flac", ".wav", ".mp3")


def _subdir(root: Path, name: str) -> Path:
    """`root` may be the VoxPopuli root or the `name` folder itself."""
    return root if root.name == name else root / name


def _vp_languages(base: Path, languages: list[str] | str | None) -> list[str]:
    """Requested languages in VoxPopuli codes, validated against the paper's list and the disk."""
    available = sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
    if languages is None:
        langs = [lang for lang in available if lang in VP_LANGUAGES]
        if not langs:
            raise ValueError(f"no VoxPopuli language folders under {base}")
        return langs
    if isinstance(languages, str):
        languages = [languages]
    return validate_languages([CV_TO_VP.get(lang, lang) for lang in languages], VP_LANGUAGES, available, "VoxPopuli")


def _checked_duration(path: Path, report: LoadReport) -> float | None:
    try:
        if path.stat().st_size == 0:
            report.skip("empty_audio", str(path))
            return None
        return audio_duration(path)
    except FileNotFoundError:
        report.skip("missing_audio", str(path))
    except AudioDecodeError as err:
        report.skip("corrupt_audio", str(err))
    return None


def unlabelled_ids(lang_dir: Path, cv_lang: str, files: list[Path]) -> list[str]:
    """``<cv_lang>/<stem>``; where two files share a stem (two years, or two extensions), they get
    ``<cv_lang>/<year>/<stem>`` (then the extension too), so no recording is lost to a collision."""
    rel = [p.relative_to(lang_dir) for p in files]
    candidates = [[f"{cv_lang}/{r.stem}", f"{cv_lang}/{r.with_suffix('').as_posix()}", f"{cv_lang}/{r.as_posix()}"]
                  for r in rel]  # fmt: skip
    return disambiguate(candidates, what=f"VoxPopuli {lang_dir}")


def _unlabelled_rows(base: Path, lang: str, report: LoadReport) -> Iterator[dict]:
    cv_lang = VP_TO_CV.get(lang, lang)
    files = sorted(p for p in (base / lang).rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
    for path, uid in zip(files, unlabelled_ids(base / lang, cv_lang, files)):
        duration = _checked_duration(path, report)
        if duration is None:
            continue
        report.loaded += 1
        yield make_row(uid, str(path), "", cv_lang, duration)


def load_voxpopuli_unlabelled(
    root: str | os.PathLike, languages: list[str] | str | None = None, streaming: bool = False
) -> Dataset | IterableDataset:
    """Unlabelled long-form recordings (``text == ""``), ids ``<cv_lang>/<file stem>`` (unique:
    see :func:`unlabelled_ids`).

    Every file's header is read for its duration, which also catches corrupt and empty files
    (skipped, counted in ``load_report``)."""
    base = _subdir(Path(root), "unlabelled_data")
    if not base.is_dir():
        raise FileNotFoundError(f"no unlabelled_data folder at {root}")
    langs = _vp_languages(base, languages)
    report = LoadReport(source=f"voxpopuli[unlabelled] {root}")
    return finish(lambda lang: _unlabelled_rows(base, lang, report), langs, report, streaming)


def _transcribed_rows(base: Path, lang: str, split: str, report: LoadReport) -> Iterator[dict]:
    cv_lang = VP_TO_CV.get(lang, lang)
    tsv = base / lang / f"asr_{split}.tsv"
    if not tsv.exists():
        raise ValueError(f"no VoxPopuli split {split!r} for {lang}: {tsv} does not exist")
    seen: set[str] = set()  # VoxPopuli ids name utterances: a repeated id is a repeated row
    for lineno, row in read_tsv(tsv, report, "raw_text", ("id",)):
        vid = row["id"].strip()
        uid = f"{cv_lang}/{vid}"
        if uid in seen:
            report.skip("duplicate_id", f"{tsv.name}:{lineno}")
            continue
        text = normalize_transcript(unquote_sentence(row.get("raw_text") or "")[0] or row.get("normalized_text", ""))
        if not text:
            report.skip("empty_sentence", f"{tsv.name}:{lineno}")
            continue
        candidates = [base / lang / vid[:4] / f"{vid}{ext}" for ext in AUDIO_EXTENSIONS]
        candidates += [base / lang / f"{vid}{ext}" for ext in AUDIO_EXTENSIONS]
        path = next((p for p in candidates if p.exists()), candidates[0])
        duration = _checked_duration(path, report)
        if duration is None:
            continue
        seen.add(uid)
        report.loaded += 1
        yield make_row(uid, str(path), text, cv_lang, duration)


def load_voxpopuli_transcribed(
    root: str | os.PathLike, languages: list[str] | str | None = None, split: str = "train", streaming: bool = False
) -> Dataset | IterableDataset:
    """The transcribed VoxPopuli subset (``raw_text``: case and punctuation kept)."""
    base = _subdir(Path(root), "transcribed_data")
    if not base.is_dir():
        raise FileNotFoundError(f"no transcribed_data folder at {root}")
    langs = _vp_languages(base, languages)
    report = LoadReport(source=f"voxpopuli[transcribed {split}] {root}")
    return finish(lambda lang: _transcribed_rows(base, lang, split, report), langs, report, streaming)


def load_unlabelled_truth(root: str | os.PathLike, languages: list[str] | str | None = None) -> dict[str, str]:
    """Synthetic corpus only: loader id (``<cv_lang>/<stem>``) -> true transcript of each
    unlabelled recording, from ``<root>/unlabelled_truth/<lang>.tsv``."""
    base = _subdir(Path(root), "unlabelled_truth")
    if not base.is_dir():
        raise FileNotFoundError(f"no unlabelled_truth folder at {root} (only the synthetic corpus has one)")
    if languages is None:
        langs = sorted(p.stem for p in base.glob("*.tsv"))
    else:
        langs = [CV_TO_VP.get(lang, lang) for lang in ([languages] if isinstance(languages, str) else languages)]
    truth: dict[str, str] = {}
    report = LoadReport(source=f"voxpopuli[truth] {root}")
    for lang in langs:
        tsv = base / f"{lang}.tsv"
        if not tsv.exists():
            raise ValueError(f"no truth file for {lang}: {tsv}; available: {sorted(p.stem for p in base.glob('*.tsv'))}")
        for _, row in read_tsv(tsv, report, "text", ("id", "text")):
            truth[f"{VP_TO_CV.get(lang, lang)}/{row['id']}"] = normalize_transcript(row["text"])
    return truth
