"""Fixtures for the training tests: a learnable "tone alphabet" corpus in Common Voice layout and a
pseudo-label dataset with CTC alignments.

Each character is a short tone of its own frequency and each space a short silence, so a tiny model
can learn the mapping in tens of updates (loss and CER really go down), and the time of every
character is known exactly (ground truth for the crop tests).
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import soundfile as sf
from datasets import Dataset, DatasetInfo, Features
from datasets.table import InMemoryTable

from modeling_mlpl.pseudo_labeling.merge import PL_FEATURES as MERGE_FEATURES

SR = 16000
CHAR_SECONDS = 0.09
SPACE_SECONDS = 0.12
# Per language: the characters its sentences use (overlapping, so LID has something to learn).
LANGUAGE_CHARS = {"en": "abcde", "de": "cdefg", "pt": "efgha"}
ALPHABET = "abcdefgh"


def char_frequency(char: str) -> float:
    return 400.0 + 150.0 * ALPHABET.index(char)


def tone_sentence(text: str, seed: int = 0) -> tuple[np.ndarray, list[float]]:
    """Audio of `text` and the time (s) of each CTC target (characters, '|' for spaces)."""
    rng = np.random.default_rng(seed)
    pieces, times, t = [np.zeros(int(0.05 * SR), np.float32)], [], 0.05
    for char in text:
        seconds = SPACE_SECONDS if char == " " else CHAR_SECONDS
        n = int(seconds * SR)
        if char == " ":
            piece = np.zeros(n, np.float32)
        else:
            k = np.arange(n) / SR
            piece = (0.3 * np.sin(2 * np.pi * char_frequency(char) * k) * np.hanning(n)).astype(np.float32)
        pieces.append(piece)
        times.append(t + seconds / 2)
        t += seconds
    pieces.append(np.zeros(int(0.05 * SR), np.float32))
    audio = np.concatenate(pieces)
    audio += 0.003 * rng.standard_normal(audio.size).astype(np.float32)
    return audio, times


def random_sentence(language: str, rng: np.random.Generator, words: tuple[int, int] = (2, 4)) -> str:
    chars = LANGUAGE_CHARS[language]
    n_words = int(rng.integers(words[0], words[1] + 1))
    return " ".join("".join(rng.choice(list(chars), size=int(rng.integers(2, 5)))) for _ in range(n_words))


def write_tone_cv(root: str, languages=("en", "de", "pt"), n_train: int = 8, n_dev: int = 3, seed: int = 0) -> str:
    """Common Voice layout (<root>/<lang>/clips/*.wav, train.tsv, dev.tsv) of tone sentences."""
    rng = np.random.default_rng(seed)
    for lang in languages:
        clips = os.path.join(root, lang, "clips")
        os.makedirs(clips, exist_ok=True)
        for split, n in (("train", n_train), ("dev", n_dev)):
            lines = ["client_id\tpath\tsentence"]
            for i in range(n):
                text = random_sentence(lang, rng)
                name = f"{lang}_{split}_{i}.wav"
                audio, _ = tone_sentence(text, seed=int(rng.integers(1 << 30)))
                sf.write(os.path.join(clips, name), audio, SR)
                lines.append(f"c{i}\t{name}\t{text}")
            with open(os.path.join(root, lang, f"{split}.tsv"), "w") as f:
                f.write("\n".join(lines) + "\n")
    return root


# The PL contract's columns, as the pseudo-labeling merge writes them.
PL_FEATURES = Features({k: MERGE_FEATURES[k] for k in
                        ("id", "audio", "offset", "duration", "language", "text", "confidence", "token_times")})


def write_pl_dataset(path: str, language: str = "pt", n: int = 3, words: int = 12, seed: int = 1,
                     corrupt: tuple[int, ...] = ()) -> list[dict]:
    """A saved pseudo-label dataset of tone recordings with exact alignments (a few seconds long: tests
    use a crop shorter than that); returns its rows (audio as paths). Rows in `corrupt` get garbage
    instead of audio (save_to_disk embeds the files, so they must be bad before saving)."""
    rng = np.random.default_rng(seed)
    audio_dir = path + "_audio"
    os.makedirs(audio_dir, exist_ok=True)
    rows = []
    for i in range(n):
        text = random_sentence(language, rng, words=(words, words))
        audio, times = tone_sentence(text, seed=i)
        file = os.path.join(audio_dir, f"rec{i}.wav")
        sf.write(file, audio, SR)
        if i in corrupt:
            with open(file, "wb") as f:
                f.write(b"not audio at all" * 100)
        rows.append({"id": f"{language}/rec{i}", "audio": {"bytes": None, "path": file}, "offset": 0.0,
                     "duration": audio.size / SR, "language": language, "text": text, "confidence": -1.0,
                     "token_times": times})  # fmt: skip
    table = pa.Table.from_pylist(rows, schema=PL_FEATURES.arrow_schema)
    Dataset(InMemoryTable(table), info=DatasetInfo(features=PL_FEATURES)).save_to_disk(path)
    return rows


def tiny_training_args(output_dir: str, **overrides):
    """Argument dataclasses for a few-second tiny run on the tone corpus (AdamW: Adagrad at the paper's
    schedule needs thousands of updates)."""
    from modeling_mlpl.training import DataArguments, MLPLTrainingArguments, ModelArguments

    model = dict(preset="tiny", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, conv_dropout=0.1, layerdrop=0.1)
    data = dict(max_eval_samples_per_language=3)
    train = dict(output_dir=output_dir, max_steps=20, max_batch_seconds=6.0, optimizer="adamw", learning_rate=3e-3,
                 warmup_steps=3, max_grad_norm=1.0, specaugment_start_step=-1, crop_steps=0, logging_steps=5,
                 eval_steps=0, save_steps=1000, num_threads=1, tensorboard=False)  # fmt: skip
    for key, value in overrides.items():
        target = model if key in ModelArguments.__dataclass_fields__ else data if key in DataArguments.__dataclass_fields__ else train
        target[key] = value
    return ModelArguments(**model), DataArguments(**data), MLPLTrainingArguments(**train)
