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

# Our language codes (Common Voice's, and VoxPopuli's bare "sv") -> ISO 639-3, the codes of MMS adapters
# (facebook/mms-1b-all: adapter.por.safetensors) and of MMS-LID labels (facebook/mms-lid-126: id2label "por").
# The one table of such codes: ISO 639-1 (Hub metadata) is derived from our codes, see iso639_1. Where
# two of our codes share one ISO 639-3 code (rm-sursilv/rm-vallader -> roh, zh-CN/zh-TW -> cmn), the
# way back (from_iso639_3) gives the first; a teacher whose adapters are named otherwise (e.g.
# "cmn-script_simplified") takes --teacher_language.
ISO639_3: dict[str, str] = {
    "ab": "abk", "ar": "ara", "as": "asm", "br": "bre", "ca": "cat", "cnh": "cnh", "cs": "ces", "cv": "chv",
    "cy": "cym", "de": "deu", "dv": "div", "el": "ell", "en": "eng", "eo": "epo", "es": "spa", "et": "est",
    "eu": "eus", "fa": "fas", "fi": "fin", "fr": "fra", "fy-NL": "fry", "ga-IE": "gle", "hi": "hin",
    "hsb": "hsb", "hu": "hun", "ia": "ina", "id": "ind", "it": "ita", "ja": "jpn", "ka": "kat", "kab": "kab",
    "ky": "kir", "lg": "lug", "lt": "lit", "lv": "lav", "mn": "mon", "mt": "mlt", "nl": "nld", "or": "ori",
    "pa-IN": "pan", "pl": "pol", "pt": "por", "rm-sursilv": "roh", "rm-vallader": "roh", "ro": "ron",
    "ru": "rus", "rw": "kin", "sah": "sah", "sl": "slv", "sv-SE": "swe", "sv": "swe", "ta": "tam",
    "th": "tha", "tr": "tur", "tt": "tat", "uk": "ukr", "vi": "vie", "vot": "vot", "zh-CN": "cmn",
    "zh-HK": "yue", "zh-TW": "cmn",
}  # fmt: skip
_FROM_ISO639_3: dict[str, str] = {}
for _code, _iso in ISO639_3.items():
    _FROM_ISO639_3.setdefault(_iso, _code)


def iso639_3(code: str) -> str:
    """Our code -> ISO 639-3 ("pt" -> "por", "fy-NL" -> "fry"); a code not in the table (already ISO
    639-3, say) is returned as it is."""
    return ISO639_3.get(code, code)


def from_iso639_3(code: str) -> str:
    """ISO 639-3 -> our code ("por" -> "pt"); a code without one of ours is returned as it is."""
    return _FROM_ISO639_3.get(code, code)


def iso639_1(code: str) -> str:
    """Our code -> the ISO 639 code Hub metadata wants: the region or variant dropped ("sv-SE" -> "sv",
    "rm-sursilv" -> "rm"); codes without a two-letter form stay ("cnh", "hsb")."""
    return code.split("-")[0]


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
