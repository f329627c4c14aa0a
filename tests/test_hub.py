import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import metadata_load

from modeling_mlpl import hub
from modeling_mlpl.hub import (
    HubError,
    call_with_retries,
    maybe_push_to_hub,
    prepare_dataset_folder,
    publish_stage,
    push_checkpoint,
    stage_target,
)

from conftest import assert_loads_and_transcribes_without_mlpl
from modeling_mlpl.decoding.lm_decoder import LMDecoder, vocab_from_pretrained
from helpers_hub import REPO_ROOT, FakeHfApi, http_error, write_eval_json

SCRIPT = REPO_ROOT / "run_scripts" / "push_to_hub.py"


@pytest.fixture()
def no_token(monkeypatch, tmp_path):
    """No HF_TOKEN and an empty HF_HOME: no saved login either."""
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)


@pytest.fixture(scope="module")
def upload_folder(tiny_checkpoint, tmp_path_factory):
    """A dry-run folder of the tiny checkpoint as stage2-ft-pt, with training files and an LM folder."""
    import shutil

    work = tmp_path_factory.mktemp("hub")
    checkpoint = work / "checkpoint"
    shutil.copytree(tiny_checkpoint, checkpoint)
    (checkpoint / "training_args.json").write_text(json.dumps({"learning_rate": 3e-4, "max_steps": 150,
                                                             "cv_languages": ["pt"]}))  # a stage-2 run on pt
    (checkpoint / "trainer_state.json").write_text(json.dumps({"log_history": [{"loss": 3.2, "step": 10}]}))
    (checkpoint / "optimizer.pt").write_bytes(b"\0" * 1000)  # resume state: must not be uploaded
    lm_dir = work / "lm_pt"
    lm_dir.mkdir()
    (lm_dir / "lm.arpa").write_text("\\data\\\nngram 1=1\n\n\\1-grams:\n-1.0\tolá\n\n\\end\\\n")
    LMDecoder.from_lm_dirs(vocab_from_pretrained(checkpoint), {"pt": lm_dir}).save_pretrained(checkpoint)
    eval_json = work / "eval.json"
    write_eval_json(eval_json, languages=("pt",))
    plan, url = publish_stage(checkpoint, "someone/mlpl-tiny", "stage2-ft-pt", dry_run=True,
                              out_dir=work / "upload", eval_json=eval_json, synthetic=True)  # fmt: skip
    assert url is None
    return plan


def test_dry_run_folder_holds_model_processor_code_lm_logs_and_card(upload_folder):
    names = {name for name, _ in upload_folder.files}
    assert {"model.safetensors", "config.json", "vocab.json", "tokenizer_config.json", "processor_config.json",
            "modeling_mlpl.py", "configuration_mlpl.py", "feature_extraction_mlpl.py", "tokenization_mlpl.py",
            "processing_mlpl.py", "README.md", "eval_results.json", "training_args.json", "trainer_state.json",
            "language_model/decoder_config.json", "language_model/pt/lm.arpa"} <= names  # fmt: skip
    assert "optimizer.pt" not in names
    assert upload_folder.revision == "stage2-ft-pt" and upload_folder.repo_id == "someone/mlpl-tiny"
    meta = metadata_load(upload_folder.folder / "README.md")
    assert meta["pipeline_tag"] == "automatic-speech-recognition" and meta["language"] == ["pt"]
    assert "synthetic-data" in meta["tags"] and "kenlm" in meta["tags"]
    assert "SYNTHETIC-DATA CHECKPOINT" in (upload_folder.folder / "README.md").read_text()


def test_dry_run_folder_loads_and_transcribes_where_mlpl_is_not_installed(upload_folder, tmp_path):
    assert_loads_and_transcribes_without_mlpl(upload_folder.folder, tmp_path)


def test_push_creates_repo_and_stage_branch_and_retries_a_transient_error(upload_folder):
    api = FakeHfApi(fail_first=1)
    waits = []
    url = push_checkpoint(upload_folder.folder, "someone/mlpl-tiny", revision="stage2-ft-pt", token="hf_x",
                          api=api, sleep=waits.append)  # fmt: skip
    assert api.names() == ["create_repo", "create_branch", "upload_folder", "upload_folder"]
    assert api.calls[1][1]["branch"] == "stage2-ft-pt" and api.calls[0][1]["exist_ok"]
    assert waits == [2.0]
    uploaded = api.remote[("model", "someone/mlpl-tiny", "stage2-ft-pt")]
    assert sorted(uploaded) == sorted(name for name, _ in upload_folder.files)
    assert url.endswith("someone/mlpl-tiny/tree/stage2-ft-pt")


def test_push_does_not_retry_an_auth_error():
    api = FakeHfApi(fail_first=5, error=http_error(401))
    calls = []
    with pytest.raises(Exception) as info:
        call_with_retries(lambda: api.upload_folder(folder_path=".", repo_id="a/b"), "upload", sleep=calls.append)
    assert info.value.response.status_code == 401 and calls == [] and api.names() == ["upload_folder"]


def test_push_gives_up_after_max_attempts():
    api = FakeHfApi(fail_first=10)
    waits = []
    with pytest.raises(Exception):
        call_with_retries(lambda: api.upload_folder(folder_path=".", repo_id="a/b"), "upload", max_attempts=3,
                          sleep=waits.append)  # fmt: skip
    assert waits == [2.0, 4.0] and api.names().count("upload_folder") == 3


def test_missing_token_is_a_hub_error_before_any_folder_is_written(tiny_checkpoint, tmp_path, no_token):
    with pytest.raises(HubError, match="HF_TOKEN"):
        publish_stage(tiny_checkpoint, "someone/x", "stage1-multilingual", out_dir=tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_cli_without_token_prints_one_line_and_exits_2(tiny_checkpoint, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, str(SCRIPT), "--checkpoint", tiny_checkpoint, "--repo_id", "a/b",
                             "--stage", "stage1-multilingual"], env=env, capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "hf auth login" in errors[0] and "HF_TOKEN" in errors[0]


def test_cli_without_token_names_its_own_flags(tiny_checkpoint, no_token, capsys):
    push_to_hub = importlib.import_module("modeling_mlpl.commands.push_to_hub")
    assert push_to_hub.main(["--checkpoint", tiny_checkpoint, "--repo_id", "a/b", "--stage", "stage1-multilingual"]) == 2
    error = capsys.readouterr().err.strip()
    assert "pass --token;" in error and "use --dry_run to only write the folder" in error


def test_train_push_without_token_names_hub_dry_run(tmp_path, no_token, capsys):
    train = importlib.import_module("modeling_mlpl.commands.train")
    argv = ["--preset", "tiny", "--train_data", f"cv:{tmp_path}", "--output_dir", str(tmp_path / "run")]
    assert train.main([*argv, "--push_to_hub", "--hub_model_id", "a/b"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("train.py: error: no Hugging Face token") and "use --hub_dry_run to only" in error
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_a_dry_run_that_cannot_write_its_folder_says_why_not_upload_failed(tiny_checkpoint, tmp_path, capsys):
    (tmp_path / "taken").write_text("a file where the folder's parent should be")
    push_to_hub = importlib.import_module("modeling_mlpl.commands.push_to_hub")
    code = push_to_hub.main(["--checkpoint", tiny_checkpoint, "--repo_id", "a/b", "--stage", "stage1-multilingual",
                             "--dry_run", "--output_dir", str(tmp_path / "taken" / "up")])  # fmt: skip
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and error.startswith(f"error: cannot write the upload folder {tmp_path / 'taken' / 'up'}")
    assert "upload failed" not in error and "re-run" not in error


def test_the_card_of_a_multilingual_model_lists_the_model_languages_not_the_stage_name(tiny_checkpoint, tmp_path):
    plan, _ = publish_stage(tiny_checkpoint, "a/b", "stage2-ft-pt", dry_run=True, out_dir=tmp_path / "up",
                            synthetic=False)  # fmt: skip
    assert metadata_load(plan.folder / "README.md")["language"] == ["en", "de", "pt", "ru"]  # TINY_LANGUAGES


def test_the_card_names_the_folder_it_was_evaluated_on_not_common_voice(tiny_checkpoint, tmp_path):
    eval_json = tmp_path / "metrics.json"  # evaluate.py --data folder:DIR/mine groups its rows "folder/mine/<lang>"
    eval_json.write_text(json.dumps({"per_group": {"folder/mine/en": {"n_utterances": 3,
                                                                      "prediction": {"cer": 0.1, "wer": 0.3}}}}))
    plan, _ = publish_stage(tiny_checkpoint, "a/b", "stage1-multilingual", dry_run=True, out_dir=tmp_path / "up",
                            eval_json=eval_json, synthetic=False)  # fmt: skip
    card = (plan.folder / "README.md").read_text()
    assert "Measured on folder/mine (test split)" in card and "Common Voice 6.1" not in card


def test_cli_dry_run_lists_files_and_target_without_a_token(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["push_to_hub.py"])
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import push_to_hub
    finally:
        sys.path.remove(str(SCRIPT.parent))
    monkeypatch.setattr(hub, "resolve_token", lambda token=None: pytest.fail("dry run must not need a token"))
    code = push_to_hub.main(["--checkpoint", tiny_checkpoint, "--repo_id", "me/mlpl", "--stage", "stage4a-pl",
                             "--layout", "repo", "--dry_run", "--output_dir", str(tmp_path / "up"), "--not_synthetic"])
    out = capsys.readouterr().out
    assert code == 0
    assert "me/mlpl-stage4a-pl @ main" in out and "model.safetensors" in out and "modeling_mlpl.py" in out
    assert "SYNTHETIC" not in (tmp_path / "up" / "README.md").read_text()


def test_cli_push_uses_hfapi_with_retries(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import push_to_hub
    finally:
        sys.path.remove(str(SCRIPT.parent))
    api = FakeHfApi(fail_first=1)
    monkeypatch.setattr(hub, "_make_api", lambda token: api)
    monkeypatch.setattr(hub.time, "sleep", lambda s: None)
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    code = push_to_hub.main(["--checkpoint", tiny_checkpoint, "--repo_id", "me/mlpl", "--stage", "stage1-multilingual"])
    assert code == 0, capsys.readouterr().err
    assert api.names() == ["create_repo", "create_branch", "upload_folder", "upload_folder"]
    files = api.remote[("model", "me/mlpl", "stage1-multilingual")]
    assert "model.safetensors" in files and "README.md" in files
    leftovers = [p for p in Path(tiny_checkpoint).parent.iterdir() if p.name.startswith(".hub-")]
    assert leftovers == []  # the temporary upload folder is removed after a successful push


def test_stage_names_pick_branches_or_repos_and_bad_ones_fail():
    assert stage_target("u/m", "stage2-ft-fy-NL") == ("u/m", "stage2-ft-fy-NL")
    assert stage_target("u/m", "stage4b-pl", layout="repo") == ("u/m-stage4b-pl", None)
    with pytest.raises(HubError, match="unknown stage"):
        stage_target("u/m", "stage3")
    with pytest.raises(HubError, match="user/name"):
        stage_target("just-a-name", "stage4a-pl")


def test_maybe_push_to_hub_is_off_by_default_and_dry_runs_next_to_the_output(tiny_checkpoint, tmp_path):
    import argparse
    import shutil

    parser = hub.add_hub_arguments(argparse.ArgumentParser())
    assert maybe_push_to_hub(tiny_checkpoint, parser.parse_args([]), stage="stage1-multilingual") is None
    output = tmp_path / "stage1"
    shutil.copytree(tiny_checkpoint, output)
    args = parser.parse_args(["--push_to_hub", "--hub_model_id", "me/mlpl", "--hub_dry_run"])
    folder = Path(maybe_push_to_hub(output, args, stage="stage1-multilingual"))
    assert folder == tmp_path / "stage1.hub-stage1-multilingual" and (folder / "model.safetensors").is_file()
    with pytest.raises(HubError, match="hub_model_id"):
        maybe_push_to_hub(output, parser.parse_args(["--push_to_hub"]), stage="stage1-multilingual")


def test_maybe_push_to_hub_pushes_a_pl_folder_as_a_dataset_repo(tmp_path, monkeypatch):
    pl = tmp_path / "pl_pt"
    pl.mkdir()
    (pl / "pseudo_labels.jsonl").write_text('{"id": "a", "text": "olá"}\n{"id": "b", "text": "tudo"}\n')
    (pl / "clip.wav").write_bytes(b"RIFF")  # audio stays local by default
    (pl / "progress.lock").write_text("")
    api = FakeHfApi()
    monkeypatch.setattr(hub, "_make_api", lambda token: api)
    args = type("Args", (), {"push_to_hub": True, "hub_model_id": "me/pl-pt", "hub_token": "hf_x"})()
    url = maybe_push_to_hub(pl, args, kind="dataset", languages=["pt"], source_model="me/mlpl@stage2-ft-pt")
    assert url == "https://huggingface.co/datasets/me/pl-pt/tree/main"
    assert api.calls[0][1]["repo_type"] == "dataset"
    files = api.remote[("dataset", "me/pl-pt", "main")]
    assert sorted(files) == ["README.md", "pseudo_labels.jsonl"]
    card = files["README.md"].decode()
    assert "automatic-speech-recognition" in card and "JSONL rows | 2" in card


def test_dataset_folder_of_an_empty_directory_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(HubError, match="empty"):
        prepare_dataset_folder(tmp_path / "empty", tmp_path / "out")


def test_upload_folder_refuses_a_directory_that_is_not_a_checkpoint(tmp_path):
    with pytest.raises(HubError, match="config.json"):
        hub.prepare_upload_folder(tmp_path, tmp_path / "out", "stage1-multilingual")
    assert not (tmp_path / "out").exists()
