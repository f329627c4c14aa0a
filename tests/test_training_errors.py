"""train.py's messages for the ways a user gets a resume or the training data wrong: one line each."""

import logging
import os

import pytest

from modeling_mlpl.training import ConfigError, TrainerState, list_checkpoints, train

from helpers_training import tiny_training_args, write_pl_dataset, write_tone_cv

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("errors_corpus")
    write_tone_cv(str(root / "cv"), n_train=4, n_dev=1)
    return root


@pytest.fixture
def checkpointed_run(corpus, tmp_path):
    """A 4-update tiny run with checkpoints at updates 2 and 4."""
    out = str(tmp_path / "run")
    train(*tiny_training_args(out, cv_root=str(corpus / "cv"), max_steps=4, save_steps=2))
    return out


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_resume_with_another_preset_says_so_in_one_line(corpus, checkpointed_run):
    with pytest.raises(ConfigError) as err:
        train(*tiny_training_args(checkpointed_run, cv_root=str(corpus / "cv"), max_steps=6, save_steps=2, resume=True,
                                  preset="small"))  # fmt: skip
    message = _one_line(err)
    assert "cannot resume:" in message and "checkpoint-4 holds another model" in message
    assert "started with --preset tiny" in message and "--overwrite_output_dir" in message


def resume_after_truncating(name: str, corpus, run: str, caplog):
    """Cut the last checkpoint's file `name` in half, resume the run to update 5: (the file's path, the
    warning naming the fallback, the result)."""
    path = os.path.join(list_checkpoints(run)[-1], name)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    with caplog.at_level(logging.WARNING, logger="modeling_mlpl.training.trainer"):
        result = train(*tiny_training_args(run, cv_root=str(corpus / "cv"), max_steps=5, save_steps=2, resume=True))
    warning = next(r.getMessage() for r in caplog.records if "resuming from the previous checkpoint" in r.getMessage())
    return path, warning, result


def test_truncated_last_checkpoint_is_named_and_the_previous_one_used(corpus, checkpointed_run, caplog):
    weights, warning, result = resume_after_truncating("model.safetensors", corpus, checkpointed_run, caplog)
    assert f"{weights} cannot be read" in warning and warning.endswith("checkpoint-2 instead")
    assert result.step == 5 and TrainerState.load(list_checkpoints(checkpointed_run)[-1]).step == 5


def test_truncated_random_states_are_named_and_the_previous_checkpoint_used(corpus, checkpointed_run, caplog):
    # accelerate itself would only log "Could not load random states" at INFO and resume with other streams
    rng, warning, result = resume_after_truncating("random_states_0.pkl", corpus, checkpointed_run, caplog)
    assert f"{rng} cannot be read" in warning and warning.endswith("checkpoint-2 instead")
    assert result.step == 5


def test_a_corrupt_checkpoint_passed_explicitly_is_refused_with_the_flag_to_use(corpus, checkpointed_run):
    last = list_checkpoints(checkpointed_run)[-1]
    with open(os.path.join(last, "model.safetensors"), "wb") as f:
        f.write(b"\x00" * 10)
    with pytest.raises(ConfigError) as err:
        train(*tiny_training_args(checkpointed_run, cv_root=str(corpus / "cv"), max_steps=6, resume_from_checkpoint=last))
    message = _one_line(err)
    assert message.startswith(f"--resume_from_checkpoint: {last}/model.safetensors cannot be read")
    assert "pass an earlier checkpoint" in message


def test_duplicate_ids_in_the_training_sources_are_refused(corpus, tmp_path):
    write_pl_dataset(str(tmp_path / "pl"), n=2, words=3)
    pl = str(tmp_path / "pl")
    with pytest.raises(ConfigError) as err:
        train(*tiny_training_args(str(tmp_path / "o"), cv_root=str(corpus / "cv"), train_datasets=[pl, pl], max_steps=1))
    message = _one_line(err)
    assert message.startswith(f"duplicate id 'pt/rec0' in the training data (in disk:{pl} and in disk:{pl}; 2 repeated id(s)")
    assert "--train_weights" in message


def test_help_prints_every_help_text_without_raw_argparse_internals(capsys):
    from modeling_mlpl.commands.train import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--help"])
    text = capsys.readouterr().out
    assert "option_strings" not in text and "{'" not in text
    assert "about 15 percent of their speed" in " ".join(text.split())


def test_a_header_only_train_tsv_is_named_in_the_error(tmp_path):
    root = write_tone_cv(str(tmp_path / "cv"), languages=("pt",), n_train=2, n_dev=1)
    with open(os.path.join(root, "pt", "train.tsv"), "w") as f:
        f.write("client_id\tpath\tsentence\n")
    with pytest.raises(ConfigError, match=r"no usable rows .*pt/train\.tsv"):
        train(*tiny_training_args(str(tmp_path / "out"), cv_root=root, max_steps=1))


def test_help_explains_the_data_specs_with_an_example(capsys):
    from modeling_mlpl.commands.train import parse_args
    from modeling_mlpl.data.specs import KINDS, TRAINING_KINDS

    with pytest.raises(SystemExit):
        parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(KINDS[kind][1] in text for kind in TRAINING_KINDS)
    assert "--train_data cv:CV@train disk:PL_pt disk:PL_nl --eval_data cv:CV@dev" in text
    assert "--cv_root CV (= --train_data cv:CV@train --eval_data cv:CV@dev" in text
