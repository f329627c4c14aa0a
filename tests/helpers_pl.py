"""Fixtures for the pseudo-labeling and long-form tests: audio folders, datasets on disk, hand-set LID."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from conftest import make_tone
from modeling_mlpl.audio import write_audio
from modeling_mlpl.data.common import make_row, rows_to_dataset
from modeling_mlpl.pseudo_labeling.shards import LABEL_PREFIX
from modeling_mlpl.resumable import shard_path
from modeling_mlpl.tokenization_mlpl import transcript_characters

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "run_scripts" / "pseudo_label.py"

# Durations (s) of the generated recordings: short clips plus two that need several 10 s windows.
DURATIONS = [1.0, 2.5, 4.0, 1.5, 3.0, 6.0, 2.0, 14.0, 0.5, 3.5, 22.0, 5.0]


def varying_audio(seconds: float, seed: int = 0, piece_s: float = 0.5) -> np.ndarray:
    """Tones whose pitch changes every `piece_s`: the (random) model's output changes over time,
    so a frame misplaced by windowing shows up as a different argmax."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * 16000))
    pieces = [make_tone(piece_s, frequency=float(f), seed=seed + i)
              for i, f in enumerate(rng.uniform(100, 700, int(np.ceil(seconds / piece_s))))]  # fmt: skip
    return np.concatenate(pieces)[:n]


def write_audio_folder(root: str | os.PathLike, durations=DURATIONS, prefix: str = "rec") -> list[str]:
    """WAV files `root/<prefix>NN.wav`; returns their ids (as load_audio_folder names them)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    ids = []
    for i, d in enumerate(durations):
        write_audio(root / f"{prefix}{i:02d}.wav", varying_audio(d, seed=i))
        ids.append(f"{prefix}{i:02d}")
    return ids


def disk_dataset(folder: str | os.PathLike, language: str = "de", bad: dict[str, bytes] | None = None):
    """A `datasets` dataset (the loaders' schema) over the folder's WAVs, plus rows for `bad` files
    (name -> bytes written as-is; b"" = empty file, None = missing) whose durations are given, so that
    nothing reads their header before the labeler decodes them."""
    folder = Path(folder)
    rows = []
    for path in sorted(folder.glob("*.wav")):
        rows.append(make_row(path.stem, str(path), "", language, sf.info(str(path)).duration))
    for name, content in (bad or {}).items():
        path = folder / name
        if content is not None:
            path.write_bytes(content)
        rows.append(make_row(Path(name).stem, str(path), "", language, 3.0))
    return rows_to_dataset(rows)


def pooled_hidden(model, audio: np.ndarray, feature_extractor) -> torch.Tensor:
    """Mean encoder state over frames: what the LID head sees."""
    inputs = feature_extractor(audio, return_tensors="pt")
    with torch.no_grad():
        hidden = model.mlpl(**inputs).last_hidden_state  # (1, T, d)
    return hidden.mean(1)[0]


def set_lid_head(model, directions: dict[str, torch.Tensor], scale: float = 50.0) -> None:
    """Hand-set LID head: language L scores scale * (h . directions[L]); others get a large negative bias."""
    with torch.no_grad():
        model.lid_head.weight.zero_()
        model.lid_head.bias.fill_(-1e4)
        for lang, direction in directions.items():
            i = model.config.lang2id[lang]
            model.lid_head.weight[i] = scale * direction / direction.norm()
            model.lid_head.bias[i] = 0.0


def run_cli(args: list[str], env: dict | None = None, timeout: float = 300, launcher: list[str] | None = None):
    """Run run_scripts/pseudo_label.py in a subprocess (1 thread), return the CompletedProcess."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false", **(env or {})}  # fmt: skip
    cmd = (launcher or [sys.executable]) + [str(SCRIPT), *args, "--threads", "1"]
    return subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout)


def write_shard(directory: Path, records: list[dict], rank: int = 0) -> None:
    """`records` as the labeler writes them: one JSON line each in `directory`'s shard of `rank`."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(shard_path(directory, rank, LABEL_PREFIX), "w") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def pl_record(uid: str, text: str, confidence: float, language: str = "de", duration: float = 2.0, **extra) -> dict:
    """A shard row of an MLPL (CTC) teacher: one time per CTC target, no words; `extra` adds or
    replaces fields (an external teacher's text_raw, teacher, avg_logprob, ...)."""
    n = len(transcript_characters(text))
    row = {"id": uid, "audio": f"/a/{uid}.wav", "offset": 0.0, "duration": duration, "language": language,
           "text": text, "token_times": [0.03 * i for i in range(n)], "words": [], "confidence": confidence,
           "path_score": np.log(confidence), "ctc_score": np.log(confidence), "num_frames": 60,
           "lid_top_k": [], "language_source": "given", "model": "m", "decoder": "greedy"}  # fmt: skip
    return {**row, **extra}
