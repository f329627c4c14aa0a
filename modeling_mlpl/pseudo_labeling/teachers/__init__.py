"""Teachers: the models that write pseudo-labels, behind one interface (:mod:`.base`).

Kinds with heavy imports (e.g. :mod:`.whisper`) are imported when asked for, not here.
"""

from .base import Teacher, TeacherError

__all__ = ["Teacher", "TeacherError"]
