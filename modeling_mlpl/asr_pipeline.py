"""`pipeline("automatic-speech-recognition")` for mlpl models: other sampling rates resampled with soxr.

transformers' ASR pipeline resamples ``{"raw": x, "sampling_rate": sr}`` inputs with torchaudio, and
raises ``ImportError: torchaudio is required`` without it. torchaudio is deliberately not a
dependency (its wheels pin torch builds); every other mlpl stage resamples with soxr
(:mod:`modeling_mlpl.audio`). So importing mlpl makes the task's pipeline class this subclass, which,
for mlpl models only, resamples such inputs with soxr before handing them on; every other model,
and every input already at the model's rate, goes through transformers' code unchanged.

For mlpl models a ``sampling_rate=`` call argument is the rate of array inputs (transformers would
pass it to the model and ignore it), and a rate that is no positive number is a ValueError naming
it (transformers divides by it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import soxr
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.pipelines import automatic_speech_recognition as asr

TASK = "automatic-speech-recognition"

__all__ = ["MLPLSpeechRecognitionPipeline", "register_asr_pipeline"]


class MLPLSpeechRecognitionPipeline(asr.AutomaticSpeechRecognitionPipeline):
    """transformers' ASR pipeline; for mlpl models, dict inputs at another rate are resampled with soxr."""

    def _is_mlpl(self) -> bool:
        return getattr(self.model.config, "model_type", None) == "mlpl"

    def _sanitize_parameters(self, sampling_rate=None, **kwargs):
        if sampling_rate is not None and not self._is_mlpl():
            return super()._sanitize_parameters(sampling_rate=sampling_rate, **kwargs)  # transformers' own way
        preprocess_params, forward_params, postprocess_params = super()._sanitize_parameters(**kwargs)
        if sampling_rate is not None:
            preprocess_params["sampling_rate"] = sampling_rate
        return preprocess_params, forward_params, postprocess_params

    def preprocess(self, inputs: Any, *args: Any, sampling_rate: Any = None, **kwargs: Any):
        if self._is_mlpl():
            if sampling_rate is not None:
                if isinstance(inputs, (str, bytes, dict)):
                    raise ValueError("sampling_rate= is the rate of an array input; a file carries its own and a "
                                     "dict input gives it as {'raw': ..., 'sampling_rate': ...}")  # fmt: skip
                inputs = {"raw": inputs, "sampling_rate": sampling_rate}
            if isinstance(inputs, dict):
                inputs = self._at_model_rate(inputs)
        return super().preprocess(inputs, *args, **kwargs)

    def _at_model_rate(self, inputs: dict) -> dict:
        target = self.feature_extractor.sampling_rate
        rate = inputs.get("sampling_rate")
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float, np.number)) or rate <= 0):
            raise ValueError(f"sampling_rate must be a positive number of samples per second, got {rate!r}")
        audio = inputs.get("raw", inputs.get("array"))
        if rate is None or audio is None or rate == target:
            return inputs  # transformers' own checks and messages apply
        if not isinstance(audio, np.ndarray):  # e.g. a torch tensor
            audio = audio.detach().cpu().numpy() if hasattr(audio, "detach") else np.asarray(audio)
        audio = asr._to_mono(audio)  # (channels, samples) -> (samples,), as transformers reads it
        ratio = target / rate
        out = {k: v for k, v in inputs.items() if k not in ("raw", "array", "path", "sampling_rate")}
        out["raw"] = soxr.resample(np.asarray(audio, dtype=np.float32), rate, target, quality="HQ")
        out["sampling_rate"] = target
        if inputs.get("stride") is not None:  # given in input samples: now in model-rate samples
            out["stride"] = tuple(int(round(s * ratio)) for s in inputs["stride"])
        return out


def register_asr_pipeline() -> None:
    """Make :class:`MLPLSpeechRecognitionPipeline` the class `pipeline(TASK, ...)` builds (a subclass
    that changes nothing for other models)."""
    PIPELINE_REGISTRY.supported_tasks[TASK]["impl"] = MLPLSpeechRecognitionPipeline
