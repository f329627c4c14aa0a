"""The commands' shared conventions (modeling_mlpl.command_line): one output flag, no abbreviations, one-line errors.

Each command runs in-process through its main(); a user mistake must end in exit code 2 and one
`<prog>: error: ...` line on stderr, never in a traceback or in a message that sends the user elsewhere.
"""

import importlib
import json

import pytest
from helpers_lm import TOY_LM_SENTENCES, build_toy_lm, char_vocab, simulated_dev_set

from modeling_mlpl.command_line import UserError, ensure_output_dir
from modeling_mlpl.decoding.lm_decoder import LMDecoder
from modeling_mlpl.decoding.tuning import save_logits

COMMANDS = ["build_lm", "convert_mctct_checkpoint", "evaluate", "make_synthetic_corpus", "plot_training",
            "pseudo_label", "push_to_hub", "select_pseudo_labels", "train", "tune_lm"]  # fmt: skip
VOCAB = char_vocab(TOY_LM_SENTENCES)


def command(name):
    return importlib.import_module(f"modeling_mlpl.commands.{name}")


def error_lines(capsys) -> list[str]:
    """stderr lines that report an error (log lines and warnings left out)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if ": error:" in line or line.startswith("error:")]


# --------------------------------------------------------------------------------------------------
# one spelling per flag
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_names_its_output_folder_output_dir(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        command(name).main(["--help"])
    help_text = capsys.readouterr().out
    assert exit_.value.code == 0 and "--output_dir" in help_text
    for old in ("--out ", "--out_dir", "--output "):
        assert old not in help_text


def test_an_old_output_flag_still_works_and_says_once_that_it_is_deprecated(capsys):
    args = command("evaluate").parse_args(["--model", "m", "--data", "cv:x", "--out", "exp/eval"])
    warnings = [line for line in capsys.readouterr().err.splitlines() if "deprecated" in line]
    assert args.output_dir == "exp/eval"
    assert len(warnings) == 1 and "--out is deprecated, use --output_dir" in warnings[0]


def test_a_required_output_dir_is_still_required(capsys):
    with pytest.raises(SystemExit) as exit_:
        command("build_lm").parse_args(["--text", "en=x.txt"])
    assert exit_.value.code == 2 and "the following arguments are required: --output_dir" in capsys.readouterr().err


def test_the_old_tune_lm_output_file_flag_still_writes_that_file(lm_processor, tmp_path):
    proc, logits = lm_processor
    out = tmp_path / "ab.json"
    assert command("tune_lm").main(["--processor-dir", str(proc), "--logits", str(logits), "--alphas", "0.5",
                                    "--betas", "1", "--refine", "0", "--workers", "1", "--dry-run",
                                    "--output", str(out)]) == 0  # fmt: skip
    assert set(json.loads(out.read_text())) == {"cat"}


# --------------------------------------------------------------------------------------------------
# no prefix abbreviations
# --------------------------------------------------------------------------------------------------
def test_an_abbreviated_flag_is_not_taken_for_a_longer_one(capsys):
    with pytest.raises(SystemExit) as exit_:
        command("evaluate").parse_args(["--model", "m", "--output_dir", "o", "--max-batch-second", "5"])
    assert exit_.value.code == 2 and "unrecognized arguments: --max-batch-second 5" in capsys.readouterr().err


def test_train_does_not_take_an_abbreviation_for_a_flag(tmp_path, capsys):
    assert command("train").main(["--output_dir", str(tmp_path / "run"), "--max_step", "3"]) == 2
    assert error_lines(capsys) == ["train.py: error: unrecognized arguments: --max_step 3; see --help"]


def test_train_reports_a_misspelt_flag_in_one_line(tmp_path, capsys):
    assert command("train").main(["--output_dir", str(tmp_path / "run"), "--lerning_rate", "0.1"]) == 2
    assert error_lines(capsys) == ["train.py: error: unrecognized arguments: --lerning_rate 0.1; see --help"]


# --------------------------------------------------------------------------------------------------
# output folders that cannot be written
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lm_processor(tmp_path_factory):
    """(processor folder with an LM for 'cat', dev logits of 'cat')."""
    work = tmp_path_factory.mktemp("tune")
    LMDecoder.from_lm_dirs(VOCAB, {"cat": build_toy_lm(work / "cat").directory}, beam_width=8).save_pretrained(
        work / "proc")
    logits, refs = simulated_dev_set(TOY_LM_SENTENCES[:3], VOCAB, seed=1, confusion_rate=0.2)
    save_logits(work / "dev.npz", logits, refs, ["cat"] * len(refs))
    return work / "proc", work / "dev.npz"


def _argv_into(name, tmp_path, lm_processor, output_dir):
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    (run / "log.jsonl").write_text(json.dumps({"type": "train", "step": 1, "loss": 3.0}) + "\n")
    text = tmp_path / "en.txt"
    text.write_text("a cat\n")
    return {
        "train": ["--preset", "tiny", "--train_data", f"cv:{run}", "--output_dir", output_dir],
        "evaluate": ["--model", str(run), "--data", f"cv:{tmp_path}/cv", "--output_dir", output_dir],
        "build_lm": ["--text", f"en={text}", "--output_dir", output_dir],
        "plot_training": [str(run), "--output_dir", output_dir],
        "pseudo_label": ["--model", str(run), "--data", f"folder:{run}", "--output_dir", output_dir],
        "tune_lm": ["--processor-dir", str(lm_processor[0]), "--logits", str(lm_processor[1]), "--output_dir",
                    output_dir],  # fmt: skip
    }[name]


@pytest.mark.parametrize("name", ["train", "evaluate", "build_lm", "plot_training", "pseudo_label", "tune_lm"])
def test_an_output_folder_that_is_a_file_is_a_one_line_error(name, tmp_path, lm_processor, capsys):
    occupied = tmp_path / "results"
    occupied.write_text("not a folder")
    assert command(name).main(_argv_into(name, tmp_path, lm_processor, str(occupied))) == 2
    lines = error_lines(capsys)
    assert len(lines) == 1 and lines[0].endswith(f"--output_dir {occupied} is a file, not a folder")


def test_ensure_output_dir_refuses_a_folder_without_write_permission(tmp_path, monkeypatch):
    monkeypatch.setattr("os.access", lambda path, mode: False)  # (as root, chmod would not stop a write)
    with pytest.raises(UserError, match="folder is not writable"):
        ensure_output_dir(tmp_path / "out")


def test_tune_lm_checks_its_output_before_the_search(lm_processor, tmp_path, monkeypatch, capsys):
    tune_lm = command("tune_lm")
    monkeypatch.setattr(tune_lm, "tune_alpha_beta", lambda *a, **k: pytest.fail("searched before checking"))
    (tmp_path / "file").write_text("")
    assert tune_lm.main(["--processor-dir", str(lm_processor[0]), "--logits", str(lm_processor[1]),
                         "--output_dir", str(tmp_path / "file" / "sub")]) == 2  # fmt: skip
    assert error_lines(capsys) == [f"tune_lm.py: error: --output_dir {tmp_path / 'file' / 'sub'}: "
                                   f"{tmp_path / 'file'} is a file, not a folder"]  # fmt: skip


# --------------------------------------------------------------------------------------------------
# tune_lm inputs
# --------------------------------------------------------------------------------------------------
def test_tune_lm_reports_a_truncated_logits_file_in_one_line(lm_processor, tmp_path, capsys):
    cut = tmp_path / "cut.npz"
    data = lm_processor[1].read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    assert command("tune_lm").main(["--processor-dir", str(lm_processor[0]), "--logits", str(cut), "--dry-run",
                                    "--output_dir", str(tmp_path / "o")]) == 2  # fmt: skip
    lines = error_lines(capsys)
    assert len(lines) == 1 and f"--logits {cut}: not a complete logits file" in lines[0]


@pytest.mark.parametrize("flag,value", [("--alphas", "nan"), ("--betas", "inf")])
def test_tune_lm_refuses_a_grid_point_that_is_not_a_finite_number(flag, value, capsys):
    with pytest.raises(SystemExit) as exit_:
        command("tune_lm").parse_args(["--processor-dir", "p", "--logits", "l", flag, "1", value])
    assert exit_.value.code == 2 and f"must be a finite number, got {value}" in capsys.readouterr().err


def test_tune_lm_warns_about_dev_languages_without_an_lm(lm_processor, tmp_path, caplog):
    logits, refs = simulated_dev_set(TOY_LM_SENTENCES[:4], VOCAB, seed=2, confusion_rate=0.2)
    save_logits(tmp_path / "dev.npz", logits, refs, ["cat", "cat", "dog", "dog"])
    assert command("tune_lm").main(["--processor-dir", str(lm_processor[0]), "--logits", str(tmp_path / "dev.npz"),
                                    "--alphas", "0.5", "--betas", "1", "--refine", "0", "--workers", "1",
                                    "--dry-run", "--output_dir", str(tmp_path / "o")]) == 0  # fmt: skip
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "not tuned" in r.getMessage()]
    assert len(warned) == 1 and "['dog']" in warned[0] and "(2 utterances)" in warned[0]
    assert set(json.loads((tmp_path / "o" / "tuning.json").read_text())) == {"cat"}


# --------------------------------------------------------------------------------------------------
# batch sizes
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,value", [("evaluate", "0"), ("evaluate", "-5"), ("pseudo_label", "0"),
                                        ("pseudo_label", "nan")])  # fmt: skip
def test_max_batch_seconds_must_be_positive(name, value, capsys):
    with pytest.raises(SystemExit) as exit_:
        command(name).build_parser().parse_args(["--output_dir", "o", "--max_batch_seconds", value])
    assert exit_.value.code == 2 and f"must be a positive number, got {value}" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# plot_training
# --------------------------------------------------------------------------------------------------
def _training_log(run, torn: str = "") -> None:
    run.mkdir(parents=True, exist_ok=True)
    records = [{"type": "train", "step": s, "loss": 3.0 / s} for s in (1, 2, 3)]
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + torn)


def test_plot_training_writes_next_to_the_run_and_says_where(tmp_path, monkeypatch, capsys):
    _training_log(tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    assert command("plot_training").main(["run"]) == 0
    assert (tmp_path / "run" / "training_curves.png").is_file() and not (tmp_path / "training_curves.png").exists()
    assert capsys.readouterr().out.strip() == "run/training_curves.png"


def test_plot_training_plots_a_log_whose_last_line_was_cut_by_a_kill(tmp_path):
    _training_log(tmp_path / "run", torn='{"type": "train", "st')
    assert command("plot_training").main([str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "training_curves.png").is_file()


def test_plot_training_reports_a_damaged_log_in_one_line(tmp_path, capsys):
    _training_log(tmp_path / "run", torn="garbage\n" + json.dumps({"type": "train", "step": 9, "loss": 1.0}) + "\n")
    assert command("plot_training").main([str(tmp_path / "run")]) == 2
    lines = error_lines(capsys)
    assert len(lines) == 1
    assert "damaged training log" in lines[0] and "log.jsonl:4 is not a JSON record" in lines[0]
