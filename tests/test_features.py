import numpy as np
import pytest
import torch
from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

from modeling_mlpl import MLPLFeatureExtractor
from modeling_mlpl.feature_extraction_mlpl import num_feature_frames

from conftest import make_tone


def reference_mfsc(waveform: np.ndarray) -> np.ndarray:
    """The published port's features: transformers' numpy spectrogram with flashlight MFSC settings."""
    mel = spectrogram(
        waveform * 32768.0,
        window=window_function(400, "hamming", periodic=False),
        frame_length=400,
        hop_length=160,
        fft_length=512,
        center=False,
        preemphasis=0.97,
        mel_filters=mel_filter_bank(257, 80, 0.0, 8000.0, 16000),
        mel_floor=1.0,
        log_mel="log",
    ).T  # (T, 80)
    return (mel - mel.mean(0)) / mel.std(0)


@pytest.mark.parametrize("seconds", [0.5, 1.37])
def test_features_match_the_reference_implementation(seconds):
    rng = np.random.default_rng(0)
    audio = make_tone(seconds) + 0.05 * rng.standard_normal(int(seconds * 16000)).astype(np.float32)
    ours = MLPLFeatureExtractor()(audio, sampling_rate=16000, return_tensors="np")["input_features"][0]
    ref = reference_mfsc(audio.astype(np.float64))
    assert ours.shape == ref.shape == (num_feature_frames(len(audio)), 80)
    assert np.abs(ours - ref).max() < 1e-4


def test_batch_is_padded_with_zeros_and_masked():
    fe = MLPLFeatureExtractor()
    short, long = make_tone(0.5), make_tone(1.0, seed=1)
    batch = fe([short, long], sampling_rate=16000, return_tensors="pt")
    alone = fe(short, sampling_rate=16000, return_tensors="pt")["input_features"][0]
    n = alone.shape[0]
    assert batch["attention_mask"].sum(-1).tolist() == [n, num_feature_frames(16000)]
    assert torch.allclose(batch["input_features"][0, :n], alone, atol=1e-5)
    assert batch["input_features"][0, n:].abs().max() == 0


def test_features_are_normalised_per_utterance():
    feats = MLPLFeatureExtractor()(make_tone(2.0), sampling_rate=16000, return_tensors="pt")["input_features"][0]
    assert torch.allclose(feats.mean(0), torch.zeros(80), atol=1e-4)
    assert torch.allclose(feats.std(0, unbiased=False), torch.ones(80), atol=1e-3)


def test_inputs_accept_lists_tensors_and_2d_batches():
    fe = MLPLFeatureExtractor()
    audio = make_tone(0.5)
    expected = fe(audio, sampling_rate=16000, return_tensors="pt")["input_features"]
    for variant in (audio.tolist(), torch.from_numpy(audio), np.stack([audio, audio])):
        out = fe(variant, sampling_rate=16000, return_tensors="pt")["input_features"]
        assert torch.allclose(out[:1], expected, atol=1e-5)


def test_silence_gives_finite_features():
    feats = MLPLFeatureExtractor()(np.zeros(8000, np.float32), sampling_rate=16000, return_tensors="pt")
    assert torch.isfinite(feats["input_features"]).all()


@pytest.mark.parametrize(
    "audio, kwargs, message",
    [
        (make_tone(0.5), {"sampling_rate": 8000}, "sampled at 8000 Hz, but this model needs 16000 Hz"),
        (np.zeros(0, np.float32), {"sampling_rate": 16000}, "empty"),
        ([np.zeros((2, 800), np.float32)], {"sampling_rate": 16000}, "only mono audio"),
        (np.zeros((1, 2, 800), np.float32), {"sampling_rate": 16000}, "Expected mono audio"),
        (np.full(800, np.nan, np.float32), {"sampling_rate": 16000}, "NaN"),
    ],
)
def test_bad_audio_is_rejected_with_a_clear_error(audio, kwargs, message):
    with pytest.raises(ValueError, match=message):
        MLPLFeatureExtractor()(audio, **kwargs)


def test_audio_shorter_than_one_frame_still_gives_one_frame():
    out = MLPLFeatureExtractor()(make_tone(0.01), sampling_rate=16000, return_tensors="pt")
    assert out["input_features"].shape == (1, 1, 80)
