"""Dev-set evaluation during training: per-language greedy CER/WER and LID accuracy.

Dev sets are small (a few hundred utterances per language), so their audio is decoded once and
kept in memory; evaluation runs on the main process only (other ranks wait), which keeps it free
of collective operations and identical for any number of processes.
"""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import torch
from datasets import Dataset

from ..audio import AudioDecodeError, load_segment, row_segment
from ..evaluation.inference import decode_rows
from ..evaluation.metrics import first_per_language, mean_over_groups, per_language_metrics
from ..text import normalize_transcript

logger = logging.getLogger(__name__)


class DevSet:
    """Dev utterances (audio decoded on first use): rows of id, reference, language, duration, offset.

    Rows without a transcript or a finite duration are left out; `max_per_language` keeps the first
    ones of each language over all `datasets` (:func:`~modeling_mlpl.evaluation.metrics.first_per_language`).
    """

    def __init__(self, datasets: list[Dataset], max_per_language: int | None = None):
        rows: list[dict] = []
        for ds in datasets:
            offsets = ds["offset"] if "offset" in ds.column_names else [None] * len(ds)
            for i, (uid, text, lang, dur, off) in enumerate(
                zip(ds["id"], ds["text"], ds["language"], ds["duration"], offsets)
            ):
                if not text or dur is None or not np.isfinite(dur):
                    continue
                rows.append({"ds": ds, "i": i, "id": uid, "reference": normalize_transcript(text), "language": lang,
                             "duration": float(dur), "offset": off})  # fmt: skip
        self.rows = [rows[i] for i in first_per_language([r["language"] for r in rows], max_per_language)]
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
                    wave = load_segment(source, *row_segment(r))
                except AudioDecodeError as err:
                    logger.warning("dev set: skipping unreadable audio %s: %s", r["id"], err)
                    wave = None
                    self.n_unreadable += 1
                self._audio.append(wave)
        return self._audio


def evaluate_dev_set(model, processor, dev: DevSet, max_batch_seconds: float, device: torch.device | str = "cpu",
                   autocast=None) -> dict:  # fmt: skip
    """Greedy-decode `dev`; returns {"per_language": {lang: {cer, wer, lid_accuracy, n}}, "mean_cer",
    "mean_wer", "lid_accuracy", "predictions": [...]}. Means are unweighted over languages (each
    language counts the same, as in the paper's averages).

    Decoding is :func:`~modeling_mlpl.evaluation.inference.decode_rows` on whole utterances, the path of
    ``evaluate.py``, so dev and test CERs are comparable; an utterance longer than
    `max_batch_seconds` is decoded in a batch of its own (not left out). The model stays where it is (`device` is
    the device it is on); `autocast` (e.g. ``accelerator.autocast``) wraps the forward passes.
    """
    waves = dev.audio()
    items = [(row, wave) for row, wave in zip(dev.rows, waves) if wave is not None]
    if not items:
        raise ValueError("dev set has no readable audio")
    lid_index = model.config.lang2id
    was_training = model.training
    model.eval()
    results = []
    try:
        with autocast() if autocast is not None else contextlib.nullcontext():
            chunks = decode_rows(model, processor, items, window_s=None, max_batch_seconds=max(max_batch_seconds, 1.0))
            for chunk in chunks:
                for record, lang_id in zip(chunk.records(), chunk.lid_log_probs.argmax(-1)):
                    record["lid_correct"] = lid_index.get(record["language"]) == int(lang_id)
                    results.append(record)
    finally:
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
    return {
        "per_language": per_language,
        "mean_cer": mean_over_groups(table, "prediction", "cer"),
        "mean_wer": mean_over_groups(table, "prediction", "wer"),
        "lid_accuracy": per_language["all"]["lid_accuracy"],
        "predictions": results,
    }


__all__ = ["DevSet", "evaluate_dev_set"]
