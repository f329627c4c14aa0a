import json
import os
import shutil

import pytest
import torch
from safetensors.torch import save_file

from modeling_mlpl import MLPLForCTC
from modeling_mlpl.training.checkpointing import STATE_FILE, average_checkpoints


def fake_run(tiny_checkpoint, root, scales):
    """A training output dir whose checkpoints hold the tiny model's weights times each scale."""
    run = root / "run"
    shutil.copytree(tiny_checkpoint, run)
    state = MLPLForCTC.from_pretrained(tiny_checkpoint).state_dict()
    for step, scale in enumerate(scales, start=1):
        ckpt = run / "checkpoints" / f"checkpoint-{step}"
        ckpt.mkdir(parents=True)
        save_file({k: (v * scale).contiguous() for k, v in state.items()}, str(ckpt / "model.safetensors"))
        (ckpt / STATE_FILE).write_text(json.dumps({"step": step}))
    return run, state


def test_teacher_is_the_mean_of_the_last_checkpoints(tiny_checkpoint, tmp_path):
    run, state = fake_run(tiny_checkpoint, tmp_path, scales=[10.0, 1.0, 2.0, 3.0])
    used = average_checkpoints(str(run), str(tmp_path / "avg"), last=3)
    assert [os.path.basename(p) for p in used] == ["checkpoint-2", "checkpoint-3", "checkpoint-4"]
    averaged = MLPLForCTC.from_pretrained(tmp_path / "avg").state_dict()
    for key, value in state.items():
        assert torch.allclose(averaged[key], value * 2.0, atol=1e-6), key
    assert (tmp_path / "avg" / "vocab.json").exists()  # the processor travels with it


def test_averaging_without_checkpoints_is_a_clear_error(tiny_checkpoint, tmp_path):
    with pytest.raises(FileNotFoundError, match="no training checkpoints"):
        average_checkpoints(tiny_checkpoint, str(tmp_path / "avg"))
