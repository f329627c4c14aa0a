"""Simulated CTC logits for benchmarks and tests (benchmarks/bench_decode.py, tests/helpers_lm.py).

Not part of the library: real decoding runs on a trained model's logits.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["simulate_ctc_logits"]


def simulate_ctc_logits(
    text: str,
    vocab: Sequence[str],
    rng: np.random.Generator,
    confusion_rate: float = 0.1,
    peak: float = 6.0,
    noise: float = 1.0,
    frames_per_char: tuple[int, int] = (1, 3),
    word_delimiter: str = "|",
    blank_id: int = 0,
) -> np.ndarray:
    """(T, V) logits of a fake acoustic model that "heard" ``text``.

    Each character lasts 1-3 frames followed by 0-2 blank frames (a blank is forced between
    repeated characters, as CTC requires); the spoken token's logit is ``peak`` above Gaussian
    noise, and with probability ``confusion_rate`` a random other character outscores it, so
    greedy decoding makes character errors that an LM can repair. ~10 frames per word at 30 ms
    per frame is close to the real model's frame rate on read speech.
    """
    index = {tok: i for i, tok in enumerate(vocab)}
    chars = [i for i, tok in enumerate(vocab) if len(tok) == 1 and tok != word_delimiter]
    tokens = [index.get(word_delimiter if c == " " else c, index.get("<unk>", blank_id)) for c in text]
    frames: list[tuple[int, int | None]] = [(blank_id, None)]
    for k, token in enumerate(tokens):
        if k and token == tokens[k - 1] and frames[-1][0] != blank_id:
            frames.append((blank_id, None))
        rival = None
        if token != index.get(word_delimiter) and rng.random() < confusion_rate:
            rival = int(rng.choice([c for c in chars if c != token]))
        frames += [(token, rival)] * int(rng.integers(frames_per_char[0], frames_per_char[1] + 1))
        frames += [(blank_id, None)] * int(rng.integers(0, 3))
    logits = rng.normal(0.0, noise, size=(len(frames), len(vocab))).astype(np.float32)  # (T, V)
    for t, (token, rival) in enumerate(frames):
        logits[t, token] += peak
        if rival is not None:
            logits[t, rival] += peak + float(rng.uniform(0.2, 1.5))
    return logits
