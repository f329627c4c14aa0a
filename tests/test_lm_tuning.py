"""alpha/beta search: coarse-to-fine refinement, parallel == serial, the tune_lm.py flags."""

import importlib
import json

import pytest
from helpers_lm import TOY_LM_SENTENCES, build_toy_lm, char_vocab, simulated_dev_set

from modeling_mlpl.decoding.lm_decoder import LMDecoder
from modeling_mlpl.decoding.tuning import alpha_beta_grid, coarse_to_fine, save_logits, tune_alpha_beta

VOCAB = char_vocab(TOY_LM_SENTENCES)
GRID = alpha_beta_grid([0.0, 0.5, 1.0, 1.5], [0.0, 1.0, 2.0, 3.0])


def load_tune_lm():
    """The tune_lm command module, so its main() runs in-process."""
    return importlib.import_module("modeling_mlpl.commands.tune_lm")


def bowl(points):
    return [(a - 0.8) ** 2 + (b - 1.3) ** 2 for a, b in points]


def test_coarse_to_fine_lands_between_grid_points_near_the_optimum():
    tried = coarse_to_fine(bowl, GRID, rounds=3)
    (alpha, beta), _ = min(tried, key=lambda item: item[1])
    assert abs(alpha - 0.8) <= 0.07 and abs(beta - 1.3) <= 0.07  # the grid alone says (1.0, 1.0)
    assert len(tried) <= len(GRID) + 3 * 8 and len({p for p, _ in tried}) == len(tried)


def test_refinement_is_never_worse_than_the_grid_and_skips_negative_alpha():
    tried = coarse_to_fine(lambda ps: [(a + 1) ** 2 + b**2 for a, b in ps], GRID, rounds=2)
    assert min(s for _, s in tried) <= min(s for _, s in tried[: len(GRID)])
    assert all(a >= 0 for (a, _), _ in tried)


def test_zero_rounds_is_the_fixed_grid():
    assert [p for p, _ in coarse_to_fine(bowl, GRID, rounds=0)] == GRID


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
    return build_toy_lm(tmp_path_factory.mktemp("lm") / "cat").directory


@pytest.mark.parametrize("backend", ["pyctcdecode", "flashlight"])
def test_parallel_search_gives_the_serial_trials(lm_dir, backend):
    if backend == "flashlight":
        pytest.importorskip("flashlight.lib.text.decoder")
    logits, refs = simulated_dev_set(TOY_LM_SENTENCES[:8], VOCAB, seed=3, confusion_rate=0.2)
    grid = alpha_beta_grid([0.25, 1.0], [0.0, 2.0])  # alpha = beta = 0 ties word and <unk> paths exactly
    results = []
    for workers in (0, 2):
        decoder = LMDecoder.from_lm_dirs(VOCAB, {"cat": lm_dir}, alpha=0.5, beta=1.0, beam_width=8, backend=backend)
        results.append(tune_alpha_beta(decoder, logits, refs, "cat", grid, metric="cer", num_workers=workers, refine=1))
    serial, parallel = results
    assert serial.trials == parallel.trials and len(serial.trials) > 5
    assert (serial.alpha, serial.beta, serial.score) == (parallel.alpha, parallel.beta, parallel.score)
    assert serial.score <= min(t["cer"] for t in serial.trials[:5])


def test_tune_lm_cli_refines_and_keeps_its_output_format(lm_dir, tmp_path):
    decoder = LMDecoder.from_lm_dirs(VOCAB, {"cat": lm_dir}, alpha=0.5, beta=1.0, beam_width=8)
    decoder.save_pretrained(tmp_path / "proc")
    logits, refs = simulated_dev_set(TOY_LM_SENTENCES[:6], VOCAB, seed=4, confusion_rate=0.2)
    save_logits(tmp_path / "dev.npz", logits, refs, ["cat"] * len(refs))
    tune_lm = load_tune_lm()
    for refine in (0, 1):
        out = tmp_path / f"tuning{refine}"
        assert tune_lm.main(["--processor-dir", str(tmp_path / "proc"), "--logits", str(tmp_path / "dev.npz"),
                             "--alphas", "0.0", "1.0", "--betas", "0", "2", "--refine", str(refine),
                             "--workers", "1", "--output_dir", str(out), "--dry-run"]) == 0  # fmt: skip
    fixed, refined = (json.loads((tmp_path / f"tuning{r}" / "tuning.json").read_text())["cat"] for r in (0, 1))
    assert set(fixed) == {"language", "metric", "alpha", "beta", "score", "initial_score", "no_lm_score",
                          "greedy_score", "trials"}  # fmt: skip
    assert len(fixed["trials"]) == 5 and len(refined["trials"]) > 5
    assert refined["score"] <= fixed["score"]


def test_tune_lm_cli_tunes_with_the_chosen_backend_and_saves_it(lm_dir, tmp_path):
    pytest.importorskip("flashlight.lib.text.decoder")
    LMDecoder.from_lm_dirs(VOCAB, {"cat": lm_dir}, beam_width=8).save_pretrained(tmp_path / "proc")
    logits, refs = simulated_dev_set(TOY_LM_SENTENCES[:4], VOCAB, seed=5, confusion_rate=0.2)
    save_logits(tmp_path / "dev.npz", logits, refs, ["cat"] * len(refs))
    tune_lm = load_tune_lm()
    assert tune_lm.main(["--processor-dir", str(tmp_path / "proc"), "--logits", str(tmp_path / "dev.npz"),
                         "--alphas", "0.5", "--betas", "1", "--refine", "1", "--workers", "2",
                         "--backend", "flashlight"]) == 0  # fmt: skip
    saved = LMDecoder.from_pretrained(tmp_path / "proc").config
    tuning = json.loads((tmp_path / "proc/language_model/tuning.json").read_text())["cat"]
    assert saved.backend == "flashlight"
    assert (saved.languages["cat"].alpha, saved.languages["cat"].beta) == (tuning["alpha"], tuning["beta"])
