"""Language identification by an audio-classification model (e.g. facebook/mms-lid-126), for
``--language auto`` with a teacher that has no language identification of its own (CTC, MMS).

Its labels are ISO 639-3 codes (``config.id2label``: "por", "nld"): they map back to our codes with
:func:`modeling_mlpl.data.languages.from_iso639_3` (the same table that picks MMS adapters).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ...data.languages import from_iso639_3
from .base import TeacherError, identity

__all__ = ["AudioClassifierLID"]


class AudioClassifierLID:
    """``detect_languages(waveforms)`` from an ``AutoModelForAudioClassification`` checkpoint. Each
    recording is classified on its own (no padding to change the result) from its first `max_seconds`
    (an MMS-LID model is trained on short utterances; a whole hour would cost an hour's forward)."""

    def __init__(self, model, feature_extractor, name_or_path: str, revision: str | None = None,
                 max_seconds: float = 30.0):  # fmt: skip
        self.model = model.eval()
        self.feature_extractor = feature_extractor
        self.sampling_rate = int(feature_extractor.sampling_rate)
        self.max_samples = int(max_seconds * self.sampling_rate)
        self.labels = [from_iso639_3(model.config.id2label[i]) for i in range(len(model.config.id2label))]
        self.identity = identity("lid", name_or_path, revision)

    @classmethod
    def from_pretrained(cls, name_or_path: str, revision: str | None = None, device=None,
                        max_seconds: float = 30.0) -> "AudioClassifierLID":  # fmt: skip
        from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

        try:
            model = AutoModelForAudioClassification.from_pretrained(name_or_path, revision=revision)
            feature_extractor = AutoFeatureExtractor.from_pretrained(name_or_path, revision=revision)
        except (OSError, ValueError) as err:
            raise TeacherError(f"cannot load --lid_model {name_or_path} as an audio classifier: "
                               f"{str(err).splitlines()[0]}") from err  # fmt: skip
        if device is not None:
            model.to(device)
        return cls(model, feature_extractor, name_or_path, revision, max_seconds)

    @torch.no_grad()
    def detect_languages(self, waveforms: Sequence[np.ndarray]) -> list[list[tuple[str, float]]]:
        device = next(self.model.parameters()).device
        ranked = []
        for wave in waveforms:
            inputs = self.feature_extractor(wave[: self.max_samples], sampling_rate=self.sampling_rate,
                                            return_tensors="pt")  # fmt: skip
            logits = self.model(**{k: v.to(device) for k, v in inputs.items()}).logits[0]
            probs = logits.float().softmax(-1).cpu().numpy()
            ranked.append([(self.labels[i], float(probs[i])) for i in np.argsort(-probs, kind="stable")])
        return ranked
