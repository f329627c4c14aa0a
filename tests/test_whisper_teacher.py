"""WhisperTeacher on a tiny random Whisper built offline (tests/helpers_whisper.py).

Random weights write random (but deterministic) text, so the tests check what holds for any
weights: the teacher writes what transformers' own ASR pipeline writes, forces the language it is
given, carries Whisper's checks in their ranges, and keeps long-form segment times inside the
recording.
"""

from __future__ import annotations

import math
import os

import pytest
from helpers_pl import varying_audio
from helpers_whisper import LANGUAGES, build_tiny_whisper

from modeling_mlpl.pseudo_labeling.teachers.base import TeacherError
from modeling_mlpl.pseudo_labeling.teachers.whisper import WhisperTeacher, compression_ratio, whisper_language
from modeling_mlpl.resumable import file_hash


@pytest.fixture(scope="session")
def whisper_dir(tmp_path_factory) -> str:
    """A tiny Whisper with alignment heads (word times). Do not modify it."""
    return build_tiny_whisper(tmp_path_factory.mktemp("tiny_whisper"), alignment_heads=True)


@pytest.fixture(scope="session")
def teacher(whisper_dir) -> WhisperTeacher:
    return WhisperTeacher(whisper_dir)


@pytest.fixture(scope="session")
def asr(whisper_dir):
    from transformers import pipeline

    return pipeline("automatic-speech-recognition", model=whisper_dir)


SHORT = [varying_audio(2.0, seed=1), varying_audio(4.5, seed=2), varying_audio(3.0, seed=3)]
SHORT_LANGUAGES = ["en", "pt", "nl"]


@pytest.fixture(scope="session")
def short_rows(teacher) -> list[dict]:
    return teacher.label(SHORT, SHORT_LANGUAGES)  # one length-sorted batch, rows back in input order


def test_each_row_text_equals_the_asr_pipeline_text_for_the_same_short_file(short_rows, asr):
    for wave, lang, row in zip(SHORT, SHORT_LANGUAGES, short_rows):
        expected = asr(wave.copy(), return_timestamps=True,
                       generate_kwargs={"language": lang, "task": "transcribe", "num_beams": 1})["text"]  # fmt: skip
        assert row["text"] == expected


def test_rows_without_timestamps_and_with_beams_equal_the_pipeline_default(whisper_dir, asr):
    # The pipeline's default for short audio: no timestamps; transformers 5 sets num_beams=5 for it.
    teacher = WhisperTeacher(whisper_dir, num_beams=5, timestamps=False)
    row = teacher.label(SHORT[:1], ["en"])[0]
    expected = asr(SHORT[0].copy(), generate_kwargs={"language": "en", "task": "transcribe", "num_beams": 5})["text"]
    assert row["text"] == expected
    assert row["segments"] == [{"start": 0.0, "end": 2.0, "text": row["text"]}]


def test_our_language_codes_reach_generate_as_whisper_codes(teacher, monkeypatch):
    seen = {}
    generate = teacher.model.generate

    def spy(*args, **kwargs):
        seen["language"] = kwargs["language"]
        return generate(*args, **kwargs)

    monkeypatch.setattr(teacher.model, "generate", spy)
    teacher.label(SHORT[:2], ["pt-BR", "nl_NL"])
    assert sorted(seen["language"]) == ["nl", "pt"]


def test_the_forced_language_changes_the_decoding(teacher):
    # Random weights may write the same argmax text after <|en|> and <|pt|>; the prompt still
    # conditions every step, so the tokens' log-probabilities differ.
    wave = varying_audio(3.0, seed=0)
    en, pt = teacher.label([wave, wave], ["en", "pt"])
    assert en["avg_logprob"] != pt["avg_logprob"]


def test_rows_carry_whisper_checks_in_sane_ranges(short_rows):
    for row in short_rows:
        assert row["decoder"] == "generate" and row["token_times"] == [] and row["num_frames"] is None
        assert row["avg_logprob"] <= 0.0
        assert row["confidence"] == pytest.approx(math.exp(row["avg_logprob"]), abs=1e-5)
        assert row["compression_ratio"] == pytest.approx(compression_ratio(row["text"]), abs=1e-5)
        assert row["compression_ratio"] > 0
        assert 0.0 <= row["no_speech_prob"] <= 1.0


def test_a_long_recording_yields_increasing_segments_within_it(teacher):
    seconds = 70.0
    row = teacher.label([varying_audio(seconds, seed=5)], ["en"])[0]
    segments = row["segments"]
    assert segments and segments[-1]["end"] > 30.0  # decoded past the first window
    starts = [s["start"] for s in segments]
    assert starts == sorted(starts)
    assert all(0.0 <= s["start"] <= s["end"] <= seconds for s in segments)
    assert all(0.0 <= w["start"] <= w["end"] <= seconds for w in row["words"])


def test_short_and_long_recordings_in_one_call_keep_their_order(teacher, short_rows):
    long = varying_audio(32.0, seed=6)
    rows = teacher.label([SHORT[0], long, SHORT[1]], ["en", "en", "pt"])
    assert [r["text"] for r in rows] == [short_rows[0]["text"], teacher.label([long], ["en"])[0]["text"],
                                         short_rows[1]["text"]]  # fmt: skip


def test_a_language_whisper_lacks_is_refused_before_any_work(teacher, monkeypatch):
    monkeypatch.setattr(teacher.model, "generate", lambda *a, **k: pytest.fail("generate ran"))
    with pytest.raises(TeacherError, match="'rm-sursilv'"):
        teacher.check_languages(["en", "rm-sursilv"])
    with pytest.raises(TeacherError, match="'fy-NL'"):  # the tiny checkpoint has no <|fy|>
        teacher.label(SHORT[:2], ["en", "fy-NL"])


@pytest.mark.parametrize("code, expected", [("pt", "pt"), ("pt-BR", "pt"), ("fy-NL", "fy"), ("jv", "jw"),
                                            ("nb", "no"), ("Portuguese", "pt"), ("rm-sursilv", None)])  # fmt: skip
def test_whisper_language_maps_our_codes_to_whisper_tokens(code, expected):
    known = ["pt", "fy", "jw", "no", "en"]
    assert whisper_language(code, known) == expected


def test_cantonese_gets_its_own_token_only_where_the_checkpoint_has_one():
    assert whisper_language("zh-HK", ["zh", "yue"]) == "yue"
    assert whisper_language("zh-HK", ["zh"]) == "zh"


def test_word_times_come_from_alignment_heads(teacher, short_rows):
    row = short_rows[1]
    assert teacher.run_options()["word_times"] is True
    assert row["words"] and all(w["word"] and 0.0 <= w["start"] <= w["end"] <= 4.5 for w in row["words"])


def test_a_checkpoint_without_alignment_heads_gives_no_words(tmp_path):
    teacher = WhisperTeacher(build_tiny_whisper(tmp_path / "no_heads", alignment_heads=False))
    assert teacher.run_options()["word_times"] is False
    assert teacher.label(SHORT[:1], ["en"])[0]["words"] == []


def test_detect_languages_gives_top_k_probabilities_best_first(teacher):
    detected = teacher.detect_languages(SHORT)
    assert len(detected) == len(SHORT)
    for top in detected:
        probs = [p for _, p in top]
        assert len(top) == 3 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-6
        assert all(lang in LANGUAGES for lang, _ in top)


def test_identity_names_the_kind_folder_and_weights_hash(teacher, whisper_dir):
    assert teacher.identity == {"kind": "whisper", "name_or_path": os.path.realpath(whisper_dir), "revision": None,
                                "weights_hash": file_hash(os.path.join(whisper_dir, "model.safetensors"))}  # fmt: skip


def test_compression_ratio_is_high_for_a_looping_text():
    assert compression_ratio("the cat sat on the mat " * 20) > 2.4  # openai's default hallucination threshold
    assert compression_ratio("the cat sat on the mat") < 2.4
    assert compression_ratio("") == 0.0


def test_from_pretrained_takes_the_labelers_batch_and_refuses_unknown_options(whisper_dir):
    from types import SimpleNamespace

    options = SimpleNamespace(window_s=10.0, overlap_s=2.0, max_batch_seconds=480.0, autocast_dtype=None)
    teacher = WhisperTeacher.from_pretrained(whisper_dir, options=options, num_beams=2)
    assert teacher.batch_size_s == 480.0 and teacher.run_options()["num_beams"] == 2
    with pytest.raises(TeacherError, match="beam_width"):
        WhisperTeacher.from_pretrained(whisper_dir, beam_width=4)
