import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from modeling_mlpl import MLPLForCTC, MLPLProcessor, MLPLTokenizer
from modeling_mlpl.data import open_dataset
from modeling_mlpl.training import (
    BEST_DIR,
    ConfigError,
    TrainerState,
    list_checkpoints,
    read_log,
    resolve_data,
    train,
    validate_arguments,
)
from modeling_mlpl.training.trainer import build_training_set, load_sources

from helpers_training import tiny_training_args, tone_sentence, write_pl_dataset, write_tone_cv

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("tone_corpus")
    write_tone_cv(str(root / "cv"))
    write_pl_dataset(str(root / "pl"))
    return root


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    """One short run shared by the tests that only read its outputs."""
    out = str(tmp_path_factory.mktemp("run") / "out")
    args = tiny_training_args(out, train_data=[f"cv:{corpus / 'cv'}@train"], eval_data=[f"cv:{corpus / 'cv'}@dev"],
                              max_steps=40, eval_steps=20, save_steps=10, save_total_limit=2,
                              load_best_model_at_end=True, max_batch_seconds=3.0)  # fmt: skip
    result = train(*args)
    return out, result


def test_loss_goes_down_on_a_small_set(trained):
    out, result = trained
    losses = [r["loss"] for r in read_log(out) if r["type"] == "train"]
    assert len(losses) == 8  # one record every 5 updates
    assert losses[-1] < 0.7 * losses[0]
    evals = [r for r in read_log(out) if r["type"] == "eval"]
    assert [r["step"] for r in evals] == [20, 40]
    assert result.best_metric == min(r["mean_cer"] for r in evals) < 1.0
    assert set(evals[-1]["per_language"]) == {"en", "de", "pt", "all"}
    assert all(0 <= e["lid_accuracy"] <= 1 for e in evals[-1]["per_language"].values())


def test_run_exports_a_loadable_model_with_args_log_and_rotated_checkpoints(trained):
    out, result = trained
    model = MLPLForCTC.from_pretrained(out).eval()
    processor = MLPLProcessor.from_pretrained(out)
    assert model.config.languages == ["de", "en", "pt"]  # from the data, sorted
    assert set(processor.tokenizer.get_vocab()) >= set("abcdefgh|")
    audio, _ = tone_sentence("abc de")
    inputs = processor(audio=audio, sampling_rate=16000)
    assert isinstance(processor.batch_decode(model(**inputs).logits)[0], str)
    # load_best_model_at_end: the exported weights are the best checkpoint's.
    best = load_file(os.path.join(out, BEST_DIR, "model.safetensors"))
    final = load_file(os.path.join(out, "model.safetensors"))
    assert all(torch.equal(best[k], final[k]) for k in best)
    assert json.load(open(os.path.join(out, "training_args.json")))["max_steps"] == 40
    assert [os.path.basename(p) for p in list_checkpoints(out)] == ["checkpoint-30", "checkpoint-40"]
    assert TrainerState.load(list_checkpoints(out)[-1]).step == 40


class Interrupt(Exception):
    pass


def _ids_by_step(out: str) -> dict[int, list[str]]:
    by_step = {}
    with open(os.path.join(out, "batch_ids.rank0.jsonl")) as f:
        for line in f:
            record = json.loads(line)
            by_step[record["step"]] = record["ids"]  # a resumed run rewrites the lost steps
    return by_step


def test_killed_run_resumes_with_the_same_data_order_and_weights(corpus, tmp_path):
    # Dropout, layerdrop, crops and SpecAugment all draw random numbers: resume must restore them all.
    common = dict(cv_root=str(corpus / "cv"), train_datasets=[str(corpus / "pl")], max_steps=9, save_steps=3,
                  crop_steps=4, crop_seconds=1.0, specaugment_start_step=2, log_batch_ids=True, max_batch_seconds=4.0)  # fmt: skip
    full = str(tmp_path / "full")
    train(*tiny_training_args(full, **common))

    killed = str(tmp_path / "killed")

    def die_at_step_7(state):
        if state.step == 7:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(*tiny_training_args(killed, **common), step_callback=die_at_step_7)
    assert TrainerState.load(list_checkpoints(killed)[-1]).step == 6
    result = train(*tiny_training_args(killed, resume=True, **common))
    assert result.step == 9

    assert _ids_by_step(full) == _ids_by_step(killed)
    a, b = load_file(os.path.join(full, "model.safetensors")), load_file(os.path.join(killed, "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    # The log describes one run: no duplicated updates from before the kill.
    steps = [r["step"] for r in read_log(killed) if r["type"] == "train"]
    assert steps == sorted(set(steps))


def test_cropping_keeps_the_characters_aligned_inside_the_crop(corpus):
    rows = write_pl_dataset(str(corpus / "pl_crop"), n=1, words=10, seed=5)
    m, d, t = tiny_training_args("unused", train_data=[f"disk:{corpus / 'pl_crop'}"])
    datasets, names = load_sources(resolve_data(d).train, d)
    tokenizer = MLPLTokenizer.build_from_texts([rows[0]["text"]])
    train_set = build_training_set(datasets, names, tokenizer, ["pt"], None, crop_seconds=1.0, seed=0)
    assert train_set.cropped_durations[0] == 1.0 < train_set.durations[0]
    example = train_set[(0, True, (0, 0, 0, 0))]
    assert example["audio"].size == 16000
    # Recover the crop start from the rng the dataset used and compare with the alignment.
    start = float(np.random.default_rng((0, 0, 0, 0)).uniform(0.0, rows[0]["duration"] - 1.0))
    chars = [c for c, time in zip(rows[0]["text"].replace(" ", "|"), rows[0]["token_times"]) if start <= time < start + 1.0]
    assert example["text"] == "".join(chars).strip("|").replace("|", " ")
    assert 3 <= len(example["text"]) < len(rows[0]["text"])
    whole = train_set[(0, False, (0, 0, 0, 0))]
    assert whole["text"] == rows[0]["text"] and whole["audio"].size > 16000


def test_bad_rows_are_dropped_or_skipped_and_counted(corpus, tmp_path):
    write_pl_dataset(str(tmp_path / "bad_pl"), language="en", n=3, words=3, seed=7, corrupt=(1,))
    tok_dir = str(tmp_path / "tok")
    MLPLTokenizer.build_from_texts(["abcdef"], save_directory=tok_dir)  # no 'g', 'h': OOV for de/pt rows
    out = str(tmp_path / "out")
    result = train(*tiny_training_args(out, cv_root=str(corpus / "cv"), train_datasets=[str(tmp_path / "bad_pl")],
                                       tokenizer_dir=tok_dir, max_steps=6, max_batch_seconds=30.0))  # fmt: skip
    cv, pl = result.sources
    assert cv.dropped["oov_characters"] > 0 and cv.kept + cv.dropped["oov_characters"] == cv.rows
    assert set(cv.oov_characters) <= set("gh")
    assert result.skipped_audio >= 1  # the corrupt recording, met at batch time, not a crash
    summary = json.load(open(os.path.join(out, "train_results.json")))
    assert summary["skipped_unreadable_audio"] == result.skipped_audio


def test_fine_tuning_from_a_checkpoint_keeps_its_languages_and_lid_head(trained, corpus, tmp_path):
    out, _ = trained
    m, d, t = tiny_training_args(str(tmp_path / "ft"), cv_root=str(corpus / "cv"), cv_languages=["pt"], max_steps=2)
    m.preset, m.init_from = None, out
    train(m, d, t)
    model = MLPLForCTC.from_pretrained(str(tmp_path / "ft"))
    assert model.config.languages == ["de", "en", "pt"] and model.lid_head.out_features == 3


def _index(d):
    """What training would see of DataArguments `d`: (train ids in index order, their languages, dev ids)."""
    data = resolve_data(d)
    datasets, names = load_sources(data.train, d)
    train_set = build_training_set(datasets, names, MLPLTokenizer.build_from_texts(["abcdefgh"]), ["de", "en", "pt"],
                                   None, crop_seconds=10.0, seed=0)  # fmt: skip
    ids = [datasets[s]["id"][r] for s, r in train_set.entries]
    languages = [datasets[s]["language"][r] for s, r in train_set.entries]
    dev, _ = load_sources(data.eval, d, "eval")
    return ids, languages, [i for ds in dev for i in ds["id"]]


def test_train_data_specs_give_the_index_of_the_deprecated_flags(corpus):
    cv, pl = corpus / "cv", corpus / "pl"
    old = _index(tiny_training_args("unused", cv_root=str(cv), train_datasets=[str(pl)], cv_languages=["pt", "en"])[1])
    new = _index(tiny_training_args("unused", train_data=[f"cv:{cv}@train", f"disk:{pl}"], eval_data=[f"cv:{cv}@dev"],
                                    cv_languages=["pt", "en"])[1])  # fmt: skip
    assert new == old
    ids, languages, dev = new
    assert ids[-3:] == ["pt/rec0", "pt/rec1", "pt/rec2"] and len(ids) == 2 * 8 + 3  # Common Voice first, then the PLs
    assert set(languages) == {"en", "pt"} and len(dev) == 2 * 3


def test_the_deprecated_flags_log_one_warning_that_spells_the_same_data_as_specs(corpus, caplog):
    cv, pl = corpus / "cv", corpus / "pl"
    _, d, _ = tiny_training_args("unused", cv_root=str(cv), train_datasets=[str(pl)])
    with caplog.at_level("WARNING", logger="modeling_mlpl.training.arguments"):
        resolve_data(d)
    (record,) = [r for r in caplog.records if "deprecated" in r.getMessage()]
    assert record.getMessage() == ("--cv_root/--train_datasets are deprecated; the same data as specs: "
                                   f"--train_data cv:{cv}@train disk:{pl} --eval_data cv:{cv}@dev")  # fmt: skip


def test_data_specs_log_no_deprecation(corpus, caplog):
    with caplog.at_level("WARNING", logger="modeling_mlpl.training.arguments"):
        resolve_data(tiny_training_args("unused", train_data=[f"cv:{corpus / 'cv'}@train"])[1])
    assert not caplog.records


def test_a_pl_set_loads_the_same_rows_by_either_flag_and_by_open_dataset(corpus):
    pl = corpus / "pl"
    by_alias = load_sources(resolve_data(tiny_training_args("unused", train_datasets=[str(pl)])[1]).train,
                            tiny_training_args("unused")[1])[0][0]  # fmt: skip
    by_spec = load_sources(resolve_data(tiny_training_args("unused", train_data=[f"disk:{pl}"])[1]).train,
                           tiny_training_args("unused")[1])[0][0]  # fmt: skip
    opened = open_dataset(f"disk:{pl}")
    assert by_alias.to_dict() == by_spec.to_dict() == opened.to_dict()
    assert {"id", "audio", "text", "language", "duration", "token_times"} <= set(opened.column_names)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(train_data=["nowhere:/x"]), "--train_data 'nowhere:/x': expected KIND:PATH with KIND one of cv, vp"),
        (dict(train_data=["cv:/does/not/exist@train"]), "--train_data cv:/does/not/exist: path does not exist"),
        (dict(eval_data=["hub:org/name"]), "--eval_data 'hub:org/name': expected KIND:PATH"),
        (dict(train_datasets=["/pl"]), "give the training data once: --train_data, or the deprecated"),
        (dict(cv_root="/cv"), "give the training data once"),
        (dict(cv_eval_split="test"), "--cv_train_split/--cv_eval_split only apply with --cv_root"),
        (dict(train_data=[]), "no training data: give --train_data"),
    ],
)
def test_bad_training_data_is_refused_in_one_line_naming_the_flag(corpus, tmp_path, overrides, message):
    overrides = {"train_data": [f"cv:{corpus / 'cv'}@train"], **overrides}
    with pytest.raises(ConfigError) as err:
        validate_arguments(*tiny_training_args(str(tmp_path / "o"), **overrides))
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_the_cli_refuses_a_bad_spec_with_exit_2_and_one_line_naming_it(tmp_path, capsys):
    from modeling_mlpl.commands.train import main

    assert main(["--preset", "tiny", "--train_data", "cv:CV@train", "nowhere:/x", "--output_dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("train.py: error: --train_data 'nowhere:/x': expected KIND:PATH with KIND one of ")
    assert err.count("\n") == 1 and not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(learning_rate=-1.0), "--learning_rate must be > 0"),
        (dict(preset="huge"), "unknown preset 'huge'"),
        (dict(cv_root="/does/not/exist"), "cv:/does/not/exist: path does not exist"),
        (dict(cv_languages=["xx"]), "unknown language 'xx'"),
        (dict(train_weights=[1.0, 2.0]), "2 values for 1 training sources"),
        (dict(optimizer="sgd"), "unknown --optimizer"),
        (dict(layerdrop=1.5), "--layerdrop must be in [0, 1)"),
        (dict(max_batch_seconds=0.0), "--max_batch_seconds must be > 0"),
        (dict(num_threads=0), "--num_threads must be >= 1"),
    ],
)
def test_bad_config_values_are_rejected_with_a_clear_message(corpus, tmp_path, overrides, message):
    overrides = {"cv_root": str(corpus / "cv"), **overrides}
    with pytest.raises(ConfigError) as err:
        validate_arguments(*tiny_training_args(str(tmp_path / "o"), **overrides))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_data_language_unknown_to_the_checkpoint_is_rejected(trained, corpus, tmp_path):
    out, _ = trained
    # A checkpoint trained on de/en/pt cannot take Russian data: one-line error, no training.
    write_tone_cv(str(tmp_path / "cv_ru"), languages=("en",), n_train=2, n_dev=1)
    os.rename(tmp_path / "cv_ru" / "en", tmp_path / "cv_ru" / "ru")
    m, d, t = tiny_training_args(str(tmp_path / "o"), cv_root=str(tmp_path / "cv_ru"), max_steps=1)
    m.preset, m.init_from = None, out
    with pytest.raises(ConfigError, match=r"language\(s\) \['ru'\] that the model does not know"):
        train(m, d, t)


def test_cli_reads_a_config_file_and_reports_bad_values_in_one_line(corpus, tmp_path, capsys):
    # In process (a subprocess spends ~10 s importing on busy cores); main() returns the exit code.
    from modeling_mlpl.commands.train import main, parse_args

    config = tmp_path / "c.yaml"
    config.write_text(f"preset: tiny\ncv_root: {corpus / 'cv'}\noutput_dir: {tmp_path / 'o'}\nmax_steps: 2\n"
                      "cv_languages: [en, pt]\n")  # fmt: skip
    model_args, data_args, training_args = parse_args([str(config), "--learning_rate", "0.5"])
    assert (model_args.preset, data_args.cv_languages, training_args.max_steps) == ("tiny", ["en", "pt"], 2)
    assert training_args.learning_rate == 0.5  # the command line overrides the file
    assert main([str(config), "--max_steps", "-3"]) == 2
    assert capsys.readouterr().err.strip() == "train.py: error: --max_steps must be > 0, got -3"
    config.write_text("preset: tiny\nlearning_rte: 0.1\noutput_dir: x\n")
    assert main([str(config)]) == 2
    assert "unknown field(s) ['learning_rte']" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("model_flags", [[], ["--layerdrop", "0"]], ids=["layerdrop", "every_parameter_used"])
def test_two_cpu_processes_train_on_disjoint_data(corpus, tmp_path, model_flags):
    # layerdrop 0: DDP runs without its unused-parameter search (every parameter gets a gradient).
    out = tmp_path / "ddp"
    # torchrun sets RANK/WORLD_SIZE; Accelerate then uses gloo on CPU (as `accelerate launch --multi_gpu` would).
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           os.path.join(REPO, "run_scripts", "train.py"), "--preset", "tiny", "--cv_root", str(corpus / "cv"),
           "--output_dir", str(out), "--max_steps", "4", "--max_batch_seconds", "4", "--optimizer", "adamw",
           "--learning_rate", "1e-3", "--warmup_steps", "1", "--log_batch_ids", "true", "--num_threads", "1",
           "--eval_steps", "0", "--save_steps", "2", "--tensorboard", "false", *model_flags]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = []
    for r in (0, 1):
        with open(out / f"batch_ids.rank{r}.jsonl") as f:
            ranks.append([json.loads(line) for line in f])
    assert len(ranks[0]) == len(ranks[1]) == 4  # one batch per update on each rank
    for a, b in zip(*ranks):
        assert a["step"] == b["step"] and not set(a["ids"]) & set(b["ids"])
    seen = [i for rank in ranks for rec in rank if rec["epoch"] == 0 for i in rec["ids"]]
    assert len(seen) == len(set(seen))  # within an epoch no utterance is seen twice
    assert MLPLForCTC.from_pretrained(str(out)).config.languages == ["de", "en", "pt"]


def test_plot_training_writes_a_png_of_loss_and_dev_cer(trained, tmp_path):
    from modeling_mlpl.commands.plot_training import plot_runs

    out = plot_runs([trained[0]], str(tmp_path / "curves.png"), per_language=True)
    with open(out, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_push_to_hub_without_a_token_fails_before_training(tmp_path, monkeypatch):
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env["HF_HOME"] = str(tmp_path / "hf_home")  # no saved login
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "run_scripts", "train.py")
    result = subprocess.run(
        [sys.executable, script, "--preset", "tiny", "--cv_root", str(tmp_path), "--output_dir", str(tmp_path / "out"),
         "--push_to_hub", "true", "--hub_model_id", "me/mlpl", "--hub_stage", "stage1-multilingual"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "token" in result.stderr.lower()
    assert not (tmp_path / "out").exists()
