"""Pseudo-labeling teachers: what turns audio into labels (see :mod:`.base` for the interface).

Kinds: ``mlpl`` (:mod:`.mlpl`, this package's MLPLForCTC), ``ctc`` and ``mms`` (:mod:`.ctc`, any
transformers CTC checkpoint; MMS with per-language adapters), ``whisper`` (:mod:`.whisper`). The kind
of a checkpoint is read from its config by :func:`load_teacher`; the kinds' modules are imported when
a checkpoint needs them.
"""

from .base import TEACHER_KINDS, DecodeOptions, Teacher, TeacherError, load_teacher, read_checkpoint_config, teacher_kind

__all__ = ["TEACHER_KINDS", "DecodeOptions", "Teacher", "TeacherError", "load_teacher", "read_checkpoint_config",
           "teacher_kind"]  # fmt: skip
