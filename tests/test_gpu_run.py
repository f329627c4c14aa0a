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

from modeling_mlpl.synthetic.corpus import PRESETS
from modeling_mlpl.recipe.recipe import RecipeConfig
from modeling_mlpl.training.arguments import mapping_to_argv

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GPU = os.path.join(REPO, "configs", "gpu.yaml")
GPU_SMOKE = os.path.join(REPO, "configs", "gpu_smoke.yaml")
RUN_SH = os.path.join(REPO, "benchmarks", "gpu_run.sh")
TRAIN_BLOCKS = ("stage1", "stage2", "stage4", "stage4b_scratch", "stage4b_finetune")


def _script(name: str):
    return importlib.import_module(f"modeling_mlpl.commands.{name}")


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
        model_args, _, args = parse_args([*mapping_to_argv(options), "--output_dir", "out", "--train_data", "cv:cv@train"])
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


# -------------------------------------------------------------------------------- the bundle and gpu_run.sh
BUNDLE = os.path.join(REPO, "build", "gpu-bundle")
needs_bundle = pytest.mark.skipif(not os.path.isdir(os.path.join(BUNDLE, "wheels")),
                                  reason="no build/gpu-bundle (make gpu-bundle; needs the package registries)")  # fmt: skip


def _makefile_variable(name: str) -> list[str]:
    """Words of a `NAME := ...` variable of the Makefile (continuation lines joined)."""
    text = open(os.path.join(REPO, "Makefile"), encoding="utf-8").read().replace("\\\n", " ")
    line = next(line for line in text.splitlines() if line.startswith(f"{name} :=") or line.startswith(f"{name} ?="))
    return line.split("=", 1)[1].split()


def _run_sh(out, **env) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", RUN_SH, str(out)], capture_output=True, text=True, cwd=REPO, timeout=1500,
                          env={**os.environ, "PYTHON": sys.executable, **env})  # fmt: skip


@needs_bundle
def test_bundle_installs_offline_for_the_gpu_machines_python_one_version_of_each():
    wheels = sorted(os.path.join(BUNDLE, "wheels", f) for f in os.listdir(os.path.join(BUNDLE, "wheels")))
    version = _makefile_variable("GPU_PYTHON_VERSION")[0]
    platforms = [a for p in _makefile_variable("GPU_PLATFORMS") for a in ("--platform", p)]
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--no-deps",
                             "--only-binary", ":all:", "--python-version", version, "--implementation", "cp",
                             *platforms, "--target", "unused", *wheels], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    would = result.stdout.split("Would install", 1)[1].split()
    names = {w.rsplit("-", 1)[0].lower().replace("_", "-") for w in would}
    wanted = {spec.split("==")[0].lower() for spec in _makefile_variable("GPU_WHEELS")}
    assert names == wanted and len(would) == len(wanted)


@needs_bundle
def test_bundled_espeak_ng_runs_from_its_prefix_with_the_pcaudio_stub(tmp_path):
    bundle = tmp_path / "bundle"
    for part in ("debs", "stub", "bin", "lib"):
        shutil.copytree(os.path.join(BUNDLE, part), bundle / part)
    result = _run_sh(tmp_path / "out", BUNDLE=str(bundle), SKIP_PIP="1", FORCE_BUNDLE="1", PCAUDIO_STUB="1",
                     INSTALL_ONLY="1", CONFIG="configs/gpu_smoke.yaml")  # fmt: skip
    log = (tmp_path / "out" / "gpu_run.log").read_text()
    assert result.returncode == 0, log
    assert f"Data at: {bundle}/prefix/" in log and "libpcaudio stub in use" in log
    assert f"kenlm tools: {bundle}/bin" in log
    assert "cuda: none" in (tmp_path / "out" / "env.txt").read_text()  # this machine has no GPU: says so


def test_gpu_run_names_the_missing_bundle_in_one_line(tmp_path):
    result = _run_sh(tmp_path / "out", BUNDLE=str(tmp_path / "nothing"), FORCE_BUNDLE="1", SKIP_PIP="1",
                     INSTALL_ONLY="1")  # fmt: skip
    assert result.returncode == 2
    assert "no .debs in" in result.stdout and "make gpu-bundle" in result.stdout and "Traceback" not in result.stdout


@pytest.mark.slow
def test_gpu_run_on_cpu_runs_the_smoke_config_and_writes_step_times_and_throughput(tmp_path):
    result = _run_sh(tmp_path / "out", SKIP_PIP="1", CONFIG="configs/gpu_smoke.yaml", CAP_SECONDS="1200",
                     EXP_DIR=str(tmp_path / "exp"), CORPUS_DIR=str(tmp_path / "corpus"))  # fmt: skip
    out = tmp_path / "out"
    assert result.returncode == 0, (out / "gpu_run.log").read_text()[-3000:]
    report = json.loads((out / "run_report.json").read_text())
    plan = subprocess.run([sys.executable, os.path.join(REPO, "run_scripts", "recipe.py"), "--config", GPU_SMOKE,
                           "--list"], capture_output=True, text=True, cwd=REPO).stdout  # fmt: skip
    assert list(report["steps"]) and set(report["steps"]) == {line.split()[2] for line in plan.splitlines()}
    trained = {r["run"]: r for r in report["training"]}
    assert {"stage1", "stage4a", "labels_only", "oracle"} <= set(trained)
    assert all(r["audio_seconds_per_second"] > 0 and r["mfu"] is None for r in trained.values())  # no GPU: no MFU
    assert report["pseudo_labeling"] and (out / "report.md").exists() and (out / "recipe.log").exists()


@pytest.mark.slow
def test_gpu_run_stops_at_the_cap_and_still_writes_its_report(tmp_path):
    result = _run_sh(tmp_path / "out", SKIP_PIP="1", CONFIG="configs/gpu_smoke.yaml", CAP_SECONDS="1",
                     EXP_DIR=str(tmp_path / "exp"), CORPUS_DIR=str(tmp_path / "corpus"))  # fmt: skip
    log = (tmp_path / "out" / "gpu_run.log").read_text()
    assert result.returncode == 124 and "CAP REACHED" in log
    assert json.loads((tmp_path / "out" / "run_report.json").read_text())["steps"] == {}


def test_model_flops_per_frame_match_torchs_flop_counter():
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from modeling_mlpl.configuration_mlpl import MLPLConfig
    from modeling_mlpl.modeling_mlpl import MLPLForCTC

    spec = importlib.util.spec_from_file_location("_gpu_report", os.path.join(REPO, "benchmarks", "gpu_report.py"))
    gpu_report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_report)
    config = MLPLConfig.from_preset("tiny", vocab_size=40, languages=["en", "de", "pt"], layerdrop=0.0)
    model = MLPLForCTC(config).eval()
    # output_attentions: attention as explicit matmuls, which the counter sees (it does not count CPU SDPA)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        frames = model(input_features=torch.randn(1, 300, 80), output_attentions=True).logits.shape[1]
    lid_head = 2 * config.hidden_size * config.num_languages
    expected = gpu_report.forward_flops_per_frame(config.to_dict(), frames) * frames + lid_head
    assert counter.get_total_flops() == pytest.approx(expected, rel=1e-3)
