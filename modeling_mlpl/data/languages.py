"""Language codes of the paper's corpora (Common Voice 6.1 and VoxPopuli), and their validation."""

from __future__ import annotations

from typing import Iterable, Sequence

from ..configuration_mlpl import CV61_LANGUAGES

# Common Voice 6.1, the 60 languages of the paper (docs/paper.md "Data"): the model config's default LID classes.
CV_LANGUAGES: tuple[str, ...] = CV61_LANGUAGES
# VoxPopuli languages with unlabelled audio used for pseudo-labels (19).
VP_LANGUAGES: tuple[str, ...] = tuple("en de fr es pl it ro hu cs nl fi sl et lt pt el lv mt sv".split())

# VoxPopuli uses bare ISO codes where Common Voice has regional ones.
VP_TO_CV: dict[str, str] = {"sv": "sv-SE"}
CV_TO_VP: dict[str, str] = {v: k for k, v in VP_TO_CV.items()}


def validate_languages(
    languages: Iterable[str] | str | None,
    valid: Sequence[str],
    available: Sequence[str] | None = None,
    what: str = "Common Voice",
) -> list[str] | None:
    """Check requested codes: unknown codes (not in `valid`) and codes missing from the copy on
    disk (`available`) raise a ValueError that lists what would work. ``None`` passes through."""
    if languages is None:
        return None
    if isinstance(languages, str):
        languages = [languages]
    languages = list(dict.fromkeys(languages))
    unknown = [lang for lang in languages if lang not in valid]
    if unknown:
        raise ValueError(f"unknown {what} language code(s) {unknown}; valid codes: {' '.join(valid)}")
    if available is not None:
        missing = [lang for lang in languages if lang not in available]
        if missing:
            raise ValueError(
                f"{what} language(s) {missing} not found on disk; available: {' '.join(sorted(available)) or '(none)'}"
            )
    return languages
