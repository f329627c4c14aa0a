"""--continue_from: a run that goes on from another run's checkpoint (slimIPL's theta' continuing the
supervised theta' at --pl_start_step), so that no update of the first run is computed twice."""

import json
import math
import os

import pytest
import torch
from safetensors.torch import load_file

from modeling_mlpl.training import ConfigError, read_log, train
from modeling_mlpl.training.checkpointing import checkpoint_dir
from modeling_mlpl.training.trainer import ContinuedSchedule, resume_run, setup_run

from helpers_training import tiny_training_args, write_pl_dataset, write_tone_cv

SUPERVISED_STEPS = 4  # theta': its last checkpoint is where the semi-supervised run starts
SEMI_STEPS = 8


@pytest.fixture(scope="module")
def theta_prime(tmp_path_factory):
    """A supervised run (theta') on pt, and the unlabelled pt recordings of its continuation."""
    root = tmp_path_factory.mktemp("continue")
    write_tone_cv(str(root / "cv"), languages=("pt",), n_train=6, n_dev=2)
    write_pl_dataset(str(root / "unlabelled"), language="pt", n=6, words=6, seed=3)
    out = str(root / "theta_prime")
    train(*tiny_training_args(out, cv_root=str(root / "cv"), max_steps=SUPERVISED_STEPS, lr_scheduler_type="cosine",
                              warmup_steps=2, max_batch_seconds=3.0, load_best_model_at_end=True, eval_steps=2))  # fmt: skip
    return root, out


def continuation_args(root, theta_prime_dir: str, out: str, **overrides):
    options = dict(preset=None, init_from=theta_prime_dir, cv_root=str(root / "cv"),
                   continue_from=checkpoint_dir(theta_prime_dir, SUPERVISED_STEPS),
                   unlabeled_data=f"disk:{root / 'unlabelled'}", pl_start_step=SUPERVISED_STEPS, pl_cache_size=3,
                   crop_seconds=1.0, max_batch_seconds=3.0, max_steps=SEMI_STEPS, lr_scheduler_type="cosine",
                   warmup_steps=2, log_batch_ids=True, logging_steps=1, resume=True)  # fmt: skip
    return tiny_training_args(out, **(options | overrides))


def test_continued_run_starts_with_the_other_runs_step_weights_and_optimizer_moments(theta_prime, tmp_path):
    root, tp = theta_prime
    ckpt = checkpoint_dir(tp, SUPERVISED_STEPS)
    setup = setup_run(*continuation_args(root, tp, str(tmp_path / "ssl")))
    state = resume_run(setup)
    assert state.step == SUPERVISED_STEPS
    saved = load_file(os.path.join(ckpt, "model.safetensors"))
    weights = setup.unwrapped.state_dict()
    assert saved.keys() == weights.keys() and all(torch.equal(saved[k], weights[k]) for k in saved)
    moments = torch.load(os.path.join(ckpt, "optimizer.bin"), weights_only=True)["state"]
    loaded = setup.optimizer.state_dict()["state"]
    assert moments.keys() == loaded.keys() and moments  # AdamW has moments after 4 updates
    for p in moments:
        assert torch.equal(moments[p]["exp_avg"], loaded[p]["exp_avg"])
        assert torch.equal(moments[p]["exp_avg_sq"], loaded[p]["exp_avg_sq"])
    assert state.best_metric is None  # theta''s own evaluations chose theta''s model, not this one's


def test_continued_run_trains_only_the_updates_after_the_other_runs_last(theta_prime, tmp_path):
    root, tp = theta_prime
    out = str(tmp_path / "ssl")
    result = train(*continuation_args(root, tp, out))
    assert result.step == SEMI_STEPS
    assert json.load(open(os.path.join(out, "train_results.json")))["updates_this_run"] == SEMI_STEPS - SUPERVISED_STEPS
    with open(os.path.join(out, "batch_ids.rank0.jsonl")) as f:
        steps = [r["step"] for r in map(json.loads, f)]
    assert sorted(set(steps)) == list(range(SUPERVISED_STEPS, SEMI_STEPS))  # no supervised update computed twice


def test_continued_run_takes_up_the_learning_rate_where_the_other_run_left_it(theta_prime, tmp_path):
    root, tp = theta_prime
    out = str(tmp_path / "ssl")
    train(*continuation_args(root, tp, out, learning_rate=3e-3))
    lrs = {r["step"]: r["learning_rate"] for r in read_log(out) if r["type"] == "train"}
    # theta''s cosine ended at 0: the continuation warms up from 0 over 2 updates, then decays to 0 at step 8.
    expected = {5: 1.5e-3, 6: 3e-3, 7: 3e-3 * 0.5 * (1 + math.cos(math.pi / 2)), 8: 0.0}
    assert lrs == pytest.approx(expected, abs=1e-9)


def test_continued_schedule_warms_up_from_the_start_factor_then_decays_over_its_own_updates():
    cosine = ContinuedSchedule("cosine", warmup_steps=10, max_steps=750, start_step=150, start_factor=0.2)
    assert cosine(150) == pytest.approx(0.2) and cosine(155) == pytest.approx(0.6) and cosine(160) == 1.0
    assert cosine(455) == pytest.approx(0.5) and cosine(750) == pytest.approx(0.0)
    constant = ContinuedSchedule("constant_with_warmup", warmup_steps=10, max_steps=750, start_step=150, start_factor=1.0)
    assert {constant(s) for s in (150, 151, 400, 750)} == {1.0}


def test_continuing_a_finished_schedule_is_refused_in_one_line(theta_prime, tmp_path):
    root, tp = theta_prime
    with pytest.raises(ConfigError, match=r"--continue_from .* is at update 4: nothing left to train with --max_steps 4"):
        train(*continuation_args(root, tp, str(tmp_path / "ssl"), max_steps=SUPERVISED_STEPS))


def test_continue_from_a_folder_that_is_not_a_checkpoint_is_refused_in_one_line(theta_prime, tmp_path):
    root, tp = theta_prime
    with pytest.raises(ConfigError, match="is not a training checkpoint"):
        train(*continuation_args(root, tp, str(tmp_path / "ssl"), continue_from=tp))
