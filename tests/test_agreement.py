"""PL selection by agreement (modeling_mlpl.pseudo_labeling.agreement) on constructed greedy/LM pairs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from datasets import load_from_disk

from modeling_mlpl.augment import crop_transcript
from modeling_mlpl.evaluation.metrics import ErrorCounts, error_counts
from modeling_mlpl.pseudo_labeling.agreement import (
    AgreementConfig,
    Segment,
    apply_selection,
    choose_threshold,
    cut_segments,
    score_segments,
    segment_truth_counts,
    select_by_agreement,
    select_by_consensus,
)
from modeling_mlpl.pseudo_labeling.merge import records_to_dataset
from modeling_mlpl.tokenization_mlpl import transcript_characters
from modeling_mlpl.data import open_dataset

def cli_main():
    from modeling_mlpl.commands.select_pseudo_labels import main

    return main


# save_to_disk sizes the audio files; the selection never reads them, so any existing file will do.
AUDIO = str(Path(__file__).resolve())
# Two recordings: 25 words over 28 s (three 10 s segments) and 8 words over 9 s (one segment).
WORDS_A = ("uma casa nova fica perto do rio grande onde vivem muitas pessoas felizes com os seus filhos "
           "e amigos que gostam de cantar todas noites").split()  # fmt: skip
WORDS_B = "o gato dorme ao sol da tarde quente".split()


def timed(words, start=0.2, word_s=0.8, gap_s=0.3):
    """Words with CTC-like times: each `word_s` long, `gap_s` of pause between them."""
    out, t = [], start
    for w in words:
        out.append((w, t, t + word_s))
        t += word_s + gap_s
    return out


def label(rec_id, words, duration, language="pt", offset=0.0, decoder="greedy"):
    """A merged-PL record: text, one time per CTC target (delimiters in the pauses), words."""
    times = []
    for i, (w, start, end) in enumerate(words):
        n = len(transcript_characters(w))
        times += [round(start + (end - start) * j / n, 3) for j in range(n)]
        if i + 1 < len(words):
            times.append(round((end + words[i + 1][1]) / 2, 3))
    return {
        "id": rec_id, "audio": AUDIO, "offset": offset, "duration": duration,
        "language": language, "text": " ".join(w for w, _, _ in words), "confidence": 0.9, "token_times": times,
        "words": [{"word": w, "start": s, "end": e} for w, s, e in words], "path_score": -0.1, "ctc_score": -0.2,
        "num_frames": int(duration * 100), "lid_top_k": [], "language_source": "given", "model": "m",
        "decoder": decoder,
    }  # fmt: skip


def replace(words, index, new):
    return [(new, s, e) if i == index else (w, s, e) for i, (w, s, e) in enumerate(words)]


def write_pair(tmp_path, greedy_records, lm_records):
    greedy, lm = tmp_path / "greedy", tmp_path / "lm"
    records_to_dataset(greedy_records).save_to_disk(str(greedy))
    records_to_dataset(lm_records).save_to_disk(str(lm))
    return greedy, lm


@pytest.fixture
def recordings():
    return [label("pt/a", timed(WORDS_A), 28.0, offset=2.0), label("pt/b", timed(WORDS_B), 9.0)]


def select(tmp_path, greedy_records, lm_records, **config):
    greedy, lm = write_pair(tmp_path, greedy_records, lm_records)
    config.setdefault("min_cps", 0.0)
    config.setdefault("max_cps", 1000.0)
    return select_by_agreement(greedy, lm, tmp_path / "out", AgreementConfig(**config), plot=False)


def test_identical_decodes_keep_every_segment(tmp_path, recordings):
    dataset, stats = select(tmp_path, recordings, recordings, max_disagreement=0.0)
    assert stats["segments"] == 4 and stats["kept"] == 4 and len(dataset) == 4
    assert " ".join(r["text"] for r in dataset if r["id"].startswith("pt/a#")) == " ".join(WORDS_A)


def test_segments_are_at_most_segment_seconds(tmp_path, recordings):
    dataset, _ = select(tmp_path, recordings, recordings, segment_seconds=5.0)
    assert len(dataset) > 4
    assert max(dataset["duration"]) <= 5.0


def test_disagreeing_segment_is_dropped_at_a_low_threshold_and_kept_at_a_high_one(tmp_path, recordings):
    greedy = [label("pt/a", replace(replace(timed(WORDS_A), 10, "muitos"), 11, "pesoas"), 28.0, offset=2.0),
              recordings[1]]  # fmt: skip
    low, stats = select(tmp_path / "low", greedy, recordings, max_disagreement=0.02)
    assert stats["dropped"]["disagreement"] == 1
    assert "muitas pessoas" not in " ".join(low["text"])
    high, _ = select(tmp_path / "high", greedy, recordings, max_disagreement=0.5)
    assert "muitas pessoas" in " ".join(high["text"])


def test_label_source_greedy_labels_with_the_greedy_words(tmp_path, recordings):
    greedy = [label("pt/a", replace(timed(WORDS_A), 10, "muitos"), 28.0, offset=2.0), recordings[1]]
    dataset, _ = select(tmp_path, greedy, recordings, max_disagreement=1.0, label_source="greedy")
    assert "muitos" in " ".join(dataset["text"])


def test_a_word_repeated_three_times_drops_its_segment(tmp_path, recordings):
    loop = timed("o gato gato gato dorme ao sol".split())
    lm = [recordings[0], label("pt/b", loop, 9.0)]
    _, stats = select(tmp_path, lm, lm)
    assert stats["dropped"]["repetition"] == 1 and stats["kept"] == 3


def test_a_repeated_trigram_drops_its_segment(tmp_path, recordings):
    loop = timed("o gato dorme e o gato dorme".split())
    lm = [recordings[0], label("pt/b", loop, 9.0)]
    _, stats = select(tmp_path, lm, lm)
    assert stats["dropped"]["repetition"] == 1


def test_implausible_characters_per_second_are_dropped_with_bounds_from_the_data(tmp_path, recordings):
    burst = [("a" * 60, 0.5, 1.5)]  # 60 characters in about 2 s of audio
    lm = recordings + [label("pt/c", burst, 3.0)]
    greedy, lm_dir = write_pair(tmp_path, lm, lm)
    dataset, stats = select_by_agreement(greedy, lm_dir, tmp_path / "out", AgreementConfig(), plot=False)
    assert stats["dropped"]["high_cps"] == 1
    assert not any(i.startswith("pt/c") for i in dataset["id"])


def test_too_few_characters_per_second_are_dropped(tmp_path, recordings):
    _, stats = select(tmp_path, recordings, recordings, min_cps=50.0, max_cps=100.0)
    assert stats["kept"] == 0 and stats["dropped"]["low_cps"] == 4


def test_a_label_without_times_is_dropped_as_unaligned(tmp_path, recordings):
    unaligned = {**recordings[1], "token_times": [], "words": [], "decoder": "transcript_unaligned"}
    _, stats = select(tmp_path, recordings, [recordings[0], unaligned])
    assert stats["dropped"]["unaligned"] == 1 and stats["kept"] == 3


def test_kept_segments_have_unique_ids_and_rebased_times(tmp_path, recordings):
    dataset, _ = select(tmp_path, recordings, recordings)
    rows = dataset.to_list()
    assert len({r["id"] for r in rows}) == len(rows)
    for r in rows:
        assert all(0.0 <= t <= r["duration"] for t in r["token_times"])
        assert len(r["token_times"]) == len(transcript_characters(r["text"]))
        assert crop_transcript(r["text"], r["token_times"], 0.0, r["duration"]) == r["text"]
        assert all(0.0 <= w["start"] < w["end"] <= r["duration"] for w in r["words"])
    second = next(r for r in rows if r["id"] == "pt/a#1")
    start_of = {w: s for w, s, _ in timed(WORDS_A)}
    first_word = second["words"][0]["word"]
    # the first character of the segment's first word starts where it did in the recording (offset 2 s)
    assert second["offset"] + second["token_times"][0] == pytest.approx(2.0 + start_of[first_word])
    assert second["offset"] + second["words"][0]["start"] == pytest.approx(2.0 + start_of[first_word])


def test_the_trainers_loader_opens_the_output(tmp_path, recordings):
    dataset, _ = select(tmp_path, recordings, recordings)
    loaded = open_dataset(f"disk:{tmp_path / 'out' / 'dataset'}")
    assert len(loaded) == len(dataset)
    assert {"offset", "duration", "token_times", "text", "language"} <= set(loaded.column_names)


def test_the_trainer_reads_each_segments_own_audio(tmp_path, recordings):
    from helpers_pl import varying_audio
    from modeling_mlpl.audio import write_audio
    from modeling_mlpl.training.train_data import SourceStats, TrainingSet

    audio = varying_audio(30.0)
    write_audio(tmp_path / "a.wav", audio)  # save_to_disk embeds the bytes in the PL datasets
    real = [{**r, "audio": str(tmp_path / "a.wav")} for r in recordings]
    select(tmp_path, real, real)
    loaded = open_dataset(f"disk:{tmp_path / 'out' / 'dataset'}")
    training = TrainingSet([loaded], [(0, i) for i in range(len(loaded))], {"pt": 0}, 10.0, 0, [SourceStats("pl")])
    for i, row in enumerate(loaded):
        example = training[(i, False, (0,))]
        first = round(row["offset"] * 16000)
        assert example["audio"] == pytest.approx(audio[first : first + example["audio"].size], abs=1e-3)
        assert example["seconds"] == pytest.approx(row["duration"], abs=1e-3)


def test_stats_report_hours_and_drops(tmp_path, recordings):
    greedy = [label("pt/a", replace(timed(WORDS_A), 3, "perta"), 28.0, offset=2.0), recordings[1]]
    _, stats = select(tmp_path, greedy, recordings, max_disagreement=0.0)
    saved = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert saved["kept"] == 3 and saved["dropped"]["disagreement"] == 1
    assert saved["hours_kept"] < saved["hours_in"]
    assert "| pt |" in (tmp_path / "out" / "stats.md").read_text()


def test_true_cer_of_kept_segments_falls_when_wrong_lm_segments_are_dropped(tmp_path, recordings):
    lm = [label("pt/a", replace(timed(WORDS_A), 10, "muitos"), 28.0, offset=2.0), recordings[1]]
    truth = {"pt/a": " ".join(WORDS_A), "pt/b": " ".join(WORDS_B)}  # the greedy decode is right
    greedy, lm_dir = write_pair(tmp_path, recordings, lm)
    config = AgreementConfig(max_disagreement=0.0, min_cps=0.0, max_cps=1000.0)
    _, stats = select_by_agreement(greedy, lm_dir, tmp_path / "out", config, truth=truth, plot=True)
    rows = {e["threshold"]: e for e in stats["threshold_table"]["pt"]}
    assert rows[0.0]["true_cer"] == 0.0 and rows[0.0]["kept_fraction"] < 1.0
    assert rows[math.inf]["true_cer"] > 0.0 and rows[math.inf]["kept_fraction"] == 1.0
    assert "true PL CER" in (tmp_path / "out" / "stats.md").read_text()
    assert (tmp_path / "out" / "agreement.png").exists()


def test_truth_errors_of_the_segments_add_up_to_the_recordings(tmp_path, recordings):
    lm = [label("pt/a", replace(timed(WORDS_A), 3, "parto"), 28.0, offset=2.0), recordings[1]]
    greedy, lm_dir = write_pair(tmp_path, lm, lm)
    config = AgreementConfig()
    segments, labels, _ = score_segments(load_from_disk(str(greedy)), load_from_disk(str(lm_dir)), config)
    apply_selection(segments, config)
    truth_words = list(WORDS_A)
    truth_words.insert(9, "muito")  # a word the label missed, at the end of a segment
    counts = segment_truth_counts(segments, labels, {"pt/a": " ".join(truth_words), "pt/b": " ".join(WORDS_B)})
    whole = error_counts([" ".join(truth_words)], [labels["pt/a"]["text"]], "char")
    parts = [counts[s.id] for s in segments if s.recording_id == "pt/a"]
    assert sum(c.errors for c in parts) == whole.errors > 0
    assert sum(c.ref_len for c in parts) == whole.ref_len - (len(parts) - 1)  # no space between segments


def segment(errors, chars, seconds=10.0):
    counts = ErrorCounts(substitutions=errors, hits=chars - errors)
    return Segment("r", 0, "pt", 0.0, seconds, 0, 1, "x" * chars, "y", agreement=counts)


def test_auto_threshold_keeps_the_largest_set_with_half_the_disagreement():
    # disagreements 0, 0.1, 0.2, 0.5; pooled over all 0.2; half of it is 0.1: 0 + 0.1 + 0.2 pool to 0.1
    candidates = [segment(0, 100), segment(10, 100), segment(20, 100), segment(50, 100)]
    assert choose_threshold(candidates, 40.0, AgreementConfig(max_disagreement=None)) == pytest.approx(0.2)


def test_target_kept_fraction_picks_the_smallest_threshold_that_keeps_it():
    candidates = [segment(0, 100), segment(10, 100), segment(20, 100), segment(50, 100)]
    config = AgreementConfig(max_disagreement=None, target_kept_fraction=0.5)
    assert choose_threshold(candidates, 40.0, config) == pytest.approx(0.1)


def test_a_single_long_word_makes_its_own_segment():
    words = [{"word": "a", "start": 0.0, "end": 12.0}, {"word": "b", "start": 12.5, "end": 13.0}]
    cuts = cut_segments(words, 14.0, 10.0)
    assert [(first, last) for first, last, *_ in cuts] == [(0, 1), (1, 2)]


def test_cli_writes_the_dataset(tmp_path, recordings):
    greedy, lm = write_pair(tmp_path, recordings, recordings)
    assert cli_main()(["--greedy", str(greedy), "--lm", str(lm), "--output_dir", str(tmp_path / "out"),
                 "--max-disagreement", "auto", "--log_level", "warning"]) == 0  # fmt: skip
    assert (tmp_path / "out" / "dataset" / "dataset_info.json").exists()


def test_cli_rejects_a_missing_dataset_in_one_line(tmp_path, capsys):
    missing = str(tmp_path / "nope")
    assert cli_main()(["--greedy", missing, "--lm", missing, "--output_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "no merged pseudo-label dataset" in err and len(err.splitlines()) == 1


def test_cli_rejects_both_threshold_rules(tmp_path, recordings, capsys):
    greedy, lm = write_pair(tmp_path, recordings, recordings)
    assert cli_main()(["--greedy", str(greedy), "--lm", str(lm), "--output_dir", str(tmp_path / "out"),
                 "--max_disagreement", "0.1", "--target_kept_fraction", "0.5"]) == 2  # fmt: skip
    assert "--target_kept_fraction" in capsys.readouterr().err


# --- consensus of any two PL sets (e.g. an MMS set against a Whisper set) --------------------------

MMS = {"kind": "ctc", "name_or_path": "facebook/mms-1b-all", "revision": "main", "weights_hash": "a1"}
WHISPER = {"kind": "whisper", "name_or_path": "openai/whisper-small", "revision": "main", "weights_hash": "b2"}


def mms(rec_id, words, duration, **kwargs):
    return {**label(rec_id, words, duration, **kwargs), "teacher": MMS}


def whisper(rec_id, text, duration, segments=(), offset=0.0):
    """A Whisper row without word times: its text and, optionally, its segments (start, end, text)."""
    return {"id": rec_id, "audio": AUDIO, "offset": offset, "duration": duration, "language": "pt", "text": text,
            "teacher": WHISPER, "avg_logprob": -0.2, "compression_ratio": 1.3, "no_speech_prob": 0.01,
            "segments": [{"start": s, "end": e, "text": t} for s, e, t in segments]}  # fmt: skip


def segments_of(words, duration, join=()):
    """Whisper-like segments: one per label segment (cut as the selection cuts), spanning its words;
    label segments listed in `join` are one Whisper segment with the next."""
    cuts = cut_segments([{"word": w, "start": s, "end": e} for w, s, e in words], duration, 10.0)
    out = []
    for k, (first, last, *_) in enumerate(cuts):
        piece = (words[first][1], words[last - 1][2], " ".join(w for w, _, _ in words[first:last]))
        if out and k - 1 in join:
            start, _, text = out.pop()
            piece = (start, piece[1], f"{text} {piece[2]}")
        out.append(piece)
    return out


def consensus(tmp_path, label_records, reference_records, **config):
    labels, reference = tmp_path / "mms", tmp_path / "whisper"
    records_to_dataset(label_records).save_to_disk(str(labels))
    records_to_dataset(reference_records).save_to_disk(str(reference))
    config = {"min_cps": 0.0, "max_cps": 1000.0, "max_disagreement": 0.02, **config}
    return select_by_consensus(labels, reference, tmp_path / "out", AgreementConfig(**config), plot=False)


def test_consensus_of_two_teachers_keeps_the_agreeing_segments_and_drops_the_others(tmp_path, recordings):
    labels = [mms("pt/a", timed(WORDS_A), 28.0), mms("pt/b", timed(WORDS_B), 9.0)]
    other = [{**label("pt/a", replace(timed(WORDS_A), 11, "gente"), 28.0), "teacher": WHISPER},
             {**label("pt/b", timed(WORDS_B), 9.0), "teacher": WHISPER}]  # fmt: skip
    dataset, stats = consensus(tmp_path, labels, other)
    assert stats["dropped"] == {"disagreement": 1} and stats["compared_by"] == {"words": 2}
    assert "pessoas" not in " ".join(dataset["text"]) and len(dataset) == 3


def test_output_rows_say_which_teachers_agreed_and_how(tmp_path):
    labels = [mms("pt/b", timed(WORDS_B), 9.0)]
    dataset, _ = consensus(tmp_path, labels, [{**labels[0], "teacher": WHISPER}])
    assert dataset[0]["consensus"] == {"labels": "ctc:facebook/mms-1b-all", "reference": "whisper:openai/whisper-small",
                                       "level": "words", "disagreement": 0.0}  # fmt: skip


def test_a_reference_with_only_segment_times_is_compared_segment_by_segment(tmp_path):
    words = timed(WORDS_A)
    wrong = [(s, e, t.replace("pessoas", "gente")) for s, e, t in segments_of(words, 28.0)]
    dataset, stats = consensus(tmp_path, [mms("pt/a", words, 28.0)], [whisper("pt/a", "", 28.0, wrong)])
    assert stats["compared_by"] == {"segments": 1} and stats["segments"] == 3
    assert stats["dropped"] == {"disagreement": 1} and "pessoas" not in " ".join(dataset["text"])
    assert {r["consensus"]["level"] for r in dataset} == {"segments"}


def test_a_reference_segment_across_a_cut_makes_both_segments_one_comparison(tmp_path):
    words = timed(WORDS_A)
    wrong = [(s, e, t.replace("pessoas", "gente")) for s, e, t in segments_of(words, 28.0, join=(0,))]
    dataset, stats = consensus(tmp_path, [mms("pt/a", words, 28.0)], [whisper("pt/a", "", 28.0, wrong)])
    assert stats["dropped"] == {"disagreement": 2} and dataset["id"] == ["pt/a#2"]


def test_a_reference_with_only_a_text_is_compared_per_recording(tmp_path):
    labels = [mms("pt/a", timed(WORDS_A), 28.0), mms("pt/b", timed(WORDS_B), 9.0)]
    other = [whisper("pt/a", " ".join(WORDS_A).replace("pessoas", "gente"), 28.0),
             whisper("pt/b", " ".join(WORDS_B), 9.0)]  # fmt: skip
    dataset, stats = consensus(tmp_path, labels, other)
    assert stats["compared_by"] == {"recording": 2}
    assert stats["dropped"] == {"disagreement": 3} and dataset["id"] == ["pt/b#0"]


def test_segments_of_one_comparison_share_its_disagreement_and_pool_it_once(tmp_path):
    labels = [mms("pt/a", timed(WORDS_A), 28.0)]
    other = [whisper("pt/a", " ".join(WORDS_A).replace("pessoas", "gente"), 28.0)]
    _, stats = consensus(tmp_path, labels, other, max_disagreement=1.0)
    whole = error_counts([" ".join(WORDS_A)], [other[0]["text"]], "char")
    row = next(e for e in stats["threshold_table"]["pt"] if e["threshold"] == 1.0)
    assert row["disagreement"] == pytest.approx(whole.rate)


def test_a_label_set_without_word_times_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="the labels set has no word times"):
        consensus(tmp_path, [whisper("pt/b", " ".join(WORDS_B), 9.0)], [mms("pt/b", timed(WORDS_B), 9.0)])


def test_cli_labels_and_reference_select_by_consensus(tmp_path):
    labels, reference = tmp_path / "mms", tmp_path / "whisper"
    records_to_dataset([mms("pt/b", timed(WORDS_B), 9.0)]).save_to_disk(str(labels))
    records_to_dataset([whisper("pt/b", " ".join(WORDS_B), 9.0)]).save_to_disk(str(reference))
    assert cli_main()(["--labels", str(labels), "--reference", str(reference), "--output_dir", str(tmp_path / "out"),
                       "--log_level", "warning"]) == 0  # fmt: skip
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["compared_by"] == {"recording": 1} and stats["kept"] == 1
    assert "whisper:openai/whisper-small" in (tmp_path / "out" / "stats.md").read_text()


def test_cli_rejects_both_spellings_at_once(tmp_path, capsys):
    assert cli_main()(["--labels", "a", "--reference", "b", "--greedy", "c", "--lm", "d",
                       "--output_dir", str(tmp_path)]) == 2  # fmt: skip
    assert "either --labels/--reference or --greedy/--lm" in capsys.readouterr().err
