"""Teachers other than mlpl through the same pseudo-labeling job: transformers CTC models (wav2vec2,
HuBERT), MMS with per-language adapters; checkpoints of other kinds are refused before any work."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from helpers_pl import run_cli, write_audio_folder
from helpers_teachers import build_ctc_teacher, build_mms_teacher, build_unsupported_checkpoint
from modeling_mlpl.commands.pseudo_label import main
from modeling_mlpl.data.common import make_row, rows_to_dataset
from modeling_mlpl.pseudo_labeling import PseudoLabelConfig, PseudoLabeler, label_dataset
from modeling_mlpl.pseudo_labeling.shards import LABEL_PREFIX
from modeling_mlpl.pseudo_labeling.teachers import TeacherError, load_teacher, teacher_kind
from modeling_mlpl.resumable import file_hash, read_shard, read_shards, shard_path
from modeling_mlpl.text import normalize_transcript
from modeling_mlpl.tokenization_mlpl import transcript_characters

DURATIONS = [1.0, 2.5, 1.5, 3.0, 0.7, 2.0]


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    root = tmp_path_factory.mktemp("teacher_audio")
    return root, write_audio_folder(root, durations=DURATIONS)


@pytest.fixture(scope="module")
def wav2vec2(tmp_path_factory):
    return build_ctc_teacher(tmp_path_factory.mktemp("wav2vec2"), "wav2vec2", seed=0)


@pytest.fixture(scope="module")
def hubert(tmp_path_factory):
    return build_ctc_teacher(tmp_path_factory.mktemp("hubert"), "hubert", seed=1)


@pytest.fixture(scope="module")
def mms(tmp_path_factory):
    return build_mms_teacher(tmp_path_factory.mktemp("mms"))


def _pipeline_text(model_dir, wave, adapter=None) -> str:
    from transformers import AutoModelForCTC, AutoProcessor, pipeline

    model = AutoModelForCTC.from_pretrained(model_dir, **({"target_lang": adapter, "ignore_mismatched_sizes": True}
                                                          if adapter else {}))  # fmt: skip
    processor = AutoProcessor.from_pretrained(model_dir)
    if adapter:
        processor.tokenizer.set_target_lang(adapter)
    asr = pipeline("automatic-speech-recognition", model=model, tokenizer=processor.tokenizer,
                   feature_extractor=processor.feature_extractor)  # fmt: skip
    return asr(wave)["text"]


def _rows(out) -> dict[str, dict]:
    return {r["id"]: r for r in read_shards(out, LABEL_PREFIX)}


def _args(model, root, out, *extra) -> list[str]:
    return ["--model", str(model), "--data", f"folder:{root}", "--output_dir", str(out), "--threads", "1",
            "--io_threads", "1", *extra]  # fmt: skip


@pytest.mark.parametrize("name", ["wav2vec2", "hubert"])
def test_ctc_teacher_rows_equal_the_transformers_pipeline(name, audio, tmp_path, request):
    model_dir = request.getfixturevalue(name)
    root, ids = audio
    assert main(_args(model_dir, root, tmp_path / "pl", "--language", "pt", "--max_batch_seconds", "5")) == 0
    rows = _rows(tmp_path / "pl")
    assert sorted(rows) == sorted(ids)
    for uid in ids:
        wave, _ = sf.read(root / f"{uid}.wav", dtype="float32")
        row = rows[uid]
        assert row["text"] == normalize_transcript(_pipeline_text(model_dir, wave)) and row["text"]
        assert len(row["token_times"]) == len(transcript_characters(row["text"]))
        assert row["token_times"] == sorted(row["token_times"]) and row["token_times"][-1] < row["duration"]


def test_rows_name_their_teacher(wav2vec2, audio, tmp_path):
    root, ids = audio
    assert main(_args(wav2vec2, root, tmp_path / "pl", "--language", "pt")) == 0
    teacher = next(iter(_rows(tmp_path / "pl").values()))["teacher"]
    assert teacher == {"kind": "ctc", "name_or_path": str(wav2vec2), "revision": None,
                       "weights_hash": file_hash(f"{wav2vec2}/model.safetensors")}  # fmt: skip
    run = json.loads((tmp_path / "pl" / "pl_run.json").read_text())
    assert run["teacher"]["kind"] == "ctc" and run["teacher"]["weights_hash"] == teacher["weights_hash"]


def test_long_recordings_are_windowed_and_stitched_to_the_whole_recordings_frames(wav2vec2):
    """Windows with 2 s of context each side give (nearly) the frames of one whole-recording forward."""
    from modeling_mlpl.pseudo_labeling.teachers.base import DecodeOptions

    wave = np.concatenate([np.sin(np.arange(16000) * 0.02 * (1 + k % 5)) for k in range(23)]).astype(np.float32)
    windowed = load_teacher(wav2vec2, options=DecodeOptions(window_s=6.0, overlap_s=2.0, max_batch_seconds=12))
    whole = load_teacher(wav2vec2, options=DecodeOptions(window_s=None))
    lp_windows, lp_whole = windowed.log_probs([wave])[0], whole.log_probs([wave])[0]
    assert windowed.padding_stats.forward_calls > 1
    assert lp_windows.shape == lp_whole.shape
    assert (lp_windows.argmax(-1) == lp_whole.argmax(-1)).mean() > 0.9


def test_mms_adapters_switch_per_language_within_one_run(mms, audio, tmp_path):
    root, ids = audio
    rows = [make_row(f"{lang}-{uid}", str(root / f"{uid}.wav"), "", lang, sf.info(str(root / f"{uid}.wav")).duration)
            for uid in ids[:3] for lang in ("pt", "nl")]  # fmt: skip
    labeler = PseudoLabeler.from_pretrained(mms, PseudoLabelConfig(io_threads=1))
    label_dataset(rows_to_dataset(rows), tmp_path, labeler)
    out = {r["id"]: r for r in read_shard(shard_path(tmp_path, 0, LABEL_PREFIX))}
    for uid in ids[:3]:
        pt, nl = out[f"pt-{uid}"], out[f"nl-{uid}"]
        assert (pt["adapter"], nl["adapter"]) == ("por", "nld") and pt["teacher"]["kind"] == "mms"
        assert pt["text"] != nl["text"]
        wave, _ = sf.read(root / f"{uid}.wav", dtype="float32")
        assert pt["text"] == normalize_transcript(_pipeline_text(mms, wave, adapter="por"))
        assert nl["text"] == normalize_transcript(_pipeline_text(mms, wave, adapter="nld"))


def test_a_language_without_an_adapter_is_refused_before_any_shard(mms, audio, tmp_path, capsys):
    root, _ = audio
    assert main(_args(mms, root, tmp_path / "pl", "--language", "de")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no adapter for language 'de'" in err and "deu" in err
    assert not list(tmp_path.glob("pl/*.jsonl"))


def test_teacher_language_picks_the_adapter(mms):
    teacher = load_teacher(mms, teacher_language="de=nld")
    teacher.check_languages(["de", "pt"])  # de by the override, pt by the table
    assert teacher.adapter_code("de") == "nld"


def test_an_unsupported_checkpoint_is_refused_before_any_shard(audio, tmp_path, capsys):
    root, _ = audio
    model = build_unsupported_checkpoint(tmp_path / "made_up")
    assert main(_args(model, root, tmp_path / "pl", "--language", "pt")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'made-up-model'" in err and "supported" in err
    assert not (tmp_path / "pl").exists() or not list((tmp_path / "pl").iterdir())


def test_a_whisper_folder_is_never_loaded_as_an_mlpl_model(tmp_path):
    """The old bug: MLPLForCTC.from_pretrained on a Whisper folder gave a random model with a warning."""
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "whisper",
                                                      "architectures": ["WhisperForConditionalGeneration"]}))
    assert teacher_kind(json.loads((tmp_path / "config.json").read_text())) == "whisper"
    try:
        teacher = load_teacher(str(tmp_path))
    except (TeacherError, OSError):
        return  # no whisper teacher in this version, or no weights in the folder: refused, not guessed
    assert teacher.kind == "whisper"


def test_mlpl_only_options_are_refused_for_a_ctc_teacher(wav2vec2, audio, tmp_path, capsys):
    root, _ = audio
    assert main(_args(wav2vec2, root, tmp_path / "pl", "--language", "pt", "--models_per_language", "x/{lang}")) == 2
    assert "models_per_language cannot be used with a ctc teacher" in capsys.readouterr().err
    assert not list(tmp_path.glob("pl/*.jsonl"))


def test_auto_language_without_language_identification_is_a_clear_error(wav2vec2, audio, tmp_path, capsys):
    root, _ = audio
    assert main(_args(wav2vec2, root, tmp_path / "pl", "--language", "auto")) == 2
    assert "cannot detect languages: give --language or --lid_model" in capsys.readouterr().err


def test_interrupted_run_resumes_with_every_id_once(wav2vec2, audio, tmp_path):
    root, ids = audio
    out = tmp_path / "pl"
    args = _args(wav2vec2, root, out, "--language", "pt", "--max_batch_seconds", "3")
    assert main(args + ["--limit", "2"]) == 0  # a run stopped early (a trial run's --limit is resumable)
    assert 0 < len(list(read_shards(out, LABEL_PREFIX))) < len(ids)
    assert main(args + ["--resume"]) == 0
    labelled = [r["id"] for r in read_shards(out, LABEL_PREFIX)]
    assert sorted(labelled) == sorted(ids)


def test_resume_with_another_teacher_is_refused(wav2vec2, hubert, audio, tmp_path, capsys):
    root, _ = audio
    out = tmp_path / "pl"
    assert main(_args(wav2vec2, root, out, "--language", "pt", "--limit", "2")) == 0
    before = sorted(r["id"] for r in read_shards(out, LABEL_PREFIX))
    assert main(_args(hubert, root, out, "--language", "pt", "--resume")) == 2
    assert "was started with" in capsys.readouterr().err
    assert sorted(r["id"] for r in read_shards(out, LABEL_PREFIX)) == before


@pytest.mark.slow
def test_two_processes_label_disjoint_complete_shards_with_a_ctc_teacher(wav2vec2, audio, tmp_path):
    root, ids = audio
    out = tmp_path / "pl"
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                "--main_process_port", "29541"]  # fmt: skip
    result = run_cli(["--model", wav2vec2, "--data", f"folder:{root}", "--language", "pt", "--output_dir", str(out)],
                     launcher=launcher, env={"ACCELERATE_USE_CPU": "1"})  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    per_rank = [[r["id"] for r in read_shard(shard_path(out, rank, LABEL_PREFIX))] for rank in (0, 1)]
    assert per_rank[0] and per_rank[1] and not set(per_rank[0]) & set(per_rank[1])
    assert sorted(per_rank[0] + per_rank[1]) == sorted(ids)
