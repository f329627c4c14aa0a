"""Training-time augmentation of the paper: SpecAugment and the 10 s random-crop warm-up.

SpecAugment (docs/paper.md "Training"): from update N on, 2 frequency masks of <= 30 mel bins and 2 time
masks of <= 50 frames, each time mask also <= 10 % of the utterance. Masked values are set to 0,
which is the per-utterance mean after the feature extractor's normalisation.

Random cropping (docs/paper.md "Cropping warm-up"): during the first updates, long recordings are
cut to a random 10 s window so that the model also learns to emit characters on audio it only sees
part of. For a pseudo-labelled recording the PL's CTC alignment (`token_times`: one time in seconds
per target character, `|` word delimiters included, measured from the segment start) says which
characters fall inside the window. Labelled utterances have no alignment, so they are never cropped:
those shorter than the crop need no crop, and cutting a longer one would leave its transcript wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .tokenization_mlpl import WORD_DELIMITER, transcript_characters


def spec_augment(
    features: torch.Tensor,
    lengths: torch.Tensor,
    num_freq_masks: int = 2,
    freq_mask_width: int = 30,
    num_time_masks: int = 2,
    time_mask_width: int = 50,
    time_mask_max_ratio: float = 0.1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Masked copy of `features` (B, T, F); `lengths` (B,) are the valid frames per utterance.

    Each mask width is drawn uniformly from [0, max]; a time mask's max is
    min(`time_mask_width`, `time_mask_max_ratio` * length), so short utterances are not wiped out.
    A dedicated `generator` keeps the masks reproducible (and independent of dropout's RNG).
    """
    B, T, F = features.shape
    out = features.clone()
    for b in range(B):
        length = int(lengths[b])
        for _ in range(num_freq_masks):
            width = int(torch.randint(0, min(freq_mask_width, F) + 1, (1,), generator=generator))
            start = int(torch.randint(0, F - width + 1, (1,), generator=generator))
            out[b, :length, start : start + width] = 0.0
        max_time = min(time_mask_width, int(time_mask_max_ratio * length))
        for _ in range(num_time_masks):
            width = int(torch.randint(0, max_time + 1, (1,), generator=generator))
            start = int(torch.randint(0, max(length - width, 0) + 1, (1,), generator=generator))
            out[b, start : start + width, :] = 0.0
    return out


@dataclass
class Crop:
    """A window [start_s, start_s + duration_s) of a segment and the transcript inside it."""

    start_s: float
    duration_s: float
    text: str


def crop_transcript(text: str, token_times: Sequence[float], start_s: float, end_s: float) -> str:
    """The part of `text` whose aligned characters lie in [start_s, end_s).

    `token_times[i]` is the time of the i-th CTC target of `text` (see
    :func:`transcript_characters`: NFC characters with `|` between words). Word delimiters at the
    window's edges are dropped; the result uses spaces between words, like any transcript.
    """
    chars = transcript_characters(text)
    if len(chars) != len(token_times):
        raise ValueError(
            f"token_times has {len(token_times)} entries but the transcript has {len(chars)} targets "
            f"(characters with '{WORD_DELIMITER}' between words)"
        )
    kept = [c for c, t in zip(chars, token_times) if start_s <= t < end_s]
    return "".join(kept).strip(WORD_DELIMITER).replace(WORD_DELIMITER, " ")


def random_crop(
    text: str,
    token_times: Sequence[float] | None,
    duration_s: float,
    crop_seconds: float,
    rng: np.random.Generator,
) -> Crop | None:
    """A random `crop_seconds` window of an aligned segment, or None when no crop applies.

    No crop for segments not longer than the window, and none without an alignment (labelled
    utterances: which characters are inside a window is unknown).
    """
    if token_times is None or (len(token_times) == 0 and text) or duration_s <= crop_seconds:
        return None
    start = float(rng.uniform(0.0, duration_s - crop_seconds))
    return Crop(start, crop_seconds, crop_transcript(text, token_times, start, start + crop_seconds))


__all__ = ["spec_augment", "crop_transcript", "random_crop", "Crop"]
