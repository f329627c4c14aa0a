import unicodedata

from modeling_mlpl.text import ctc_min_frames, filter_transcripts, model_output_frames, normalize_transcript


def test_normalisation_keeps_case_and_punctuation():
    assert normalize_transcript("  Hello,   World!\t\n") == "Hello, World!"


def test_normalisation_composes_unicode_and_collapses_unicode_spaces():
    decomposed = unicodedata.normalize("NFD", "Ação\u00a0\u00a0é")
    out = normalize_transcript(decomposed)
    assert out == "Ação é"
    assert len(out) == 6  # composed characters, one space


def test_normalisation_leaves_word_delimiter_mapping_to_the_tokenizer():
    assert "|" not in normalize_transcript("two words")
    assert normalize_transcript(None) == ""


def test_model_output_frames_follow_the_front_end():
    assert model_output_frames(399) == 0
    assert model_output_frames(400) == 1
    # 1 s: 98 frames of 25 ms every 10 ms, stride-3 conv padded 3 each side, kernel 7 -> 33
    assert model_output_frames(16000) == (98 - 1) // 3 + 1 == 33


def test_ctc_needs_a_blank_between_repeated_labels():
    assert ctc_min_frames("abc") == 3
    assert ctc_min_frames("aab") == 4
    assert ctc_min_frames("aaa") == 5


def test_filters_count_each_reason():
    rows = [
        {"text": "ok text", "duration": 2.0},
        {"text": "", "duration": 2.0},
        {"text": "naïve", "duration": 2.0},
        {"text": "far too long for a tenth of a second", "duration": 0.1},
        {"text": "ok", "duration": 2.0},
    ]
    vocab = set("abcdefghijklmnopqrstuvwxyz|")
    result = filter_transcripts(rows, vocabulary=vocab)
    assert [r["text"] for r in result.kept] == ["ok text", "ok"]
    assert result.counts == {"empty_text": 1, "oov_characters": 1, "too_short_for_ctc": 1}
    assert result.oov_characters == {"ï": 1}
    assert "oov" in result.summary()


def test_length_filter_is_exact_at_the_boundary():
    # 33 output frames for 1 s: a 33-token label fits, 34 does not; repeats need extra frames
    fits = {"text": "ab" * 16 + "a", "duration": 1.0}
    too_long = {"text": "ab" * 17, "duration": 1.0}
    repeats = {"text": "aa" * 16 + "a", "duration": 1.0}
    result = filter_transcripts([fits, too_long, repeats])
    assert result.kept == [fits]
    assert result.counts["too_short_for_ctc"] == 2


def test_samples_per_output_frame_and_callable_are_alternatives():
    rows = [{"text": "abcd", "duration": 4 * 480 / 16000}]
    assert len(filter_transcripts(rows, samples_per_output_frame=480).kept) == 1
    assert len(filter_transcripts(rows, frames_for_duration=lambda d: 3).kept) == 0


def test_filter_dataset_selects_the_kept_rows():
    from modeling_mlpl.data import filter_dataset, make_row, rows_to_dataset

    ds = rows_to_dataset([
        make_row("a", "a.wav", "good", "en", 2.0),
        make_row("b", "b.wav", "BAD", "en", 2.0),
        make_row("c", "c.wav", "", "en", 2.0),
    ])
    kept, result = filter_dataset(ds, vocabulary=set("abcdefghijklmnopqrstuvwxyz|"))
    assert kept["id"] == ["a"]
    assert result.counts["oov_characters"] == 1 and result.counts["empty_text"] == 1
