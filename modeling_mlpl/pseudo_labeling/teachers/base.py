"""The teacher interface: what the pseudo-labeler needs from any model that writes labels.

A teacher turns 16 kHz waveforms into one label dict per recording (text, times, its own
confidence checks); the labeler owns everything else (ids, shards, resume, accounting).
`identity` and `run_options()` are what a resumed run must match, so every option that changes
the labels belongs in `run_options()`.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np

__all__ = ["Teacher", "TeacherError", "weights_hash", "identity"]


class TeacherError(ValueError):
    """A user mistake a teacher can see before any work (e.g. a language it cannot write)."""


class Teacher:
    """Base of the teacher kinds ("mlpl", "ctc", "mms", "whisper")."""

    kind: ClassVar[str]
    identity: dict  # {"kind", "name_or_path", "revision", "weights_hash"}
    sampling_rate: int = 16000
    languages: Sequence[str] | None = None  # codes this teacher can label (None: any)

    def check_languages(self, languages: Sequence[str]) -> None:
        """Raise :class:`TeacherError` naming the languages this teacher cannot label."""
        raise NotImplementedError

    def detect_languages(self, waveforms) -> list[list[tuple[str, float]]]:
        """Per waveform, the top-k (language, probability), best first."""
        raise NotImplementedError

    def label(self, waveforms: list[np.ndarray], languages: list[str]) -> list[dict]:
        """One label dict per waveform, in input order."""
        raise NotImplementedError

    def run_options(self) -> dict:
        """The options that change the labels (recorded with the run, checked on resume)."""
        raise NotImplementedError


def weights_hash(name_or_path: str, revision: str | None = None) -> str | None:
    """blake2b of the checkpoint's weights file (the hash :mod:`modeling_mlpl.run_inputs` records), from
    the local folder or the local Hub cache; None when no weights file is found there."""
    from ...run_inputs import WEIGHT_FILES, file_hash

    for name in WEIGHT_FILES + ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        path = Path(name_or_path, name)
        if not path.is_file() and not Path(name_or_path).exists():
            try:
                from huggingface_hub import try_to_load_from_cache

                cached = try_to_load_from_cache(name_or_path, name, revision=revision)
            except Exception:  # not a valid repo id: nothing cached
                cached = None
            path = Path(cached) if isinstance(cached, str) else path
        if path.is_file():
            return file_hash(path)
    return None


def identity(kind: str, name_or_path: str, revision: str | None) -> dict:
    """The `teacher` field of a row: kind, where it came from (resolved path, or Hub id + revision), weights."""
    from ...run_inputs import same_path

    local = Path(name_or_path).exists()
    return {"kind": kind, "name_or_path": same_path(name_or_path) if local else str(name_or_path),
            "revision": revision, "weights_hash": weights_hash(name_or_path, revision)}  # fmt: skip
