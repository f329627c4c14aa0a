"""The recipe end to end on the smoke config (plumbing, not accuracy), idempotence and resume."""

import json
import os
import subprocess
import sys
import time

import pytest

from modeling_mlpl.evaluation.metrics import cer, wer
from modeling_mlpl.recipe.recipe import Recipe, RecipeConfig, RecipeError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(REPO, "configs", "smoke.yaml")


def run_recipe(exp_dir, corpus_dir, *extra):
    cmd = [sys.executable, os.path.join(REPO, "run_scripts", "recipe.py"), "--config", SMOKE,
           "--exp_dir", str(exp_dir), "--corpus_dir", str(corpus_dir), *extra]  # fmt: skip
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe")
    exp, corpus = root / "exp", root / "corpus"
    start = time.time()
    result = run_recipe(exp, corpus)
    assert result.returncode == 0, result.stderr[-4000:]
    config = RecipeConfig.load(SMOKE)
    config.exp_dir, config.corpus["dir"] = str(exp), str(corpus)
    return Recipe(config, seed=0), time.time() - start


def test_smoke_recipe_produces_every_stage_and_the_report(smoke_run):
    recipe, seconds = smoke_run
    for step in recipe.steps():
        assert os.path.exists(recipe.path(".done", step.name)), step.name
    for name, _ in recipe.evaluated_models():
        assert os.path.exists(os.path.join(recipe.model_dir(name), "model.safetensors"))
        assert os.path.exists(recipe.path("eval", name, "predictions.jsonl"))
        tuned = json.load(open(recipe.lm_params_path(name)))  # every model decoded with its own dev-tuned alpha/beta
        assert set(tuned) == set(dict(recipe.evaluated_models())[name])
    for f in ("report.md", "report.json", "cer_per_language.png"):
        assert os.path.getsize(recipe.path("report", f)) > 0
    assert os.path.exists(os.path.join(recipe.config.exp_dir, "report.md"))
    print(f"smoke recipe: {seconds:.0f} s")


def test_report_numbers_are_recomputed_from_saved_predictions(smoke_run):
    recipe, _ = smoke_run
    report = json.load(open(recipe.path("report", "report.json")))
    rows = [json.loads(line) for line in open(recipe.path("eval", "stage4a", "predictions.jsonl"))]
    for lang, by_decoder in report["results"]["stage4a"].items():
        mine = [r for r in rows if r["language"] == lang]
        refs = [r["reference"] for r in mine]
        assert by_decoder["greedy"]["cer"] == pytest.approx(cer(refs, [r["prediction"] for r in mine]))
        assert by_decoder["greedy"]["wer"] == pytest.approx(wer(refs, [r["prediction"] for r in mine]))
        assert by_decoder["LM"]["cer"] == pytest.approx(cer(refs, [r["prediction_lm"] for r in mine]))
    low = recipe.config.low_resource
    theta_prime = report["results"]["theta_prime"]
    mean_ref = sum(theta_prime[lang]["greedy"]["cer"] for lang in low) / len(low)
    summary = report["summary"]["stage4a"]["greedy"]
    if mean_ref > 0:
        assert summary["rel_vs_theta_prime"] == pytest.approx((mean_ref - summary["low_cer"]) / mean_ref)


def test_strategy_b_has_its_rows_in_the_report(smoke_run):
    recipe, _ = smoke_run
    report = json.load(open(recipe.path("report", "report.json")))
    low = recipe.config.low_resource
    assert set(report["results"]["stage4b"]) == set(low)  # one fine-tuned model per target language
    for lang in low:
        assert 0 <= report["results"]["stage4b"][lang]["greedy"]["cer"]
        assert os.path.exists(recipe.path("eval", f"stage4b-{lang}", "predictions.jsonl"))
    assert os.path.exists(os.path.join(recipe.model_dir("stage4b-scratch"), "model.safetensors"))
    assert "B: scratch on labels + greedy PLs" in open(recipe.path("report", "report.md")).read()


def test_the_semi_supervised_teacher_continues_theta_prime_without_repeating_its_updates(smoke_run):
    recipe, _ = smoke_run
    c = recipe.config
    for lang in c.low_resource:
        results = json.load(open(os.path.join(recipe.model_dir(f"stage2ssl-{lang}"), "train_results.json")))
        assert results["step"] == c.stage2_semi["max_steps"]
        assert results["updates_this_run"] == c.stage2_semi["max_steps"] - c.stage2["max_steps"]


def test_the_pl_quality_sweep_lies_between_the_teachers_pls_and_the_truth(smoke_run):
    recipe, _ = smoke_run
    report = json.load(open(recipe.path("report", "report.json")))
    stats = report["pl_stats"]
    for lang in recipe.config.low_resource:
        mix = json.load(open(os.path.join(recipe.pl_dir("pl_mix50", lang), "mix.json")))
        assert stats["pl_mix50"][lang]["records"] == stats["pl"][lang]["records"] == mix["recordings"]
        assert mix["truth"] == round(mix["recordings"] / 2) > 0
        assert stats["oracle"][lang]["pl_cer"] < stats["pl_mix50"][lang]["pl_cer"] < stats["pl"][lang]["pl_cer"]
    sweep = report["pl_quality"]
    rows = [q["row"] for q in sweep]  # every row trained on a PL set, noisiest set first
    assert [q["pl_cer"] for q in sweep] == sorted((q["pl_cer"] for q in sweep), reverse=True)
    assert rows.index("stage4a") < rows.index("pl_mix50") < rows.index("oracle")
    assert "## Gain against PL quality" in open(recipe.path("report", "report.md")).read()


def test_rerunning_a_finished_recipe_does_no_work(smoke_run):
    recipe, _ = smoke_run
    markers = {n: os.path.getmtime(recipe.path(".done", n)) for n in os.listdir(recipe.path(".done"))}
    result = run_recipe(recipe.config.exp_dir, recipe.config.corpus["dir"], "--stop-stage", "5")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "train.py" not in result.stderr and "pseudo_label.py" not in result.stderr
    assert result.stderr.count("done, skipped") == len([s for s in recipe.steps() if s.stage <= 5])
    assert markers == {n: os.path.getmtime(recipe.path(".done", n)) for n in os.listdir(recipe.path(".done"))}


def test_a_half_finished_pseudo_label_stage_resumes_without_duplicates(smoke_run):
    recipe, _ = smoke_run
    lang = recipe.config.low_resource[0]
    pl_dir = recipe.path("pl", f"pl-{lang}")
    shard = os.path.join(pl_dir, "pl-rank00000.jsonl")
    lines = open(shard, encoding="utf-8").read().splitlines(keepends=True)
    expected = sorted(json.loads(line)["id"] for line in lines)
    # Simulate a kill while writing: the last record is cut in half and the step is not marked done.
    with open(shard, "w", encoding="utf-8") as f:
        f.writelines(lines[:-1])
        f.write(lines[-1][: len(lines[-1]) // 2])
    os.remove(recipe.path(".done", f"pl-{lang}"))
    result = run_recipe(recipe.config.exp_dir, recipe.config.corpus["dir"], "--stage", "3", "--stop-stage", "3")
    assert result.returncode == 0, result.stderr[-3000:]
    ids = sorted(json.loads(line)["id"] for line in open(shard, encoding="utf-8"))
    assert ids == expected
    assert os.path.exists(recipe.path(".done", f"pl-{lang}"))


def test_retuning_alpha_beta_reuses_the_dev_logits_of_an_unchanged_model(smoke_run, monkeypatch):
    recipe, _ = smoke_run
    name = "stage4a"
    languages = dict(recipe.evaluated_models())[name]
    calls, run = [], recipe.script
    monkeypatch.setattr(recipe, "script", lambda script, *argv: (calls.append(script), run(script, *argv)))
    recipe.tune_model(name, languages)
    assert calls == ["tune_lm.py"]
    os.utime(os.path.join(recipe.model_dir(name), "model.safetensors"))  # retrained: its saved logits are stale
    recipe.tune_model(name, languages)
    assert calls == ["tune_lm.py", "evaluate.py", "tune_lm.py"]
    assert set(json.load(open(recipe.lm_params_path(name)))) == set(languages)


def test_an_evaluation_resumes_only_while_its_model_and_alpha_beta_are_unchanged(smoke_run, monkeypatch):
    """evaluate.py appends to predictions.jsonl after a kill; re-tuned weights must not be mixed with old ones."""
    recipe, _ = smoke_run
    name = "stage4a"
    predictions = recipe.path("eval", name, "predictions.jsonl")
    seen = []
    monkeypatch.setattr(recipe, "script", lambda script, *argv: seen.append(os.path.exists(predictions)))
    now = time.time()  # explicit times: file systems may give two writes in a row the same mtime
    os.utime(predictions, (now + 1, now + 1))  # newer than the model and its alpha/beta: resumable (here finished)
    recipe.evaluate(name, dict(recipe.evaluated_models())[name])
    os.utime(recipe.lm_params_path(name), (now + 5, now + 5))  # re-tuned since: the old LM predictions are stale
    recipe.evaluate(name, dict(recipe.evaluated_models())[name])
    assert seen == [True, False]


def test_config_errors_are_reported_clearly(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nexp_dir: e\ncorpus: {dir: c}\nhigh_resource: []\nlow_resource: [pt]\nstage9: {}\n")
    with pytest.raises(RecipeError, match=r"unknown key\(s\) \['stage9'\]"):
        RecipeConfig.load(str(bad))
    bad.write_text("name: x\nexp_dir: e\ncorpus: {dir: c}\nhigh_resource: []\nlow_resource: [pt]\nvariants: [magic]\n")
    with pytest.raises(RecipeError, match="unknown variant"):
        RecipeConfig.load(str(bad))
    result = subprocess.run([sys.executable, os.path.join(REPO, "run_scripts", "recipe.py"), "--config", str(bad)],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 2 and "recipe.py: error: " in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("name", sorted(f for f in os.listdir(os.path.join(REPO, "configs")) if f.endswith(".yaml")))
def test_every_shipped_config_loads_and_plans_its_stages(name):
    config = RecipeConfig.load(os.path.join(REPO, "configs", name))
    steps = Recipe(config, seed=0).steps()
    assert [s.stage for s in steps] == sorted(s.stage for s in steps)  # stages run in order
    assert {s.stage for s in steps} == set(range(7))
    assert len({s.name for s in steps}) == len(steps)
    for lang in config.low_resource:
        assert f"stage2-{lang}" in {s.name for s in steps} and f"pl-{lang}" in {s.name for s in steps}


def test_a_model_without_tuned_alpha_beta_is_not_silently_lm_decoded_with_other_weights(tmp_path):
    config = RecipeConfig.load(SMOKE)
    config.exp_dir, config.corpus["dir"] = str(tmp_path / "exp"), str(tmp_path / "corpus")
    with pytest.raises(RecipeError, match="tune stage4a first"):
        Recipe(config, seed=0).evaluate("stage4a", config.low_resource)


def test_stage4_models_are_evaluated_on_the_languages_they_were_trained_for():
    config = RecipeConfig.load(SMOKE)
    config.variants = ["stage4a", "labels_only", "stage4b"]
    for labels, expected in (("all", config.languages), ("low_resource", sorted(config.low_resource))):
        config.stage4_labels = labels
        evaluated = dict(Recipe(config, seed=0).evaluated_models())
        assert evaluated["stage1"] == config.languages
        assert evaluated["stage4a"] == evaluated["labels_only"] == expected
        assert all(evaluated[f"stage4b-{lang}"] == [lang] for lang in config.low_resource)


def test_a_variant_registered_in_one_place_appears_in_the_plan_and_the_report(tmp_path, monkeypatch):
    from modeling_mlpl.recipe import variants
    from modeling_mlpl.recipe.report import write_report

    monkeypatch.setitem(variants.VARIANTS, "my_variant", variants.Variant("my new row", "pl"))
    config = RecipeConfig.load(SMOKE)
    config.exp_dir, config.corpus["dir"] = str(tmp_path / "exp"), str(tmp_path / "corpus")
    config.variants = ["stage4a", "labels_only", "oracle", "my_variant"]
    config.validate()
    recipe = Recipe(config, seed=0)
    names = {s.name for s in recipe.steps()}
    assert {"my_variant", "tune-my_variant", "eval-my_variant"} <= names
    assert ("my_variant", recipe.stage4_label_languages) in recipe.evaluated_models()
    # The report renders from the manifest alone: fake predictions for every evaluated model.
    for name, langs in recipe.evaluated_models():
        os.makedirs(recipe.path("eval", name))
        with open(recipe.path("eval", name, "predictions.jsonl"), "w") as f:
            for lang in langs:
                f.write(json.dumps({"id": f"{lang}/1", "language": lang, "group": lang, "reference": "ab cd",
                                    "prediction": "ab cd" if name == "my_variant" else "ab", "prediction_lm": "ab cd"}) + "\n")
    recipe.report()
    report = json.load(open(recipe.path("report", "report.json")))
    assert report["rows"]["my_variant"] == "my new row"
    assert report["summary"]["my_variant"]["greedy"]["low_cer"] == 0.0
    assert report["summary"]["my_variant"]["greedy"]["beats_control_every_language"] is True
    assert "| my new row | 0.0 |" in open(recipe.path("report", "report.md")).read()


def test_a_misspelt_training_option_fails_when_the_config_is_loaded(tmp_path):
    text = open(SMOKE).read().replace("stage4: {max_steps: 4}", "stage4: {max_stpes: 4}")
    assert "max_stpes" in text
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(RecipeError, match=r"stage4: unknown train.py option\(s\) \['max_stpes'\]"):
        RecipeConfig.load(str(bad))
    bad.write_text(open(SMOKE).read().replace("stage4: {max_steps: 4}", "stage4: {max_steps: many}"))
    with pytest.raises(RecipeError, match="stage4: .*max_steps.*many"):
        RecipeConfig.load(str(bad))


@pytest.mark.parametrize("block,option,command", [
    ("lm", "ordr", "build_lm"), ("pseudo_label", "max_batch_second", "pseudo_label"),
    ("pl_filter", "top_pct", "pseudo_label"), ("pl_agreement", "max_disagreemnt", "select_pseudo_labels"),
    ("tune_lm", "refin", "tune_lm"), ("evaluate", "beam_widht", "evaluate"),
])  # fmt: skip
def test_a_misspelt_option_of_any_command_block_fails_when_the_config_is_loaded(block, option, command, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(open(SMOKE).read() + f"\n{block}: {{{option}: 3}}\n")
    with pytest.raises(RecipeError, match=rf"{block}: unknown {command}.py option\(s\) \['{option}'\]"):
        RecipeConfig.load(str(bad))


def test_a_bad_value_in_a_command_block_fails_when_the_config_is_loaded(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(open(SMOKE).read() + "\nevaluate: {max_batch_seconds: 0}\n")
    with pytest.raises(RecipeError, match="evaluate: .*max.batch.seconds: must be a positive number, got 0"):
        RecipeConfig.load(str(bad))


def test_variants_are_refused_without_the_runs_they_build_on():
    config = RecipeConfig.load(SMOKE)
    config.variants = ["labels_only", "stage4a_ft"]
    with pytest.raises(RecipeError, match="variant stage4a_ft needs stage4a listed before it"):
        config.validate()


def test_the_seed_aggregate_gives_mean_spread_and_every_seed(tmp_path):
    from modeling_mlpl.recipe.report import aggregate_seeds

    for seed, cer_a in ((0, 0.30), (1, 0.40)):
        os.makedirs(tmp_path / f"seed{seed}" / "report")
        report = {"name": "x", "seed": seed, "rows": {"stage4a": "A"},
                  "summary": {"stage4a": {"greedy": {"low_cer": cer_a, "beats_control_every_language": True,
                                                     "beats_theta_prime_every_language": seed == 0}}}}
        if seed == 0:  # a row only seed 0 ran
            report["rows"]["oracle"] = "oracle"
            report["summary"]["oracle"] = {"greedy": {"low_cer": 0.25}}
        json.dump(report, open(tmp_path / f"seed{seed}" / "report" / "report.json", "w"))
    markdown = aggregate_seeds(str(tmp_path), [0, 1])
    assert "| A | 35.0 ± 5.0 (30.0, 40.0) |" in markdown
    assert "| oracle | 25.0 (1 seed) |" in markdown
    agg = json.load(open(tmp_path / "report.json"))["aggregate"]["stage4a"]["greedy"]
    assert agg["low_cer"]["per_seed"] == [0.30, 0.40] and agg["wins_every_seed"] is False


CLAIM_ROWS = ["stage1", "theta_prime", "theta_prime_ssl", "stage4a", "labels_only", "oracle", "stage4a_ft",
              "labels_only_ft", "oracle_ft", "stage4b"]  # fmt: skip


@pytest.mark.parametrize("name", ["full.yaml", "full_smoke.yaml"])
def test_the_full_config_plans_every_row_of_the_claim(name):
    config = RecipeConfig.load(os.path.join(REPO, "configs", name))
    recipe = Recipe(config, seed=0)
    assert [row for row, _ in recipe.row_models()] == CLAIM_ROWS
    planned = {s.name for s in recipe.steps()}
    for lang in config.low_resource:
        assert {f"stage2ssl-{lang}", f"stage4b-{lang}", f"oracle_ft-{lang}", f"eval-stage4b-{lang}"} <= planned
    result = subprocess.run([sys.executable, os.path.join(REPO, "run_scripts", "recipe.py"), "--config",
                             os.path.join(REPO, "configs", name), "--list"], capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert result.returncode == 0 and "stage4b-scratch" in result.stdout, result.stderr[-2000:]


def test_the_full_config_keeps_the_regime_the_claim_needs():
    config = RecipeConfig.load(os.path.join(REPO, "configs", "full.yaml"))
    sizes = config.corpus["sizes"]
    assert sizes["low_train_minutes"] <= 10 and sizes["low_unlabelled_minutes"] >= 300  # scarce labels, >= 5 h unlabeled
    assert config.stage1["preset"] in ("small", "base", "large")
    assert config.stage4["max_steps"] >= 1000 and config.stage4b_scratch["max_steps"] >= 1000


@pytest.mark.slow
def test_the_full_configs_smoke_version_runs_end_to_end_with_every_row(tmp_path):
    config_path = os.path.join(REPO, "configs", "full_smoke.yaml")
    cmd = [sys.executable, os.path.join(REPO, "run_scripts", "recipe.py"), "--config", config_path,
           "--exp_dir", str(tmp_path / "exp"), "--corpus_dir", str(tmp_path / "corpus")]  # fmt: skip
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.load(open(tmp_path / "exp" / "seed0" / "report" / "report.json"))
    config = RecipeConfig.load(config_path)
    for row in CLAIM_ROWS[1:]:  # theta is evaluated on every language, the rest on the targets
        assert set(config.low_resource) <= set(report["results"][row]), row
