"""Small hand-made vocabularies, LM corpora and CTC logits for the LM/decoding tests."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from simulated_logits import simulate_ctc_logits  # noqa: E402  (one copy, shared with the benchmarks)

SPECIALS = ["<pad>", "<unk>", "|"]

# A corpus where "cat" follows "the" and "hat" never occurs: the LM must prefer "the cat sat".
TOY_LM_SENTENCES = [
    "the cat sat on the mat",
    "the cat sat on the log",
    "a cat sat on a mat",
    "the dog sat on the mat",
    "the cat saw the dog",
    "a dog saw the cat",
    "the dog ate the fish",
    "the cat ate the fish",
] * 3


def char_vocab(texts: Iterable[str]) -> list[str]:
    """MLPLTokenizer's layout: <pad> (blank, id 0), <unk>, |, then characters in code-point order."""
    chars = sorted({c for t in texts for c in t if c != " "})
    return SPECIALS + chars


def frame_targets(text: str, frames_per_char: int = 2) -> list[str]:
    """A plausible CTC alignment: each character for `frames_per_char` frames, blank after it."""
    frames = ["<pad>"]
    for ch in text:
        frames += ["|" if ch == " " else ch] * frames_per_char + ["<pad>"]
    return frames


def peaky_logits(
    text: str,
    vocab: list[str],
    confusions: Mapping[int, tuple[str, float]] | None = None,
    peak: float = 0.9,
    frames_per_char: int = 2,
) -> np.ndarray:
    """(T, V) log-probs that spell `text`; `confusions[i] = (other, p)` makes character i of the
    text read as `other` with probability p (the true character keeps 1 - p - floor)."""
    confusions = dict(confusions or {})
    index = {tok: i for i, tok in enumerate(vocab)}
    frames = frame_targets(text, frames_per_char)
    probs = np.full((len(frames), len(vocab)), (1.0 - peak) / (len(vocab) - 1))  # (T, V)
    char_pos, prev = -1, "<pad>"
    for t, token in enumerate(frames):
        if token != "<pad>" and prev == "<pad>":
            char_pos += 1  # frame_targets puts a blank after every character
        prev = token
        probs[t, index[token]] = peak
        if token != "<pad>" and char_pos in confusions:
            other, p = confusions[char_pos]
            probs[t, index[token]] = peak - p
            probs[t, index[other]] = p
    probs /= probs.sum(axis=1, keepdims=True)
    return np.log(probs).astype(np.float32)


def build_toy_lm(directory, sentences: Iterable[str] = TOY_LM_SENTENCES, order: int = 3):
    """A real KenLM model (lmplz + build_binary) of a toy corpus; takes ~0.1 s."""
    from modeling_mlpl.decoding.ngram_lm import build_lm

    return build_lm(list(sentences), directory, order=order, memory="50M")


def simulated_dev_set(sentences: list[str], vocab: list[str], seed: int = 0, confusion_rate: float = 0.15):
    """(logits_list, references): fake acoustic-model outputs with character confusions."""
    rng = np.random.default_rng(seed)
    return [simulate_ctc_logits(s, vocab, rng, confusion_rate=confusion_rate) for s in sentences], sentences
