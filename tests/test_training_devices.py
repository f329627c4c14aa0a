"""The GPU-conditional branches of training, exercised on CPU: precision, optimizer kernels, DDP's
unused-parameter search, torch.compile wiring and DataLoader workers."""

import json
import os
from types import SimpleNamespace

import pytest
import torch

from modeling_mlpl import MLPLConfig
from modeling_mlpl.training import train
from modeling_mlpl.training.trainer import (
    make_accelerator,
    needs_unused_parameters,
    optimizer_kernels,
    resolve_mixed_precision,
    setup_run,
)

from helpers_training import tiny_training_args, write_pl_dataset, write_tone_cv


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("devices_corpus")
    write_tone_cv(str(root / "cv"), n_train=4, n_dev=1)
    write_pl_dataset(str(root / "bad_pl"), language="en", n=3, words=3, seed=7, corrupt=(1,))
    return root


@pytest.mark.parametrize(
    "value, cuda, bf16, expected",
    [("auto", False, False, "no"), ("auto", True, True, "bf16"), ("auto", True, False, "no"), ("fp16", True, True, "fp16"),
     ("no", True, True, "no"), ("bf16", False, False, "bf16")],
)  # fmt: skip
def test_auto_mixed_precision_is_bf16_only_on_a_gpu_that_has_it(value, cuda, bf16, expected):
    assert resolve_mixed_precision(value, cuda=cuda, bf16_supported=bf16) == expected


def test_adamw_uses_fused_kernels_only_when_every_parameter_is_on_cuda():
    on = lambda kind: SimpleNamespace(device=torch.device(kind))  # noqa: E731 - a parameter's device is all that is read
    assert optimizer_kernels([on("cuda"), on("cuda")]) == {"fused": True}
    assert optimizer_kernels([on("cuda"), on("cpu")]) == {}
    assert optimizer_kernels([torch.nn.Parameter(torch.zeros(2))]) == {}


@pytest.mark.parametrize(
    "layerdrop, lid_loss_weight, expected", [(0.1, 1.0, True), (0.0, 1.0, False), (0.0, 0.0, True)]
)
def test_ddp_searches_unused_parameters_only_when_a_batch_can_leave_some(layerdrop, lid_loss_weight, expected):
    config = MLPLConfig.from_preset("tiny", vocab_size=10, languages=["pt"], layerdrop=layerdrop,
                                    lid_loss_weight=lid_loss_weight)  # fmt: skip
    assert needs_unused_parameters(config) is expected


@pytest.mark.parametrize("layerdrop, expected", [(0.1, True), (0.0, False)])
def test_the_run_hands_ddp_the_unused_parameter_setting_of_its_model(corpus, tmp_path, layerdrop, expected):
    run = setup_run(*tiny_training_args(str(tmp_path / "o"), cv_root=str(corpus / "cv"), layerdrop=layerdrop))
    assert run.accelerator.ddp_handler.find_unused_parameters is expected
    assert run.accelerator.mixed_precision == "no"  # auto on a machine without CUDA


@pytest.mark.parametrize("flag, backend", [(True, "INDUCTOR"), (False, "NO")])
def test_torch_compile_flag_selects_the_inductor_backend(tmp_path, flag, backend):
    args = tiny_training_args(str(tmp_path / "o"), torch_compile=flag)[2]
    assert make_accelerator(args).state.dynamo_plugin.backend.name == backend


def test_dataloader_workers_give_the_same_batches_and_count_bad_audio(corpus, tmp_path):
    results = {}
    for workers in (0, 1):
        out = str(tmp_path / f"w{workers}")
        result = train(*tiny_training_args(out, cv_root=str(corpus / "cv"), train_datasets=[str(corpus / "bad_pl")],
                                           max_steps=6, max_batch_seconds=30.0, dataloader_num_workers=workers,
                                           log_batch_ids=True))  # fmt: skip
        with open(os.path.join(out, "batch_ids.rank0.jsonl")) as f:
            results[workers] = ([json.loads(line)["ids"] for line in f], result.skipped_audio)
    assert results[1] == results[0] and results[1][1] >= 1  # the corrupt recording, counted inside the worker
