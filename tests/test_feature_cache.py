"""The on-disk log-mel cache (modeling_mlpl.feature_cache): hits, misses, invalidation, corrupt entries,
concurrent writers, and the training set reading its features from it."""

import multiprocessing
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from modeling_mlpl import MLPLFeatureExtractor, feature_extraction_mlpl
from modeling_mlpl.feature_cache import FEATURE_CACHE_ENV, FeatureCache
from modeling_mlpl.feature_extraction_mlpl import log_mel_spectrogram
from modeling_mlpl.audio import load_audio
from modeling_mlpl.data.common_voice import load_common_voice
from modeling_mlpl.training.train_data import TrainingSet

from helpers_training import SR, tone_sentence, write_tone_cv


@pytest.fixture
def wav(tmp_path):
    path = str(tmp_path / "utt.wav")
    sf.write(path, tone_sentence("abc de", seed=1)[0], SR)
    return path


def compute_from(path):
    """The work the cache saves, counted: decode + log-mel of the whole file."""
    calls = []

    def compute():
        calls.append(1)
        audio = torch.from_numpy(load_audio(path))
        return log_mel_spectrogram(audio[None])[0].float(), audio.numel()

    return compute, calls


def test_a_second_read_of_the_same_segment_is_a_hit_that_computes_nothing(tmp_path, wav):
    compute, calls = compute_from(wav)
    first = FeatureCache(str(tmp_path / "cache")).frames(wav, None, None, compute)
    later = FeatureCache(str(tmp_path / "cache"))  # another run: a new process, the same folder
    again = later.frames(wav, None, None, compute)
    assert len(calls) == 1 and later.stats == {"hits": 1}
    assert torch.equal(first[0], again[0]) and first[1] == again[1] and again[0].dtype == torch.float32


def test_another_segment_of_the_same_file_is_a_miss(tmp_path, wav):
    cache = FeatureCache(str(tmp_path / "cache"))
    assert cache.key(wav, None, None) != cache.key(wav, 0.1, 0.5)
    compute, calls = compute_from(wav)
    cache.frames(wav, None, None, compute)
    cache.frames(wav, 0.1, 0.5, compute)
    assert len(calls) == 2 and cache.stats["misses"] == 2


def test_a_changed_feature_setting_misses(tmp_path, wav, monkeypatch):
    compute, calls = compute_from(wav)
    FeatureCache(str(tmp_path / "cache")).frames(wav, None, None, compute)
    monkeypatch.setattr(feature_extraction_mlpl, "PREEMPHASIS", 0.95)
    changed = FeatureCache(str(tmp_path / "cache"))
    changed.frames(wav, None, None, compute)
    assert len(calls) == 2 and changed.stats["misses"] == 1


def test_rewritten_audio_misses_and_gets_its_own_frames(tmp_path, wav):
    cache = FeatureCache(str(tmp_path / "cache"))
    compute, _ = compute_from(wav)
    old, _ = cache.frames(wav, None, None, compute)
    sf.write(wav, tone_sentence("hgf", seed=2)[0], SR)  # same path, new content
    new, _ = cache.frames(wav, None, None, compute)
    assert cache.stats["misses"] == 2 and old.shape != new.shape


def test_a_corrupt_entry_is_recomputed_rewritten_and_counted(tmp_path, wav):
    cache = FeatureCache(str(tmp_path / "cache"))
    compute, calls = compute_from(wav)
    good, _ = cache.frames(wav, None, None, compute)
    path = cache.path(cache.key(wav, None, None))
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)  # a write cut short (a kill, a full disk)
    again, _ = cache.frames(wav, None, None, compute)
    assert len(calls) == 2 and cache.stats["corrupt"] == 1 and torch.equal(good, again)
    assert FeatureCache(str(tmp_path / "cache")).get(cache.key(wav, None, None)) is not None  # rewritten whole


def _write_many(root: str, key: str, seed: int, barrier) -> None:
    frames = torch.from_numpy(np.random.default_rng(seed).standard_normal((301, 80)).astype(np.float32))
    cache = FeatureCache(root)
    barrier.wait()
    for _ in range(30):
        cache.put(key, frames, 48400)  # 301 frames of 400 samples every 160


def test_two_processes_writing_the_same_entry_both_succeed_and_leave_one_valid_entry(tmp_path):
    root, key = str(tmp_path / "cache"), "ab" + "0" * 38
    context = multiprocessing.get_context("fork")  # no re-import of torch per process
    barrier = context.Barrier(2)
    workers = [context.Process(target=_write_many, args=(root, key, seed, barrier)) for seed in (0, 1)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert [w.exitcode for w in workers] == [0, 0]
    frames, samples = FeatureCache(root).get(key)
    candidates = [np.random.default_rng(s).standard_normal((301, 80)).astype(np.float32) for s in (0, 1)]
    assert samples == 48400 and any(np.array_equal(frames.numpy(), c) for c in candidates)
    assert os.listdir(os.path.dirname(FeatureCache(root).path(key))) == [f"{key}.npz"]  # no temporary file left


def test_the_folder_defaults_to_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(FEATURE_CACHE_ENV, raising=False)
    assert FeatureCache.from_setting(None) is None
    monkeypatch.setenv(FEATURE_CACHE_ENV, str(tmp_path / "env"))
    assert FeatureCache.from_setting(None).root == str(tmp_path / "env")
    assert FeatureCache.from_setting(str(tmp_path / "flag")).root == str(tmp_path / "flag")


def test_training_examples_from_the_cache_match_the_feature_extractors(tmp_path):
    ds = load_common_voice(write_tone_cv(str(tmp_path / "cv"), languages=("pt",), n_train=3, n_dev=1), ["pt"])
    entries = [(0, i) for i in range(len(ds))]

    def training_set(cache):
        return TrainingSet([ds], entries, {"pt": 0}, 10.0, 0, [], MLPLFeatureExtractor(), 0.0, cache)

    direct = [training_set(None)[(i, False, ())] for i in range(len(ds))]
    cold = FeatureCache(str(tmp_path / "cache"))
    from_cold = [training_set(cold)[(i, False, ())] for i in range(len(ds))]
    warm = FeatureCache(str(tmp_path / "cache"))
    from_warm = [training_set(warm)[(i, False, ())] for i in range(len(ds))]
    assert cold.stats["writes"] == len(ds) and warm.stats == {"hits": len(ds)}
    for a, b, c in zip(direct, from_cold, from_warm):
        assert (a["id"], a["text"], a["seconds"]) == (c["id"], c["text"], c["seconds"])
        assert torch.equal(b["features"], c["features"])
        assert (a["features"] - c["features"]).abs().max() < 1e-4  # float32 frames: see docs/feature_cache.md
