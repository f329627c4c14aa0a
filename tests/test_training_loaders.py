"""The trainer keeps one DataLoader per batch plan (cropped or not) for all epochs: persistent workers,
whose feature caches survive the epoch, and the same batches as a loader made afresh in the process."""

from __future__ import annotations

import json
import os

import pytest

from modeling_mlpl.training import train
from modeling_mlpl.training import trainer

from helpers_training import tiny_training_args, write_pl_dataset, write_tone_cv


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("tone_corpus")
    write_tone_cv(str(root / "cv"), n_train=4, n_dev=1)
    write_pl_dataset(str(root / "pl"), n=2)
    return root


def _run(corpus, out: str, workers: int) -> list[list[str]]:
    train(*tiny_training_args(out, cv_root=str(corpus / "cv"), train_datasets=[str(corpus / "pl")], max_steps=14,
                              crop_steps=3, crop_seconds=1.0, max_batch_seconds=8.0, dataloader_num_workers=workers,
                              log_batch_ids=True))  # fmt: skip
    with open(os.path.join(out, "batch_ids.rank0.jsonl")) as f:
        records = [json.loads(line) for line in f]
    assert max(r["epoch"] for r in records) >= 2  # the crop warm-up and at least two uncropped epochs
    return [r["ids"] for r in records]


def test_one_loader_per_batch_plan_serves_every_epoch_with_the_same_batches(corpus, tmp_path, monkeypatch):
    made = []
    original = trainer.make_loader
    monkeypatch.setattr(trainer, "make_loader", lambda *a, **k: made.append(a[1].crop) or original(*a, **k))
    with_worker = _run(corpus, str(tmp_path / "w1"), workers=1)
    assert made == [True, False]
    assert with_worker == _run(corpus, str(tmp_path / "w0"), workers=0)
