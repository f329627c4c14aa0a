import logging

import pytest
from datasets import Audio, Dataset, IterableDataset

from modeling_mlpl.audio import load_audio
from modeling_mlpl.data import (
    FEATURES,
    get_load_report,
    load_audio_folder,
    load_common_voice,
    load_librispeech,
    load_voxpopuli_transcribed,
    load_voxpopuli_unlabelled,
)
from tests import helpers_data as h


@pytest.fixture(scope="module")
def cv_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cv")
    expected = h.write_common_voice(root, "pt")
    h.write_common_voice(root, "fy-NL", clip_durations=False)
    return root, expected


def _by_id(ds):
    return {row["id"]: row for row in ds}


def test_common_voice_rows_have_the_shared_schema(cv_root):
    root, _ = cv_root
    ds = load_common_voice(root, ["pt"])
    assert isinstance(ds, Dataset)
    assert ds.features == FEATURES
    assert isinstance(ds.features["audio"], Audio) and not ds.features["audio"].decode
    assert set(ds["language"]) == {"pt"}
    assert len(set(ds["id"])) == len(ds)


def test_common_voice_repairs_quotes_tabs_and_unicode(cv_root):
    root, expected = cv_root
    rows = _by_id(load_common_voice(root, "pt"))
    assert {k: r["text"] for k, r in rows.items()} == expected["texts"]


def test_common_voice_reports_every_skipped_row(cv_root, caplog):
    root, expected = cv_root
    with caplog.at_level(logging.WARNING):
        ds = load_common_voice(root, "pt", verify_audio=True)
    report = get_load_report(ds)
    assert dict(report.skipped) == expected["skipped"]
    assert dict(report.repaired) == expected["repaired"]
    assert report.loaded == len(ds) == 5
    assert "missing_audio" in caplog.text and "common_voice_pt_missing.mp3" in caplog.text


def test_common_voice_durations_come_from_clip_durations_or_headers(cv_root):
    root, expected = cv_root
    pt = _by_id(load_common_voice(root, "pt"))
    fy = _by_id(load_common_voice(root, "fy-NL"))  # no clip_durations.tsv: read from the mp3 headers
    for uid, secs in expected["durations"].items():
        if uid in pt:
            assert pt[uid]["duration"] == pytest.approx(secs, abs=1e-3)
            fy_id = uid.replace("pt", "fy-NL")
            assert fy[fy_id]["duration"] == pytest.approx(secs, abs=0.01)
    # without clip_durations the corrupt clip is caught at load time
    assert get_load_report(load_common_voice(root, "fy-NL")).skipped["corrupt_audio"] == 1


def test_common_voice_audio_decodes(cv_root):
    root, _ = cv_root
    row = _by_id(load_common_voice(root, "pt"))["pt/common_voice_pt_2"]
    assert len(load_audio(row["audio"])) == pytest.approx(row["duration"] * 16000, abs=20)


def test_all_languages_are_loaded_by_default(cv_root):
    root, _ = cv_root
    assert set(load_common_voice(root)["language"]) == {"pt", "fy-NL"}


def test_unknown_language_lists_the_valid_codes(cv_root):
    root, _ = cv_root
    with pytest.raises(ValueError, match="unknown Common Voice language.*xx.*fy-NL"):
        load_common_voice(root, ["pt", "xx"])
    with pytest.raises(ValueError, match="not found on disk; available: fy-NL pt"):
        load_common_voice(root, ["de"])


def test_unknown_split_is_a_clear_error(cv_root):
    root, _ = cv_root
    with pytest.raises(ValueError):
        load_common_voice(root, "pt", split="nonexistent")


def test_streaming_gives_the_same_rows(cv_root):
    root, _ = cv_root
    eager = list(load_common_voice(root, ["pt", "fy-NL"]))
    lazy = load_common_voice(root, ["pt", "fy-NL"], streaming=True)
    assert isinstance(lazy, IterableDataset)
    assert list(lazy) == eager


def test_common_voice_parquet_copy(tmp_path):
    texts = h.write_common_voice_parquet(tmp_path, "pt")
    ds = load_common_voice(tmp_path, "pt")
    assert {r["id"]: r["text"] for r in ds} == texts
    assert get_load_report(ds).skipped["corrupt_audio"] == 1
    row = ds[0]
    assert row["audio"]["bytes"] and len(load_audio(row["audio"])) == pytest.approx(16000 * row["duration"], abs=20)


def test_common_voice_audiofolder_copy(tmp_path):
    texts = h.write_audiofolder(tmp_path, "nl")
    ds = load_common_voice(tmp_path, "nl")
    assert {r["id"]: r["text"] for r in ds} == texts
    assert sorted(ds["duration"]) == pytest.approx([1.0, 2.0], abs=0.01)


def test_voxpopuli_unlabelled_skips_bad_files(tmp_path):
    expected = h.write_voxpopuli(tmp_path, "pl")
    ds = load_voxpopuli_unlabelled(tmp_path, ["pl"])
    assert {r["id"]: r["duration"] for r in ds} == pytest.approx(expected["unlabelled"], abs=0.01)
    assert set(ds["text"]) == {""}
    report = get_load_report(ds)
    assert report.skipped == {"corrupt_audio": 1, "empty_audio": 1}
    assert len(load_voxpopuli_unlabelled(tmp_path / "unlabelled_data")) == 2  # root may be the folder itself


def test_voxpopuli_transcribed(tmp_path):
    expected = h.write_voxpopuli(tmp_path, "pl")
    ds = load_voxpopuli_transcribed(tmp_path, "pl", split="train")
    assert {r["id"]: r["text"] for r in ds} == expected["transcribed"]
    assert get_load_report(ds).skipped["missing_audio"] == 1
    with pytest.raises(ValueError, match="unknown VoxPopuli language"):
        load_voxpopuli_transcribed(tmp_path, "ja")


def test_librispeech_flac_tree(tmp_path):
    texts = h.write_librispeech(tmp_path, "test-clean")
    for root in (tmp_path, tmp_path / "LibriSpeech"):
        ds = load_librispeech(root, "test-clean")
        assert {r["id"]: r["text"] for r in ds} == texts
        assert set(ds["language"]) == {"en"}
        assert get_load_report(ds).skipped["missing_audio"] == 2
    with pytest.raises(ValueError, match="test-other"):
        load_librispeech(tmp_path, "test_clean")


def test_librispeech_parquet(tmp_path):
    texts = h.write_librispeech_parquet(tmp_path)
    ds = load_librispeech(tmp_path, "test-clean")
    assert {r["id"]: r["text"] for r in ds} == texts
    assert sorted(ds["duration"]) == pytest.approx([1.0, 2.0, 3.0], abs=0.01)


def test_plain_audio_folder(tmp_path):
    h.write(tmp_path / "a" / "one.wav", 1.0)
    h.write(tmp_path / "two.flac", 2.0, fmt="FLAC")
    (tmp_path / "two.txt").write_text("Two  words\n")
    h.corrupt(tmp_path / "bad.mp3")
    ds = load_audio_folder(tmp_path, language="en")
    assert {r["id"]: r["text"] for r in ds} == {"a/one": "", "two": "Two words"}
    assert get_load_report(ds).skipped == {"corrupt_audio": 1}


def test_a_latin1_line_in_a_common_voice_tsv_is_one_skipped_row_named_by_file_and_line(tmp_path):
    expected = h.write_common_voice(tmp_path, "pt")
    with open(tmp_path / "pt" / "train.tsv", "ab") as f:  # a row re-saved by an editor in Latin-1
        f.write("c1\tcommon_voice_pt_0.mp3\tAção latina.\t2\t0\t\t\t\tpt\t\n".encode("latin-1"))
    ds = load_common_voice(tmp_path, "pt")
    report = get_load_report(ds)
    assert {r["id"]: r["text"] for r in ds} == expected["texts"]
    assert report.skipped["not_utf8"] == 1 and report.examples["not_utf8"] == ["train.tsv:13"]


def test_a_latin1_transcript_in_an_audio_folder_skips_that_recording_and_names_it(tmp_path):
    h.write(tmp_path / "one.wav", 1.0)
    (tmp_path / "one.txt").write_text("Olá\n", encoding="utf-8")
    h.write(tmp_path / "sub" / "two.wav", 1.0)
    (tmp_path / "sub" / "two.txt").write_bytes("Olá\n".encode("latin-1"))
    ds = load_audio_folder(tmp_path, language="pt")
    report = get_load_report(ds)
    assert [r["id"] for r in ds] == ["one"]
    assert report.skipped == {"not_utf8": 1} and report.examples["not_utf8"] == ["sub/two.txt"]
