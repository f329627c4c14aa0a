"""Teacher text the student can learn: normalisation rules, the student's vocabulary and the label-free
filters at merge time (modeling_mlpl.text, modeling_mlpl.pseudo_labeling.merge). Hand-written rows, no models."""

from __future__ import annotations

import json

import pytest

from helpers_pl import pl_record, write_shard
from modeling_mlpl.pseudo_labeling.merge import MergeFilters, load_student_vocab, merge_with_stats
from modeling_mlpl.resumable import read_shards
from modeling_mlpl.text import (
    PL_TEXT_RULES,
    count_digits,
    longest_word_run,
    most_repeated_ngram,
    normalize_pl_text,
    normalize_transcript,
)
from modeling_mlpl.tokenization_mlpl import MLPLTokenizer

WHISPER = {"kind": "whisper", "name_or_path": "openai/whisper-tiny", "revision": "main", "weights_hash": "abc"}
MMS = {"kind": "ctc", "name_or_path": "facebook/mms-1b-all", "revision": "main", "weights_hash": "def"}
# What the student (trained on Common Voice pt, case and punctuation kept) can write.
STUDENT_TEXTS = ["Olá, tudo bem? A casa é grande.", "O gato dorme ao sol da tarde quente."]


def whisper_row(uid: str, text: str, duration: float = 4.0, language: str = "pt", **fields) -> dict:
    """A Whisper teacher's shard row: no CTC times or confidence, Whisper's scores (confident speech
    unless `fields` says otherwise)."""
    whisper = {"text_raw": text, "teacher": WHISPER, "token_times": None, "confidence": None, "path_score": None,
               "ctc_score": None, "avg_logprob": -0.3, "compression_ratio": 1.2, "no_speech_prob": 0.01}  # fmt: skip
    return {**pl_record(uid, text, 0.5, language=language, duration=duration), **whisper, **fields}


def merge(tmp_path, rows, **filters):
    write_shard(tmp_path / "pl", rows)
    return merge_with_stats(tmp_path / "pl", None, MergeFilters(**filters), plot=False)


# --- normalisation rules ---------------------------------------------------------------------------


def test_none_rule_is_exactly_the_transcript_normalisation():
    text = " [Music]  Olá,\u00a0Mundo! 1984 "
    assert normalize_pl_text(text, "none") == normalize_transcript(text) == "[Music] Olá, Mundo! 1984"


def test_student_rule_keeps_case_punctuation_and_digits():
    assert normalize_pl_text("Em 1984, o Senhor Silva disse: «Sim!»", "student") == "Em 1984, o Senhor Silva disse: «Sim!»"


def test_student_rule_removes_non_speech_annotations():
    assert normalize_pl_text("[Music] Olá ♪ mundo <|endoftext|> [BLANK_AUDIO]", "student") == "Olá mundo"


def test_student_is_the_default_rule():
    assert normalize_pl_text("[Applause] Olá, Mundo!") == normalize_pl_text("[Applause] Olá, Mundo!", "student")


def test_lower_nopunct_writes_the_mms_convention():
    assert normalize_pl_text("Olá, Mundo! Tudo bem?", "lower_nopunct") == "olá mundo tudo bem"


def test_removing_punctuation_keeps_word_internal_apostrophes_and_hyphens():
    assert normalize_pl_text("L'homme — vingt-et-un, 'quoi'", "nopunct") == "L'homme vingt-et-un quoi"


def test_removing_punctuation_keeps_symbols_that_are_spoken():
    assert normalize_pl_text("Custa 5 € (ou 10%).", "nopunct") == "Custa 5 € ou 10%"


def test_lower_rule_lower_cases_turkish_dotted_and_dotless_i():
    assert normalize_pl_text("İstanbul IĞDIR", "lower", language="tr") == "istanbul ığdır"


def test_lower_result_is_nfc_composed():
    assert normalize_pl_text("ÉCOLE", "lower") == "\u00e9cole"


def test_an_unknown_rule_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown text rule 'upper'; one of none, student"):
        normalize_pl_text("x", "upper")


def test_every_rule_is_idempotent():
    text = "[Music] Olá, Mundo! L'homme — 1984 €"
    for rule in PL_TEXT_RULES:
        once = normalize_pl_text(text, rule)
        assert normalize_pl_text(once, rule) == once, rule


def test_digits_are_counted_in_any_script():
    assert count_digits("Em 1984 e ٣") == 5
    assert count_digits("sem números") == 0


# --- loop measures ---------------------------------------------------------------------------------


def test_longest_word_run_counts_back_to_back_repeats_only():
    assert longest_word_run("a b b b c b".split()) == 3
    assert longest_word_run([]) == 0


def test_most_repeated_ngram_counts_overlapping_occurrences():
    assert most_repeated_ngram("a b a b a b".split(), 2) == 3
    assert most_repeated_ngram("a b".split(), 3) == 0


# --- the student's vocabulary at merge time --------------------------------------------------------


@pytest.fixture
def student_vocab(tmp_path):
    MLPLTokenizer.build_from_texts(STUDENT_TEXTS, save_directory=str(tmp_path / "student"))
    return load_student_vocab(tmp_path / "student")


def test_student_vocab_is_read_from_a_saved_tokenizer(student_vocab):
    assert {"|", "á", ",", "O"} <= student_vocab and "€" not in student_vocab


def test_a_folder_without_a_tokenizer_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="student vocabulary: no tokenizer in"):
        load_student_vocab(tmp_path)


def test_unwritable_characters_are_counted_per_language_and_their_rows_dropped(tmp_path, student_vocab):
    rows = [whisper_row("pt/ok", "O gato dorme."), whisper_row("pt/euro", "A casa custa 5 € e 7 €."),
            whisper_row("pt/x", "O táxi"), whisper_row("es/ok", "O sol", language="es")]  # fmt: skip
    dataset, stats = merge(tmp_path, rows, student_vocab=student_vocab)
    assert sorted(dataset["id"]) == ["es/ok", "pt/ok"]
    assert stats["dropped"] == {"unwritable_chars": 2}
    assert stats["unwritable_chars"] == {"pt": {"rows": 2, "chars": {"€": 2, "5": 1, "7": 1, "x": 1, "i": 1}}}


def test_rows_with_unwritable_characters_stay_in_the_shards_with_their_raw_text(tmp_path, student_vocab):
    rows = [whisper_row("pt/euro", "Custa 5 €.", text_raw=" Custa 5 €."), whisper_row("pt/ok", "O gato.")]
    dataset, _ = merge(tmp_path, rows, student_vocab=student_vocab)
    assert dataset["id"] == ["pt/ok"]
    shard = {r["id"]: r for r in read_shards(tmp_path / "pl", "pl")}
    assert shard["pt/euro"]["text_raw"] == " Custa 5 €."


def test_the_report_names_the_unwritable_characters(tmp_path, student_vocab):
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"x")  # save_to_disk stats every referenced file
    write_shard(tmp_path / "pl", [whisper_row("pt/euro", "custa €.", audio=str(audio))])
    merge_with_stats(tmp_path / "pl", tmp_path / "merged", MergeFilters(student_vocab=student_vocab), plot=False)
    saved = json.loads((tmp_path / "merged" / "stats.json").read_text(encoding="utf-8"))
    assert saved["unwritable_chars"] == {"pt": {"rows": 1, "chars": {"€": 1}}}
    assert saved["filters"]["student_vocab"] == f"{len(student_vocab)} tokens"
    assert "- pt: 1 rows; '€' 1" in (tmp_path / "merged" / "stats.md").read_text(encoding="utf-8")


def test_without_a_student_vocab_no_row_is_checked(tmp_path):
    dataset, stats = merge(tmp_path, [whisper_row("pt/euro", "Custa €.")])
    assert len(dataset) == 1 and stats["unwritable_chars"] == {}


# --- label-free filters ----------------------------------------------------------------------------


def test_compression_ratio_filter_drops_only_rows_above_it(tmp_path):
    rows = [whisper_row("a", "um dois", compression_ratio=2.39), whisper_row("b", "um dois", compression_ratio=2.41)]
    dataset, stats = merge(tmp_path, rows, max_compression_ratio=2.4)
    assert dataset["id"] == ["a"] and stats["dropped"] == {"high_compression_ratio": 1}


def test_avg_logprob_filter_drops_only_rows_below_it(tmp_path):
    rows = [whisper_row("a", "um dois", avg_logprob=-0.9), whisper_row("b", "um dois", avg_logprob=-1.1)]
    dataset, stats = merge(tmp_path, rows, min_avg_logprob=-1.0)
    assert dataset["id"] == ["a"] and stats["dropped"] == {"low_avg_logprob": 1}


def test_no_speech_needs_a_high_no_speech_prob_and_a_low_avg_logprob(tmp_path):
    rows = [whisper_row("silence", "Obrigado.", no_speech_prob=0.9, avg_logprob=-1.5),
            whisper_row("confident", "Obrigado.", no_speech_prob=0.9, avg_logprob=-0.2),
            whisper_row("speech", "Obrigado.", no_speech_prob=0.1, avg_logprob=-0.2)]  # fmt: skip
    dataset, stats = merge(tmp_path, rows, max_no_speech_prob=0.6, min_avg_logprob=None)
    assert sorted(dataset["id"]) == ["confident", "speech"] and stats["dropped"] == {"no_speech": 1}


def test_silence_is_counted_as_no_speech_not_as_low_avg_logprob(tmp_path):
    _, stats = merge(tmp_path, [whisper_row("silence", "Obrigado.", no_speech_prob=0.9, avg_logprob=-1.5)])
    assert stats["dropped"] == {"no_speech": 1}


def test_repeated_ngram_filter_drops_a_decoder_loop(tmp_path):
    loop = "e então " * 3 + "e então fim"
    rows = [whisper_row("loop", loop), whisper_row("fine", "e então e então fim")]
    dataset, stats = merge(tmp_path, rows, max_repeated_ngram=3, repeated_ngram_size=2)
    assert dataset["id"] == ["fine"] and stats["dropped"] == {"repeated_ngram": 1}


def test_chars_per_second_filter_drops_an_implausible_speaking_rate(tmp_path):
    rows = [whisper_row("fast", "a" * 41, duration=2.0), whisper_row("ok", "a" * 40, duration=2.0)]
    dataset, stats = merge(tmp_path, rows, max_chars_per_second=20.0)
    assert dataset["id"] == ["ok"] and stats["dropped"] == {"high_chars_per_second": 1}


def test_rows_without_a_score_pass_its_filter(tmp_path):
    ctc = pl_record("ctc", "um dois", 0.9, language="pt", teacher=MMS)  # no Whisper scores at all
    partial = whisper_row("partial", "um dois", compression_ratio=None, avg_logprob=None, no_speech_prob=0.99)
    dataset, stats = merge(tmp_path, [ctc, partial], max_compression_ratio=1.0, min_avg_logprob=0.0,
                           max_no_speech_prob=0.0)  # fmt: skip
    assert sorted(dataset["id"]) == ["ctc", "partial"] and stats["dropped"] == {}


def test_a_row_without_confidence_passes_min_confidence_and_top_percent(tmp_path):
    rows = [whisper_row("w", "um dois"), pl_record("low", "um dois", 0.1, language="pt"),
            pl_record("high", "um dois", 0.9, language="pt")]  # fmt: skip
    dataset, stats = merge(tmp_path, rows, top_percent=50)
    assert sorted(dataset["id"]) == ["high", "w"] and stats["dropped"] == {"below_top_percent": 1}


# --- what the merged set says about its teachers ---------------------------------------------------


def test_teacher_columns_reach_the_merged_dataset(tmp_path):
    dataset, stats = merge(tmp_path, [whisper_row("w", "Olá.", text_raw=" Olá."), pl_record("m", "olá", 0.9)])
    rows = {r["id"]: r for r in dataset}
    assert rows["w"]["text_raw"] == " Olá." and rows["w"]["teacher"] == WHISPER
    assert rows["w"]["compression_ratio"] == 1.2 and rows["m"]["teacher"] is None
    assert stats["teachers"] == {"mlpl:m (greedy)": 1, "whisper:openai/whisper-tiny": 1}


def test_rows_with_digits_are_counted_per_language(tmp_path):
    rows = [whisper_row("a", "Em 1984."), whisper_row("b", "Sem números."), whisper_row("c", "Dia 3", language="es")]
    _, stats = merge(tmp_path, rows)
    assert {lang: s["rows_with_digits"] for lang, s in stats["languages"].items()} == {"es": 1, "pt": 1}


# --- the pseudo_label command's merge flags --------------------------------------------------------


def test_merge_only_reads_the_student_vocab_and_the_filter_flags(tmp_path, student_vocab):
    from modeling_mlpl.commands.pseudo_label import main

    audio = tmp_path / "a.wav"
    audio.write_bytes(b"x")
    rows = [whisper_row("pt/euro", "custa €.", audio=str(audio)), whisper_row("pt/ok", "O gato.", audio=str(audio)),
            whisper_row("pt/loop", "O gato.", compression_ratio=3.0, audio=str(audio))]  # fmt: skip
    write_shard(tmp_path / "pl", rows)
    assert main(["--merge_only", "--output_dir", str(tmp_path / "pl"), "--student_vocab_from", str(tmp_path / "student"),
                 "--max_compression_ratio", "2.4", "--min_avg_logprob", "none"]) == 0  # fmt: skip
    stats = json.loads((tmp_path / "pl" / "merged" / "stats.json").read_text(encoding="utf-8"))
    assert stats["dropped"] == {"unwritable_chars": 1, "high_compression_ratio": 1}
    assert stats["filters"]["min_avg_logprob"] is None


def test_merge_only_with_a_folder_without_a_tokenizer_is_a_one_line_error(tmp_path, capsys):
    from modeling_mlpl.commands.pseudo_label import main

    write_shard(tmp_path / "pl", [whisper_row("pt/ok", "O gato.")])
    assert main(["--merge_only", "--output_dir", str(tmp_path / "pl"), "--student_vocab_from", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pseudo_label.py: error: student vocabulary: no tokenizer in") and "\n" not in err
