"""Dev-set evaluation during training: per-language greedy CER/WER and LID accuracy.

Dev sets are small (a few hundred utterances per language), so their audio is decoded once and
kept in memory; evaluation runs on the main process only (other ranks wait), which keeps it free
of collective operations and identical for any number of processes.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import numpy as np
import torch
from datasets import Dataset

from ..audio import SAMPLING_RATE, AudioDecodeError, load_segment
from ..data.sampler import LengthBucketBatchSampler
from ..metrics import per_language_metrics
from ..text import normalize_transcript

logger = logging.getLogger(__name__)


class DevSet:
    """Dev utterances (audio decoded on first use): ids, waveforms, texts, languages."""

    def __init__(self, datasets: list[Dataset], max_per_language: int | None = None):
        self.rows: list[dict] = []
        counts: dict[str, int] = defaultdict(int)
        for ds in datasets:
            offsets = ds["offset"] if "offset" in ds.column_names else [None] * len(ds)
            for i, (uid, text, lang, dur, off) in enumerate(
                zip(ds["id"], ds["text"], ds["language"], ds["duration"], offsets)
            ):
                if max_per_language is not None and counts[lang] >= max_per_language:
                    continue
                if not text or dur is None or not np.isfinite(dur):
                    continue
                counts[lang] += 1
                self.rows.append({"ds": ds, "i": i, "id": uid, "text": normalize_transcript(text), "language": lang,
                                  "duration": float(dur), "offset": off})  # fmt: skip
        self._audio: list[np.ndarray | None] | None = None
        self.n_unreadable = 0

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def languages(self) -> list[str]:
        return sorted({r["language"] for r in self.rows})

    def audio(self) -> list[np.ndarray | None]:
        if self._audio is None:
            self._audio = []
            for r in self.rows:
                source = r["ds"][r["i"]]["audio"]
                try:
                    wave = load_segment(source, r["offset"], r["duration"])
                except AudioDecodeError as err:
                    logger.warning("dev set: skipping unreadable audio %s: %s", r["id"], err)
                    wave = None
                    self.n_unreadable += 1
                self._audio.append(wave)
        return self._audio


@torch.no_grad()
def evaluate_model(model, processor, dev: DevSet, max_batch_seconds: float, device: torch.device | str = "cpu",
                   autocast=None) -> dict:  # fmt: skip
    """Greedy-decode `dev`; returns {"per_language": {lang: {cer, wer, lid_accuracy, n}}, "mean_cer",
    "mean_wer", "lid_accuracy", "predictions": [...]}. Means are unweighted over languages (each
    language counts the same, as in the paper's averages)."""
    was_training = model.training
    model.eval()
    waves = dev.audio()
    usable = [i for i, w in enumerate(waves) if w is not None]
    if not usable:
        raise ValueError("dev set has no readable audio")
    lid_index = model.config.lang2id
    sampler = LengthBucketBatchSampler([dev.rows[i]["duration"] for i in usable], max(max_batch_seconds, 1.0), shuffle=False)
    results = []
    for batch in sampler:
        idx = [usable[j] for j in batch]
        inputs = processor.feature_extractor([waves[i] for i in idx], sampling_rate=SAMPLING_RATE, return_tensors="pt")
        inputs = {k: v.to(device) for k, v in inputs.items()}
        if autocast is not None:
            with autocast():
                out = model(**inputs)
        else:
            out = model(**inputs)
        lengths = model.get_output_lengths(inputs["attention_mask"].sum(-1))
        hyps = processor.greedy_decode(out.logits.float().cpu(), lengths.cpu())
        lid = out.lid_logits.argmax(-1).cpu().tolist()
        for i, hyp, lang_id in zip(idx, hyps, lid):
            row = dev.rows[i]
            results.append({"id": row["id"], "language": row["language"], "reference": row["text"], "prediction": hyp,
                            "lid_correct": lid_index.get(row["language"]) == lang_id})  # fmt: skip
    if was_training:
        model.train()
    table = per_language_metrics(results)
    per_language = {}
    for lang, entry in table.items():
        rows = results if lang == "all" else [r for r in results if r["language"] == lang]
        per_language[lang] = {
            "cer": entry["prediction"]["cer"],
            "wer": entry["prediction"]["wer"],
            "lid_accuracy": float(np.mean([r["lid_correct"] for r in rows])),
            "n": entry["n_utterances"],
        }
    langs = [lang for lang in per_language if lang != "all"]
    return {
        "per_language": per_language,
        "mean_cer": float(np.mean([per_language[lang]["cer"] for lang in langs])),
        "mean_wer": float(np.mean([per_language[lang]["wer"] for lang in langs])),
        "lid_accuracy": per_language["all"]["lid_accuracy"],
        "predictions": results,
    }


__all__ = ["DevSet", "evaluate_model"]
