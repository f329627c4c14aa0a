import numpy as np
import pytest
import torch

from modeling_mlpl.augment import crop_transcript, random_crop, spec_augment
from modeling_mlpl.tokenization_mlpl import transcript_characters

from helpers_training import tone_sentence


def test_spec_augment_masks_stay_within_the_paper_limits():
    features = torch.rand(3, 400, 80, generator=torch.Generator().manual_seed(0)) + 1.0  # no natural zeros
    lengths = torch.tensor([400, 200, 60])
    out = spec_augment(features, lengths, generator=torch.Generator().manual_seed(0))
    for b, length in enumerate(lengths.tolist()):
        zero = out[b, :length] == 0
        masked_bins = zero.all(0).sum().item()  # frequency masks span every frame
        masked_frames = zero.all(1).sum().item()
        assert masked_bins <= 2 * 30
        assert masked_frames <= 2 * min(50, int(0.1 * length))
        assert torch.equal(out[b, length:], features[b, length:])  # padding untouched
    assert (out == 0).any()
    assert torch.equal(features.min() > 0, torch.tensor(True))  # input not modified in place


def test_spec_augment_is_reproducible_with_a_generator():
    features = torch.randn(2, 100, 80)
    lengths = torch.tensor([100, 80])
    a = spec_augment(features, lengths, generator=torch.Generator().manual_seed(3))
    b = spec_augment(features, lengths, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_crop_keeps_exactly_the_characters_aligned_inside_the_window():
    text = "abc de fgh"
    _, times = tone_sentence(text)
    chars = transcript_characters(text)
    start, end = times[2] - 0.01, times[7] + 0.01  # 'c' ... 'f' (chars 2..7 = c | d e | f)
    assert crop_transcript(text, times, start, end) == "c de f"
    # Edge delimiters are dropped, inner ones become spaces.
    assert crop_transcript(text, times, times[3] - 0.01, times[6] + 0.01) == "de"
    assert len(chars) == len(times)


def test_crop_rejects_alignments_of_the_wrong_length():
    with pytest.raises(ValueError, match="token_times has 2 entries"):
        crop_transcript("abc", [0.1, 0.2], 0.0, 1.0)


def test_random_crop_only_applies_to_long_aligned_segments():
    rng = np.random.default_rng(0)
    assert random_crop("abc", None, 30.0, 10.0, rng) is None  # labelled: no alignment, never cropped
    assert random_crop("abc", [0.1, 0.2, 0.3], 8.0, 10.0, rng) is None  # already short enough
    text = "ab cd ef gh"
    _, times = tone_sentence(text)
    crop = random_crop(text, times, 1.2, 0.5, rng)
    assert crop is not None and crop.duration_s == 0.5 and 0 <= crop.start_s <= 0.7
    expected = crop_transcript(text, times, crop.start_s, crop.start_s + 0.5)
    assert crop.text == expected and 0 < len(expected) < len(text)
