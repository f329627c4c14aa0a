"""Test-set evaluation: predictions JSONL (resumable), greedy vs LM tables, CLI errors."""

import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf
import torch
from conftest import TINY_TEXTS, make_tone
from helpers_lm import build_toy_lm

from modeling_mlpl.decoding.lm_decoder import LMDecoder, attach_lms
from modeling_mlpl.evaluation.test_sets import evaluate_model, load_eval_sets, load_model, report_from_predictions
from modeling_mlpl.resumable import read_shard


@pytest.fixture(scope="module")
def model_with_lm(tiny_checkpoint, tmp_path_factory):
    directory = tmp_path_factory.mktemp("model") / "ckpt"
    shutil.copytree(tiny_checkpoint, directory)
    lm = build_toy_lm(tmp_path_factory.mktemp("lm"), [TINY_TEXTS[0], "the cat sat", "on the mat"] * 3)
    attach_lms(directory, {"en": lm.directory}, beam_width=8)
    return directory


@pytest.fixture()
def audio_folder(tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    for i, text in enumerate(["the cat sat", "on the mat", "the mat"]):
        sf.write(folder / f"utt{i}.wav", make_tone(1.0 + 0.3 * i, seed=i), 16000)
        (folder / f"utt{i}.txt").write_text(text)
    return folder


def test_attach_lms_writes_a_loadable_decoder_for_the_tokenizer_vocab(model_with_lm):
    decoder = LMDecoder.from_pretrained(model_with_lm)
    vocab = list(json.loads((model_with_lm / "vocab.json").read_text()))
    assert decoder.languages == ["en"] and decoder.config.beam_width == 8
    assert sorted(decoder.config.vocab) == sorted(vocab)


def test_evaluation_writes_greedy_and_lm_columns_and_resumes(model_with_lm, audio_folder, tmp_path):
    sets = load_eval_sets([f"folder:{audio_folder}"], languages=["en"])
    out = tmp_path / "eval"
    summary = evaluate_model(model_with_lm, sets, out, window_s=None, progress=False,
                             save_logits_to=tmp_path / "logits.npz")  # fmt: skip
    lines = (out / "predictions.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 3 and all("prediction_lm" in r for r in records)
    assert {r["reference"] for r in records} == {"the cat sat", "on the mat", "the mat"}
    assert "| CER greedy | WER greedy | CER LM | WER LM |" in (out / "metrics.md").read_text()
    assert summary["n_utterances"] == 3 and (tmp_path / "logits.npz").exists()
    assert all(isinstance(r["prediction_lm"], str) and r["group"] == "folder/audio/en" for r in records)

    # A second run skips the ids already written; the report is recomputable from the file.
    again = evaluate_model(model_with_lm, sets, out, window_s=None, progress=False)
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 3
    assert report_from_predictions(out / "predictions.jsonl")["per_group"] == again["per_group"]


def test_lm_params_decode_like_a_decoder_saved_with_those_weights(model_with_lm, audio_folder, tmp_path):
    """--lm-params (per-model alpha/beta from tune_lm.py) must act exactly as if they were saved."""
    sets = load_eval_sets([f"folder:{audio_folder}"], languages=["en"])
    params = {"en": {"alpha": 3.0, "beta": -2.0}}
    saved = tmp_path / "saved"
    shutil.copytree(model_with_lm, saved)
    decoder = LMDecoder.from_pretrained(saved)
    assert (decoder.config.languages["en"].alpha, decoder.config.languages["en"].beta) != (3.0, -2.0)
    decoder.set_params("en", alpha=3.0, beta=-2.0)
    decoder.save_pretrained(saved)

    def lm_column(out, **kwargs):
        evaluate_model(model_with_lm, sets, out, window_s=None, progress=False, **kwargs)
        return [json.loads(line)["prediction_lm"] for line in (out / "predictions.jsonl").read_text().splitlines()]

    overridden = lm_column(tmp_path / "a", lm_params=params)
    assert overridden == lm_column(tmp_path / "b", lm_dir=saved)
    assert overridden != lm_column(tmp_path / "c")  # the weights matter here, so the override was applied


def test_unreadable_audio_is_skipped_not_fatal(model_with_lm, audio_folder, tmp_path):
    (audio_folder / "utt1.wav").write_bytes(b"RIFF garbage")
    sets = load_eval_sets([f"folder:{audio_folder}"], languages=["en"])
    summary = evaluate_model(model_with_lm, sets, tmp_path / "eval", use_lm=False, window_s=None, progress=False)
    assert summary["n_utterances"] == 2 and list(summary["decoders"]) == ["prediction"]


REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "run_scripts" / "evaluate.py"


def load_script(name):
    """A command module (run_scripts/NAME.py runs it), so its main() runs in-process (no interpreter start-up)."""
    return importlib.import_module(f"modeling_mlpl.commands.{name}")


def test_cli_reports_user_errors_in_one_line(tmp_path, capsys):
    code = load_script("evaluate").main(["--model", str(tmp_path), "--data", f"cv:{tmp_path}/nope", "--output_dir", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("evaluate.py: error:") and len(err.strip().splitlines()) == 1


def _metrics(out):
    return json.loads((out / "metrics.json").read_text())


def _evaluate_argv(model, folder, out):
    return ["--model", str(model), "--data", f"folder:{folder}", "--languages", "en", "--out", str(out),
            "--window-s", "0"]  # fmt: skip


def test_a_rerun_after_a_torn_last_line_redoes_that_utterance_and_equals_an_uninterrupted_run(
        model_with_lm, audio_folder, tmp_path, capsys):  # fmt: skip
    evaluate = load_script("evaluate").main
    assert evaluate(_evaluate_argv(model_with_lm, audio_folder, tmp_path / "whole")) == 0
    out = tmp_path / "killed"
    assert evaluate(_evaluate_argv(model_with_lm, audio_folder, out)) == 0
    predictions = out / "predictions.jsonl"
    lines = predictions.read_bytes().splitlines(keepends=True)
    predictions.write_bytes(b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # a kill in mid-write
    capsys.readouterr()
    assert evaluate(_evaluate_argv(model_with_lm, audio_folder, out)) == 0  # the same command resumes
    assert "accounting: found 3 = decoded 1 + failed 0 + skipped 0 + already done 2" in capsys.readouterr().out
    ids = [json.loads(line)["id"] for line in predictions.read_bytes().splitlines()]  # every line whole
    assert sorted(ids) == sorted({f"folder/audio/utt{i}" for i in range(3)})
    assert _metrics(out) == _metrics(tmp_path / "whole")


@pytest.mark.slow
def test_evaluate_killed_with_sigkill_mid_run_resumes_to_every_id_once_and_the_uninterrupted_metrics(
        tiny_checkpoint, tmp_path):  # fmt: skip
    folder = tmp_path / "audio"
    folder.mkdir()
    n = 320  # 10 chunks of 32 (one append each): the kill lands after the first and before the last
    for i in range(n):
        sf.write(folder / f"utt{i:03d}.wav", make_tone(0.6 + 0.01 * (i % 40), frequency=150.0 + i, seed=i), 16000)
        (folder / f"utt{i:03d}.txt").write_text(["the cat sat", "on the mat", "the mat"][i % 3])
    out = tmp_path / "eval"
    predictions = out / "predictions.jsonl"
    command = [sys.executable, str(SCRIPT), *_evaluate_argv(tiny_checkpoint, folder, out), "--no-lm"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not (predictions.exists() and predictions.stat().st_size):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = [r["id"] for r in read_shard(predictions)]
    assert 0 < len(written) < n, "the kill must land mid-run"

    resumed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"decoded {n - len(written)} + failed 0 + skipped 0 + already done {len(written)}" in resumed.stdout
    ids = [json.loads(line)["id"] for line in predictions.read_bytes().splitlines()]  # every line whole
    assert len(ids) == len(set(ids)) == n
    sets = load_eval_sets([f"folder:{folder}"], languages=["en"])
    whole = evaluate_model(tiny_checkpoint, sets, tmp_path / "whole", use_lm=False, window_s=None, progress=False)
    assert _metrics(out) == _metrics(tmp_path / "whole")
    assert whole["n_utterances"] == n


def test_cli_pipeline_build_lm_evaluate_tune(model_with_lm, audio_folder, tmp_path, capsys):
    text = tmp_path / "en.txt"
    text.write_text("the cat sat\non the mat\nthe mat\n" * 3)
    processor_dir = tmp_path / "proc"
    shutil.copytree(model_with_lm, processor_dir)
    assert load_script("build_lm").main(["--text", f"en={text}", "--output_dir", str(tmp_path / "lm"),
                                         "--processor-dir", str(processor_dir), "--order", "2"]) == 0  # fmt: skip
    assert (tmp_path / "lm/en/lm.bin").exists()
    assert load_script("evaluate").main(["--model", str(processor_dir), "--data", f"folder:{audio_folder}",
                                         "--languages", "en", "--output_dir", str(tmp_path / "eval"), "--window-s", "0",
                                         "--save-logits", str(tmp_path / "dev.npz")]) == 0  # fmt: skip
    assert "WER LM" in capsys.readouterr().out
    assert load_script("tune_lm").main(["--processor-dir", str(processor_dir), "--logits", str(tmp_path / "dev.npz"),
                                        "--alphas", "0.5", "1.0", "--betas", "0", "--num-workers", "1"]) == 0  # fmt: skip
    tuning = json.loads((processor_dir / "language_model/tuning.json").read_text())
    assert tuning["en"]["score"] <= tuning["en"]["initial_score"]
    config = LMDecoder.from_pretrained(processor_dir).config.languages["en"]
    assert (config.alpha, config.beta) == (tuning["en"]["alpha"], tuning["en"]["beta"])


def test_asr_pipeline_decodes_with_the_saved_lm(model_with_lm):
    from transformers import pipeline

    decoder = LMDecoder.from_pretrained(model_with_lm)
    asr_lm = pipeline("automatic-speech-recognition", model=str(model_with_lm), decoder=decoder)
    asr = pipeline("automatic-speech-recognition", model=str(model_with_lm))
    audio = make_tone(1.5, seed=7)
    out = asr_lm(audio, decoder_kwargs={"language": "en", "beam_width": 8})
    # Same logits as the decoder fed by hand: the pipeline really ran our beam search.
    model, processor = load_model(model_with_lm)
    inputs = processor.feature_extractor(audio, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits[0]
    assert out["text"] == decoder.decode(logits, "en", beam_width=8)
    assert asr(audio)["text"] == processor.batch_decode(logits[None], use_lm=False)[0]


def test_processor_with_a_language_model_decodes_with_it_and_saves_it(model_with_lm, tmp_path):
    from modeling_mlpl import MLPLProcessor

    model, processor = load_model(model_with_lm)
    assert processor.lm_decoder is not None
    with torch.no_grad():
        logits = model(**processor(audio=make_tone(1.5, seed=7), sampling_rate=16000)).logits
    expected = LMDecoder.from_pretrained(model_with_lm).decode(logits[0], "en", beam_width=8)
    assert processor.batch_decode(logits, languages="en", beam_width=8) == [expected]
    processor.save_pretrained(tmp_path)
    reloaded = MLPLProcessor.from_pretrained(tmp_path)
    assert reloaded.batch_decode(logits, languages="en", beam_width=8) == [expected]
    assert reloaded.batch_decode(logits, use_lm=False) == processor.greedy_decode(logits)
    reloaded.lm_decoder = None
    with pytest.raises(ValueError, match="no language_model"):
        reloaded.batch_decode(logits, use_lm=True)


@pytest.mark.parametrize("make_dir", [False, True])
def test_cli_refuses_an_lm_dir_without_a_language_model(tiny_checkpoint, audio_folder, tmp_path, capsys, make_dir):
    lm_dir = tmp_path / "lm"
    if make_dir:
        lm_dir.mkdir()
    code = load_script("evaluate").main(["--model", tiny_checkpoint, "--data", f"folder:{audio_folder}",
                                         "--languages", "en", "--output_dir", str(tmp_path / "o"), "--lm-dir", str(lm_dir)])
    where = "it holds no language_model/decoder_config.json" if make_dir else "no such folder"
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"evaluate.py: error: --lm-dir {lm_dir}: {where}; build an LM with run_scripts/build_lm.py, or leave "
        "--lm-dir out (greedy decoding)")  # fmt: skip
    assert not (tmp_path / "o" / "predictions.jsonl").exists()


def test_cli_names_a_missing_split_not_the_language(tiny_checkpoint, tmp_path, capsys):
    from tests import helpers_data as h

    h.write_common_voice(tmp_path / "cv", "pt")
    code = load_script("evaluate").main(["--model", tiny_checkpoint, "--data", f"cv:{tmp_path / 'cv'}",
                                         "--languages", "pt", "--split", "nosuch", "--output_dir", str(tmp_path / "o")])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"evaluate.py: error: no split 'nosuch' for Common Voice language 'pt' in {tmp_path / 'cv' / 'pt'}; "
        "available: test, train")  # fmt: skip
