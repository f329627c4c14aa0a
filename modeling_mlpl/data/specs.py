"""Data specs: the one way every script names its data (``KIND:PATH[@SPLIT]``), parsed and opened here.

============================  =============================================================================
``cv:DIR[@SPLIT]``            Common Voice layout (:func:`.load_common_voice`)
``vp:DIR[@SPLIT]``            VoxPopuli root, also spelt ``voxpopuli:``: its ``transcribed_data``,
                              or its ``unlabelled_data`` when the caller labels audio (``unlabelled=True``)
``librispeech:DIR[@SPLIT]``   a LibriSpeech split (flac tree or Parquet copy)
``folder:DIR``                every audio file below DIR (``.txt`` sidecars are transcripts)
``disk:PATH[:SPLIT][@LANG]``  a ``save_to_disk`` dataset (``@LANG`` when it has no language column)
``hub:NAME[@SPLIT]``          ``datasets.load_dataset(NAME)`` (pseudo-labelling input only)
============================  =============================================================================

A split given in the spec wins over the caller's default (``--split``). Each command accepts the
kinds listed for it below (the one list of who takes what); a bad spec is refused in one line that
names it and the accepted forms (:class:`DataSpecError`). Training's deprecated ``--train_datasets``/
``--eval_datasets`` also take the bare ``PATH[:SPLIT][@LANG]`` of a disk spec (``default_kind="disk"``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

# Canonical kind -> (spellings, form shown in messages).
KINDS: dict[str, tuple[tuple[str, ...], str]] = {
    "cv": (("cv",), "cv:DIR[@SPLIT]"),
    "vp": (("vp", "voxpopuli"), "vp|voxpopuli:DIR[@SPLIT]"),
    "librispeech": (("librispeech",), "librispeech:DIR[@SPLIT]"),
    "folder": (("folder",), "folder:DIR"),
    "disk": (("disk",), "disk:PATH[:SPLIT][@LANG]"),
    "hub": (("hub",), "hub:NAME[@SPLIT]"),
}
_CANONICAL = {spelling: kind for kind, (spellings, _) in KINDS.items() for spelling in spellings}

# Which kinds each command accepts. Labelled data (a transcript per row) is one list: what can be
# evaluated can be trained on.
LABELLED_KINDS = ("cv", "vp", "librispeech", "folder", "disk")
EVAL_KINDS = LABELLED_KINDS  # test sets (evaluate.py, tune_lm.py)
TRAINING_KINDS = LABELLED_KINDS  # train.py --train_data / --eval_data
LABEL_INPUT_KINDS = ("vp", "cv", "disk", "folder", "hub")  # audio to pseudo-label (pseudo_label.py)
UNLABELED_POOL_KINDS = ("vp", "disk")  # train.py --unlabeled_data (slimIPL)
PL_SET_KINDS = ("disk",)  # train.py's deprecated --train_datasets / --eval_datasets (bare PATH allowed)


class DataSpecError(ValueError):
    """A data spec that does not parse or names no data (a one-line user error)."""


@dataclass(frozen=True)
class DataSpec:
    """One parsed spec. `prefix` is the kind as written ("" for a bare training path), so that
    :meth:`normalized` reproduces the user's spelling with the path resolved."""

    kind: str
    path: str
    split: str | None = None
    language: str | None = None
    prefix: str = ""

    def __str__(self) -> str:
        """The spec as the user would write it (what messages and source names show)."""
        return self._text(self.path)

    def normalized(self) -> str:
        """The spec with its path resolved, so that one input given two ways is one input."""
        from ..resumable import same_path

        return self._text(self.path if self.kind == "hub" else same_path(self.path))

    def _text(self, path: str) -> str:
        split = "" if self.split is None else (":" if self.kind == "disk" else "@") + self.split
        language = "" if self.language is None else "@" + self.language
        return f"{self.prefix}:{path}{split}{language}" if self.prefix else f"{path}{split}{language}"


def accepted_forms(kinds: Sequence[str]) -> str:
    """``KIND one of cv, vp, ... (cv:DIR[@SPLIT], ...)``: what a message about a bad spec lists."""
    spellings = [s for kind in kinds for s in KINDS[kind][0]]
    return f"KIND one of {', '.join(spellings)} ({', '.join(KINDS[kind][1] for kind in kinds)})"


def parse_disk_spec(spec: str) -> tuple[str, str | None, str | None]:
    """``PATH[:SPLIT][@LANG]`` -> (path, split, language); a ``:`` inside an existing path is kept."""
    language = split = None
    if "@" in spec:
        spec, language = spec.rsplit("@", 1)
    if ":" in spec and not os.path.exists(spec):
        spec, split = spec.rsplit(":", 1)
    return spec, split, language


def parse_data_spec(spec: str, kinds: Sequence[str] = tuple(KINDS), default_kind: str | None = None,
                    flag: str = "--data") -> DataSpec:  # fmt: skip
    """`spec` -> :class:`DataSpec`, or :class:`DataSpecError` naming `flag`, the spec and the accepted forms.

    `default_kind` is the kind of a spec without a known ``KIND:`` prefix (training's bare paths)."""
    prefix, sep, rest = spec.partition(":")
    kind = _CANONICAL.get(prefix) if sep else None
    if kind is None and default_kind is not None:
        kind, prefix, rest = default_kind, "", spec
    if kind not in kinds or not rest:
        raise DataSpecError(f"{flag} {spec!r}: expected KIND:PATH with {accepted_forms(kinds)}")
    if kind == "disk":
        path, split, language = parse_disk_spec(rest)
        return DataSpec(kind, path, split, language, prefix)
    path, split = rest, None
    if "@" in rest and not os.path.exists(rest):
        path, split = rest.rsplit("@", 1)
    return DataSpec(kind, path, split, None, prefix)


def check_path(spec: DataSpec, flag: str = "--data") -> None:
    """Refuse, in one line, a spec whose path does not exist (a hub name is not a path)."""
    if spec.kind != "hub" and not os.path.exists(spec.path):
        raise DataSpecError(f"{flag} {spec.prefix + ':' if spec.prefix else ''}{spec.path}: path does not exist")


def open_dataset(
    spec: str | DataSpec,
    *,
    split: str = "train",
    languages: Sequence[str] | None = None,
    streaming: bool = False,
    unlabelled: bool = False,
    schema: bool = True,
    kinds: Sequence[str] = tuple(KINDS),
    default_kind: str | None = None,
    flag: str = "--data",
) -> Any:
    """The dataset a spec names, in the loaders' schema (``id, audio, text, language, duration``).

    `split` is the default split (the spec's own wins); `languages` restricts the Common Voice and
    VoxPopuli loaders and gives a folder its language (when exactly one); `unlabelled` picks
    VoxPopuli's unlabelled recordings. ``schema=False`` returns disk rows as saved (audio decoding
    switched off, ``@LANG`` added as a missing language column), as hub rows are: what
    pseudo-labelling reads, where a transcript and a language column are optional.
    """
    # The loaders import `datasets` (seconds): only when data is opened, not when a command parses its flags.
    from . import common_voice, disk, folder, librispeech, voxpopuli

    s = spec if isinstance(spec, DataSpec) else parse_data_spec(spec, kinds, default_kind, flag)
    split = s.split or split
    check_path(s, flag)
    langs = list(languages) if languages else None
    if s.kind == "cv":
        return common_voice.load_common_voice(s.path, langs, split=split, streaming=streaming)
    if s.kind == "vp" and unlabelled:
        return voxpopuli.load_voxpopuli_unlabelled(s.path, langs, streaming=streaming)
    if s.kind == "vp":
        return voxpopuli.load_voxpopuli_transcribed(s.path, langs, split=split, streaming=streaming)
    if s.kind == "librispeech":
        return librispeech.load_librispeech(s.path, split, streaming=streaming)
    if s.kind == "folder":
        return folder.load_audio_folder(s.path, language=langs[0] if langs and len(langs) == 1 else "",
                                        streaming=streaming)  # fmt: skip
    if s.kind == "disk":
        ds = disk.open_saved(s.path, split)
        if schema:
            return disk.complete_schema(ds, s.path, s.language)
        if s.language is not None and "language" not in ds.column_names:
            ds = ds.add_column("language", [s.language] * len(ds))
        return ds
    from datasets import load_dataset

    return disk.undecoded_audio(load_dataset(s.path, split=split, streaming=streaming), f"hub:{s.path}")


__all__ = [
    "DataSpec",
    "DataSpecError",
    "EVAL_KINDS",
    "KINDS",
    "LABELLED_KINDS",
    "LABEL_INPUT_KINDS",
    "PL_SET_KINDS",
    "TRAINING_KINDS",
    "UNLABELED_POOL_KINDS",
    "accepted_forms",
    "check_path",
    "open_dataset",
    "parse_data_spec",
    "parse_disk_spec",
]
