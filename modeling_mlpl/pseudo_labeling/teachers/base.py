"""The interface every pseudo-labeling teacher implements, and the one place that picks a teacher.

The labeler (:mod:`modeling_mlpl.pseudo_labeling.labeler`) shards, batches, resumes and accounts;
a :class:`Teacher` only turns 16 kHz waveforms into text (and times and scores). So an mlpl
checkpoint, any transformers CTC model, an MMS model with per-language adapters and Whisper all go
through the same job.

Which teacher a checkpoint needs is read from its ``config.json`` (``model_type``, ``architectures``),
never guessed from a failed load: transformers loads a checkpoint of another architecture into a
*random* model with only a warning, so a guess that falls through to "try it as mlpl" would label a
dataset with noise. A checkpoint of no supported kind is refused before any work.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

__all__ = ["Teacher", "TeacherError", "DecodeOptions", "TEACHER_KINDS", "read_checkpoint_config", "teacher_kind",
           "load_teacher", "weights_hash"]  # fmt: skip


class TeacherError(ValueError):
    """A teacher that cannot do what the run asks (unsupported checkpoint, language without an adapter,
    no language identification): raised before any work, reported by the command in one line."""


@dataclass
class DecodeOptions:
    """How every teacher runs its model over long recordings (the labeler's config gives them).
    window_s: decode in windows of at most this many seconds, each with `overlap_s` of context on
    both sides (None: whole recordings). max_batch_seconds: padded audio per forward.
    autocast_dtype: "bf16"/"fp16" autocast (GPU), None for fp32."""

    window_s: float | None = 10.0
    overlap_s: float = 2.0
    max_batch_seconds: float = 60.0
    autocast_dtype: str | None = None


class Teacher:
    """What the labeler calls. Subclasses set the attributes in ``__init__`` and are built by
    ``cls.from_pretrained(name_or_path, revision=None, device=None, options=None, **kind_options)``
    (what :func:`load_teacher` calls)."""

    kind: ClassVar[str]  # "mlpl" | "ctc" | "mms" | "whisper"
    identity: dict  # {"kind", "name_or_path", "revision", "weights_hash"}: written into every row as `teacher`
    sampling_rate: int = 16000
    # Codes this teacher can label (None: any; a plain CTC model does not know its language). With
    # --language auto, the labeler routes each recording to its most likely language among these.
    languages: Sequence[str] | None = None
    # Whether label() accepts texts= (known transcripts to force-align instead of decoding).
    supports_forced_alignment: ClassVar[bool] = False
    # Whether detect_languages comes free with labelling (mlpl: the LID head reads the CTC forward's
    # states, and label() of the same waveforms reuses that pass): then every row records its LID top-k.
    free_language_identification: ClassVar[bool] = False

    def check_languages(self, languages: Sequence[str]) -> None:
        """Raise TeacherError (before any work) when a language cannot be labelled."""
        if self.languages is None:
            return
        unknown = [lang for lang in dict.fromkeys(languages) if lang not in self.languages]
        if unknown:
            raise TeacherError(f"unknown language {unknown[0]!r}: this {self.kind} teacher knows "
                               f"{', '.join(self.languages)}")  # fmt: skip

    def detect_languages(self, waveforms: Sequence[np.ndarray]) -> list[list[tuple[str, float]]]:
        """Per waveform: (language, probability) pairs, best first."""
        raise TeacherError(f"a {self.kind} teacher cannot detect languages: give --language or --lid_model")

    def label(self, waveforms: list[np.ndarray], languages: list[str]) -> list[dict]:
        """One dict per waveform: text (the teacher's own), token_times, words, confidence, num_frames
        (or None), decoder, and kind-specific scores."""
        raise NotImplementedError

    def run_options(self) -> dict:
        """The decoding/generation options that change labels (recorded in pl_run.json)."""
        return {}

    @property
    def padding_stats(self):
        """Real vs padded audio fed to the model (a :class:`~modeling_mlpl.evaluation.long_form.PaddingStats`),
        or None where the teacher does not count it."""
        return None


# kind -> "module:Class", imported when a checkpoint needs it (teachers/whisper.py may land later).
TEACHER_KINDS: dict[str, str] = {
    "mlpl": f"{__package__}.mlpl:MLPLTeacher",
    "ctc": f"{__package__}.ctc:CTCTeacher",
    "mms": f"{__package__}.ctc:MMSTeacher",
    "whisper": f"{__package__}.whisper:WhisperTeacher",
}


def read_checkpoint_config(name_or_path: str, revision: str | None = None) -> dict:
    """The checkpoint's config.json as a dict (a local folder, or a Hub id downloaded/cached by
    transformers). A folder without one, or an unreachable Hub id, is a TeacherError."""
    from transformers import PretrainedConfig

    name = os.fspath(name_or_path)
    if Path(name).exists() and not Path(name, "config.json").is_file():
        raise TeacherError(f"no model (config.json) in {name}")
    try:
        config, _ = PretrainedConfig.get_config_dict(name, revision=revision)
    except (OSError, ValueError) as err:
        raise TeacherError(f"cannot read the config of {name}: {str(err).splitlines()[0]}") from err
    return config


def teacher_kind(config: dict) -> str:
    """The teacher kind of a checkpoint config (see :data:`TEACHER_KINDS`), or TeacherError."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CTC_MAPPING_NAMES

    model_type = config.get("model_type")
    architectures = config.get("architectures") or []
    if model_type in ("mlpl", "whisper"):
        return model_type
    if model_type in MODEL_FOR_CTC_MAPPING_NAMES or any(str(a).endswith("ForCTC") for a in architectures):
        # MMS (facebook/mms-1b-all) adds small per-language adapters to every layer: adapter_attn_dim set.
        return "mms" if config.get("adapter_attn_dim") else "ctc"
    raise TeacherError(f"model_type {model_type!r} (architectures {architectures or 'none'}) cannot be a "
                       "pseudo-labeling teacher; supported: mlpl, CTC models (AutoModelForCTC: wav2vec2, hubert, "
                       "wavlm, data2vec-audio, ...), MMS with adapters, whisper")  # fmt: skip


def load_teacher(name_or_path: str, revision: str | None = None, device=None, options: DecodeOptions | None = None,
                 **kind_options: Any) -> Teacher:  # fmt: skip
    """The teacher for a checkpoint (local folder or Hub id at `revision`), its kind read from its config.

    `kind_options` go to the kind's ``from_pretrained`` (mlpl: lm_decoder, beam_width,
    models_per_language; mms: teacher_language); one a kind does not take is a TeacherError.
    """
    kind = teacher_kind(read_checkpoint_config(name_or_path, revision))
    module, _, cls_name = TEACHER_KINDS[kind].partition(":")
    try:
        cls = getattr(importlib.import_module(module), cls_name)
    except (ImportError, AttributeError) as err:
        raise TeacherError(f"{name_or_path} is a {kind} checkpoint, and this version has no {kind} teacher") from err
    return cls.from_pretrained(os.fspath(name_or_path), revision=revision, device=device, options=options,
                               **kind_options)  # fmt: skip


def weights_hash(name_or_path: str, revision: str | None = None) -> str | None:
    """blake2b of the checkpoint's weights file (the hash :mod:`modeling_mlpl.resumable` records), from
    the local folder or the local Hub cache; None when no weights file is found there."""
    from ...resumable import WEIGHT_FILES, file_hash

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
    from ...resumable import same_path

    local = Path(name_or_path).exists()
    return {"kind": kind, "name_or_path": same_path(name_or_path) if local else str(name_or_path),
            "revision": revision, "weights_hash": weights_hash(name_or_path, revision)}  # fmt: skip
