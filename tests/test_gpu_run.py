"""configs/gpu.yaml and benchmarks/gpu_run.sh, checked on CPU before any GPU time is spent on them.

A wrong key in a config only fails when its step starts (minutes into a GPU lease), so every block is parsed
here by the script the recipe hands it to.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest

from modeling_mlpl.data.synthetic import PRESETS
from modeling_mlpl.recipe import RecipeConfig
from modeling_mlpl.training.arguments import mapping_to_argv

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GPU = os.path.join(REPO, "configs", "gpu.yaml")
GPU_SMOKE = os.path.join(REPO, "configs", "gpu_smoke.yaml")
RUN_SH = os.path.join(REPO, "benchmarks", "gpu_run.sh")
TRAIN_BLOCKS = ("stage1", "stage2", "stage4", "stage4b_scratch", "stage4b_finetune")


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"_script_{name}", os.path.join(REPO, "run_scripts", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recipe_lists_the_plan_of_the_gpu_config():
    result = subprocess.run([sys.executable, os.path.join(REPO, "run_scripts", "recipe.py"), "--config", GPU, "--list"],
                            capture_output=True, text=True, cwd=REPO, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    names = [line.split()[2] for line in result.stdout.splitlines() if line.startswith("stage ")]
    config = RecipeConfig.load(GPU)
    assert names[0] == "corpus" and names[-1] == "report"
    assert {f"stage2-{lang}" for lang in config.low_resource} | {f"pl-{lang}" for lang in config.low_resource} <= set(names)
    assert set(config.variants) <= set(names)


@pytest.mark.parametrize("path", [GPU, GPU_SMOKE], ids=os.path.basename)
def test_every_training_block_is_accepted_by_train_py(path):
    config = RecipeConfig.load(path)
    parse_args = _script("train").parse_args
    for block in TRAIN_BLOCKS:
        options = {**config.train_common, **getattr(config, block), "seed": 0, "num_threads": config.threads}
        model_args, _, args = parse_args([*mapping_to_argv(options), "--output_dir", "out", "--cv_root", "cv"])
        assert args.max_steps == options["max_steps"], block
        assert args.mixed_precision == config.train_common["mixed_precision"]


@pytest.mark.parametrize("path", [GPU, GPU_SMOKE], ids=os.path.basename)
def test_pseudo_label_tune_and_evaluate_blocks_are_accepted_by_their_scripts(path):
    config = RecipeConfig.load(path)
    pl_parser = _script("pseudo_label").build_parser()
    pl_parser.parse_args(["--model", "m", "--data", "voxpopuli:v", "--language", "pt", "--output_dir", "o",
                          *mapping_to_argv({**config.pseudo_label, **config.pseudo_label_lm})])  # fmt: skip
    _script("tune_lm").parse_args(["--processor-dir", "p", "--logits", "l.npz", *mapping_to_argv(config.tune_lm)])
    _script("evaluate").parse_args(["--model", "m", "--data", "cv:c", "--out", "o", *mapping_to_argv(config.evaluate)])


def test_gpu_config_keeps_labels_scarce_and_scales_model_unlabelled_audio_and_updates():
    config = RecipeConfig.load(GPU)
    demo = RecipeConfig.load(os.path.join(REPO, "configs", "demo.yaml"))
    sizes = PRESETS[config.corpus["preset"]].replace(**config.corpus.get("sizes", {}))
    demo_sizes = PRESETS[demo.corpus["preset"]].replace(**demo.corpus.get("sizes", {}))
    assert sizes.low_train_minutes <= demo_sizes.low_train_minutes  # labels stay scarce per target
    assert sizes.low_unlabelled_minutes >= 120  # hours of unlabelled audio per target
    assert config.stage1["preset"] in ("small", "base")
    assert config.stage1["max_steps"] >= 1000 and config.stage4["max_steps"] >= 1000
    assert config.train_common["mixed_precision"] == "bf16"
