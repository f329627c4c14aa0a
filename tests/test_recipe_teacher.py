"""Distillation in the recipe: stage 3's pseudo-labels from an external teacher (the config's `teacher:`)."""

import json
import os
import subprocess
import sys

import pytest

from modeling_mlpl.commands.recipe import main as recipe_main
from modeling_mlpl.recipe.recipe import Recipe, RecipeConfig, RecipeError
from tests.helpers_teachers import build_ctc_teacher, build_unsupported_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(REPO, "configs", "external_teacher_smoke.yaml")
EXAMPLE = os.path.join(REPO, "configs", "external_teacher.yaml")


def smoke_config(tmp_path, **overrides) -> RecipeConfig:
    config = RecipeConfig.load(SMOKE)
    config.exp_dir, config.corpus["dir"] = str(tmp_path / "exp"), str(tmp_path / "corpus")
    for key, value in overrides.items():
        setattr(config, key, value)
    config.validate("test")
    return config


def write_config(tmp_path, **changes) -> str:
    """The smoke config with `changes` (None deletes a key) written to tmp_path."""
    import yaml

    raw = yaml.safe_load(open(SMOKE))
    for key, value in changes.items():
        raw.pop(key, None) if value is None else raw.__setitem__(key, value)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


# -- plan and commands (fast)


def test_list_plans_stage3_with_the_external_teacher_while_stage2_still_trains(tmp_path, capsys):
    teacher = build_ctc_teacher(tmp_path / "teacher")
    assert recipe_main(["--config", SMOKE, "--exp_dir", str(tmp_path / "exp"), "--teacher", teacher, "--list"]) == 0
    plan = {line.split()[2]: line for line in capsys.readouterr().out.splitlines()}
    assert f"greedy PLs of the external teacher {teacher}, el  <- stage1" in plan["pl-el"]
    assert "stage2-el" in plan  # theta' is still the baseline row ...
    assert plan["oracle-el"].endswith("<- stage2-el")  # ... and force-aligns the oracle's true transcripts


def test_stage3_labels_with_the_external_teacher_and_merges_against_stage1s_vocabulary(tmp_path, monkeypatch):
    config = smoke_config(tmp_path, teacher="facebook/mms-1b-all", teacher_revision="v1",
                          teacher_language={"el": "ell"}, pl_text_rule="lower_nopunct")  # fmt: skip
    recipe = Recipe(config)
    calls = []
    monkeypatch.setattr(recipe, "script", lambda name, *argv: calls.append((name, argv)))
    recipe.pseudo_label("pl", "el")
    (name, argv), = calls
    flags = dict(zip(argv, argv[1:]))
    assert name == "pseudo_label.py"
    assert flags["--model"] == "facebook/mms-1b-all" and flags["--revision"] == "v1"
    assert flags["--teacher_language"] == "ell" and flags["--text_rule"] == "lower_nopunct"
    assert flags["--student_vocab_from"] == recipe.model_dir("stage1")


def test_the_oracle_is_still_force_aligned_by_the_stage2_model(tmp_path, monkeypatch):
    recipe = Recipe(smoke_config(tmp_path, teacher="facebook/mms-1b-all"))
    calls = []
    monkeypatch.setattr(recipe, "script", lambda name, *argv: calls.append(argv))
    recipe.pseudo_label("oracle", "el")
    argv = calls[0]
    assert argv[argv.index("--model") + 1] == recipe.model_dir("stage2-el")
    assert "--align_truth" in argv and "--student_vocab_from" not in argv


def test_without_teacher_stage3_uses_theta_prime_as_before(tmp_path, monkeypatch):
    recipe = Recipe(smoke_config(tmp_path, teacher=None, pl_text_rule=None))
    calls = []
    monkeypatch.setattr(recipe, "script", lambda name, *argv: calls.append(argv))
    recipe.pseudo_label("pl", "el")
    argv = calls[0]
    assert argv[argv.index("--model") + 1] == recipe.model_dir("stage2-el")
    assert "--student_vocab_from" not in argv and "--text_rule" not in argv
    assert dict((s.name, s.needs) for s in recipe.steps())["pl-el"] == ("stage2-el",)


def relabel_over_a_pl_set_made_by(tmp_path, monkeypatch, model: str) -> str:
    """Stage 3 of a recipe whose teacher is MMS, run over an earlier PL folder bound to `model` (the
    command itself stubbed out): that folder's path."""
    recipe = Recipe(smoke_config(tmp_path, teacher="facebook/mms-1b-all"))
    out = recipe.pl_dir("pl", "el")
    os.makedirs(out)
    with open(os.path.join(out, "pl_run.json"), "w") as f:
        json.dump({"--model": model}, f)
    monkeypatch.setattr(recipe, "script", lambda name, *argv: None)
    recipe.pseudo_label("pl", "el")
    return out


def test_a_pl_set_made_by_another_teacher_is_relabelled_afresh(tmp_path, monkeypatch):
    out = relabel_over_a_pl_set_made_by(tmp_path, monkeypatch, "facebook/wav2vec2-base-960h")
    assert not os.path.exists(out)  # pseudo_label.py --resume would refuse the other teacher's shards


def test_a_pl_set_of_the_same_teacher_is_resumed(tmp_path, monkeypatch):
    out = relabel_over_a_pl_set_made_by(tmp_path, monkeypatch, "facebook/mms-1b-all")
    assert os.path.exists(os.path.join(out, "pl_run.json"))


# -- config validation (fast)


@pytest.mark.parametrize("changes, message", [
    ({"teacher": "/no/such/teacher"}, "neither an existing model folder nor a Hub id"),
    ({"teacher": ""}, "teacher must be a model folder or Hub id"),
    ({"teacher_language": {"pt": "por"}}, r"teacher_language maps \['pt'\], which are not low_resource"),
    ({"teacher_language": ["ell"]}, "teacher_language must be a code or a map"),
    ({"pl_text_rule": "lowercase"}, "pl_text_rule must be one of"),
    ({"teacher": None, "teacher_revision": "main"}, "teacher_revision is set but `teacher:` is not"),
    ({"variants": ["stage4a", "pl_lm"]}, r"variant\(s\) \['pl_lm'\] need PLs of the stage-2 mlpl teacher"),
])  # fmt: skip
def test_a_wrong_teacher_block_fails_when_the_config_is_loaded(tmp_path, changes, message):
    with pytest.raises(RecipeError, match=message):
        RecipeConfig.load(write_config(tmp_path, **changes))


def test_a_teacher_folder_of_an_unsupported_kind_fails_when_the_config_is_loaded(tmp_path):
    folder = build_unsupported_checkpoint(tmp_path / "not-asr")
    with pytest.raises(RecipeError, match="model_type 'made-up-model'.*cannot be a pseudo-labeling teacher"):
        RecipeConfig.load(write_config(tmp_path, teacher=folder))


def test_a_teacher_typo_fails_list_in_one_line(tmp_path, capsys):
    path = write_config(tmp_path, teacher_langauge={"el": "ell"})
    assert recipe_main(["--config", path, "--list"]) == 2
    err = capsys.readouterr().err
    assert "recipe.py: error: " in err and "unknown key(s) ['teacher_langauge']" in err and err.count("\n") == 1


def test_the_example_config_distils_from_mms_with_its_adapters():
    config = RecipeConfig.load(EXAMPLE)
    assert config.teacher == "facebook/mms-1b-all" and config.teacher_language["pt"] == "por"
    steps = {s.name: s for s in Recipe(config).steps()}
    assert all("facebook/mms-1b-all" in steps[f"pl-{lang}"].description for lang in config.low_resource)


# -- the report (fast)


def test_the_report_names_each_pl_sets_teacher_by_kind_and_name(tmp_path):
    from datasets import Dataset

    from modeling_mlpl.recipe.report import write_report

    merged = tmp_path / "pl" / "pl-el" / "merged"
    Dataset.from_dict({"id": ["a"], "text": ["αβ"]}).save_to_disk(str(merged / "dataset"))
    stats = {"records": 1, "hours_in": 0.01, "kept": 1, "hours_kept": 0.01, "empty_outputs": 0, "failures": 0,
             "teachers": {"ctc:/data/teachers/xlsr-el": 1}}  # fmt: skip
    (merged / "stats.json").write_text(json.dumps(stats))
    manifest = {"name": "x", "seed": 0, "low_resource": ["el"], "high_resource": [], "reference": "theta_prime",
                "rows": [], "pl_sets": [{"set": "pl", "language": "el", "merged": str(merged)}],
                "truth_root": str(tmp_path / "no-truth"), "pl_teacher": "/data/teachers/xlsr-el"}  # fmt: skip
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "manifest.json").write_text(json.dumps(manifest))
    report = write_report(str(tmp_path / "report" / "manifest.json"))
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "| pl | el | ctc teachers/xlsr-el | 1 |" in markdown
    assert "Stage-3 teacher: /data/teachers/xlsr-el." in markdown
    assert report["pl_stats"]["pl"]["el"]["teachers"] == {"ctc:/data/teachers/xlsr-el": 1}


# -- end to end (slow): a student trained on an external teacher's PLs


def run_recipe(*argv):
    cmd = [sys.executable, os.path.join(REPO, "run_scripts", "recipe.py"), "--config", SMOKE, *argv]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1200)


@pytest.mark.slow
def test_a_student_trains_on_an_external_teachers_pls_through_stage4(tmp_path):
    exp, corpus = tmp_path / "exp", tmp_path / "corpus"
    common = ["--exp_dir", str(exp), "--corpus_dir", str(corpus)]
    # Stage 1 first: the teacher's characters are theta's (a student can write its PLs), plus one it cannot.
    result = run_recipe(*common, "--stop-stage", "1")
    assert result.returncode == 0, result.stderr[-4000:]
    theta = exp / "seed0" / "models" / "stage1"
    letters = [t for t in json.load(open(theta / "vocab.json")) if len(t) == 1 and t not in "| "]
    teacher = build_ctc_teacher(tmp_path / "teacher", letters=[*letters, "ß"])
    result = run_recipe(*common, "--teacher", teacher, "--stop-stage", "4")
    assert result.returncode == 0, result.stderr[-4000:]

    config = smoke_config(tmp_path, teacher=teacher)
    recipe = Recipe(config)
    rows = [json.loads(line) for line in open(os.path.join(recipe.pl_dir("pl", "el"), "pl-rank00000.jsonl"))]
    assert rows and {r["teacher"]["kind"] for r in rows} == {"ctc"}
    stats = json.load(open(os.path.join(recipe.pl_dir("pl", "el"), "merged", "stats.json")))
    dropped = sum(u["rows"] for u in stats["unwritable_chars"].values())
    assert stats["kept"] + dropped <= stats["records"] == len(rows)  # nothing unaccounted for
    assert os.path.exists(os.path.join(recipe.model_dir("stage4a"), "model.safetensors"))
    assert os.path.exists(recipe.path(".done", "stage2-el"))  # the baseline theta' trained all the same
    recipe.report()  # stage 6's renderer over what exists (no evaluation before stage 5)
    markdown = open(recipe.path("report", "report.md")).read()
    assert f"| pl | el | ctc {os.path.join(*teacher.split(os.sep)[-2:])}" in markdown
