"""The teacher interface: what the pseudo-labeler needs from any model that writes labels.

A teacher turns 16 kHz waveforms into one label dict per recording (text, times, its own
confidence checks); the labeler owns everything else (ids, shards, resume, accounting).
`identity` and `run_options()` are what a resumed run must match, so every option that changes
the labels belongs in `run_options()`.
"""

from __future__ import annotations

from typing import ClassVar, Sequence

import numpy as np

__all__ = ["Teacher", "TeacherError"]


class TeacherError(ValueError):
    """A user mistake a teacher can see before any work (e.g. a language it cannot write)."""


class Teacher:
    """Base of the teacher kinds ("mlpl", "ctc", "mms", "whisper")."""

    kind: ClassVar[str]
    identity: dict  # {"kind", "name_or_path", "revision", "weights_hash"}
    sampling_rate: int = 16000

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
