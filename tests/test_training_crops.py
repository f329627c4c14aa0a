"""Random crops of long aligned recordings are cut from their whole recording's cached log-mel frames:
the same window and text as decoding the crop, features equal to the extractor's on the crop's audio."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modeling_mlpl import MLPLTokenizer
from modeling_mlpl.audio import load_audio, load_segment
from modeling_mlpl.feature_extraction_mlpl import MLPLFeatureExtractor
from modeling_mlpl.training import resolve_data, train_data as training_data
from modeling_mlpl.training.trainer import build_training_set, load_sources

from helpers_training import tiny_training_args, write_pl_dataset

KEY = (0, 0, 3, 1)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("crops") / "pl")
    rows = write_pl_dataset(path, n=2, words=10, seed=5)
    _, d, _ = tiny_training_args("unused", train_data=[f"disk:{path}"])
    return rows, *load_sources(resolve_data(d).train, d)


def _training_set(recordings, feature_cache_gb: float, features: bool = True):
    rows, datasets, names = recordings
    tokenizer = MLPLTokenizer.build_from_texts([r["text"] for r in rows])
    return build_training_set(datasets, names, tokenizer, ["pt"], None, crop_seconds=1.0, seed=0,
                              feature_extractor=MLPLFeatureExtractor() if features else None,
                              feature_cache_gb=feature_cache_gb)  # fmt: skip


def test_crop_features_are_the_extractors_features_of_the_crops_audio(recordings):
    rows = recordings[0]
    example = _training_set(recordings, feature_cache_gb=1.0)[(0, True, KEY)]
    start = float(np.random.default_rng(KEY).uniform(0.0, rows[0]["duration"] - 1.0))
    first_sample = int(round(start * 100)) * 160  # the crop starts on a 10 ms frame
    audio = load_audio(rows[0]["audio"]["path"])[first_sample : first_sample + 16000]
    expected = MLPLFeatureExtractor()(audio, sampling_rate=16000, return_tensors="pt")["input_features"][0]
    assert example["features"].shape == expected.shape
    torch.testing.assert_close(example["features"], expected, atol=1e-4, rtol=0)
    assert example["seconds"] == 1.0


def test_crop_from_cached_frames_has_the_decoded_crops_text(recordings):
    cached = _training_set(recordings, feature_cache_gb=1.0)[(1, True, KEY)]
    decoded = _training_set(recordings, feature_cache_gb=0.0, features=False)[(1, True, KEY)]
    assert cached["text"] == decoded["text"] and cached["id"] == decoded["id"]
    assert 3 <= len(cached["text"])


def test_recording_is_decoded_once_for_all_its_crops(recordings, monkeypatch):
    calls = []
    monkeypatch.setattr(training_data, "load_segment", lambda *a, **k: calls.append(1) or load_segment(*a, **k))
    train_set = _training_set(recordings, feature_cache_gb=1.0)
    crops = [train_set[(0, True, (0, 0, n, 0))]["features"] for n in range(4)]
    assert len(calls) == 1 and len(train_set.frames) == 1
    assert not all(torch.equal(crops[0], c) for c in crops[1:])  # different windows, not one cached crop


def test_crops_are_decoded_one_by_one_when_the_frames_exceed_the_cache(recordings, monkeypatch):
    calls = []
    monkeypatch.setattr(training_data, "load_segment", lambda *a: calls.append(a) or load_segment(*a))
    train_set = _training_set(recordings, feature_cache_gb=1e-6)  # ~1 KiB: less than one recording
    example = train_set[(0, True, KEY)]
    assert not train_set.frames and len(calls) == 1 and calls[0][2] == 1.0  # (audio, offset, duration)
    assert example["features"].shape[0] == 98  # 1 s of audio: 1 + (16000 - 400) // 160 frames
