"""Pseudo-label alignment and scoring of long recordings: bounded memory, the same results."""

from __future__ import annotations

import tracemalloc

import numpy as np

from modeling_mlpl.pseudo_labeling import alignment


def _recording(frames: int, label_length: int, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """(T, V) float32 log-probs and a label with repeated neighbours (blank 0, tokens 1..3)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(frames, 4))
    log_probs = (logits - np.logaddexp.reduce(logits, -1, keepdims=True)).astype(np.float32)
    return log_probs, rng.integers(1, 4, size=label_length).tolist()


def test_segmented_viterbi_gives_the_whole_table_alignment():
    log_probs, tokens = _recording(400, 120)
    assert alignment.forced_align(log_probs, tokens, max_cells=1) == alignment.forced_align(log_probs, tokens)


def test_streaming_log_likelihood_matches_torch_ctc_loss():
    log_probs, tokens = _recording(400, 120, seed=1)
    dense = alignment.ctc_log_likelihood(log_probs, tokens)
    streamed = alignment.ctc_log_likelihood(log_probs, tokens, max_cells=1)
    assert np.isclose(streamed, dense, rtol=1e-5) and streamed != -np.inf


def test_long_recording_alignment_needs_less_memory_than_one_byte_per_trellis_cell(monkeypatch):
    monkeypatch.setattr(alignment, "DENSE_CELLS", 10_000, raising=False)  # the long-recording path
    log_probs, tokens = _recording(1500, 500, seed=2)
    cells = len(log_probs) * (2 * len(tokens) + 1)
    tracemalloc.start()
    try:
        spans = alignment.forced_align(log_probs, tokens)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(spans) == len(tokens)
    assert peak < cells / 4, f"{peak} bytes traced for {cells} trellis cells"
