"""Every loader gives every recording its own id; scripts refuse inputs that repeat one."""

from __future__ import annotations


import pytest
from datasets import Dataset

from modeling_mlpl.data import DuplicateIdError, check_unique_ids, load_audio_folder, load_common_voice
from modeling_mlpl.data import load_voxpopuli_unlabelled
from modeling_mlpl.data.ids import StreamingIds, disambiguate
from modeling_mlpl.data import open_dataset
from tests import helpers_data as h

from modeling_mlpl.commands import pseudo_label as pl_cli  # noqa: E402
from test_evaluation import load_script  # noqa: E402

eval_cli = load_script("evaluate")


def test_disambiguate_only_lengthens_the_ids_that_collide():
    ids = disambiguate([["a", "a.wav"], ["x", "x.flac"], ["x", "x.mp3"]])
    assert ids == ["a", "x.flac", "x.mp3"]


def test_disambiguate_raises_when_no_candidate_separates_two_items():
    with pytest.raises(DuplicateIdError, match=r"1 duplicate id\(s\): 'x' \(x2\) that no naming rule tells apart"):
        disambiguate([["x"], ["x"]], what="test")


def test_a_repeated_table_row_gets_none_and_another_recording_its_next_candidate():
    ids = StreamingIds("t")
    assert ids.assign(["de/x", "de/x.mp3"], "clips/x.mp3") == "de/x"
    assert ids.assign(["de/x", "de/x.mp3"], "clips/x.mp3") is None
    assert ids.assign(["de/x", "de/x.wav"], "clips/x.wav") == "de/x.wav"


def test_check_unique_ids_names_the_input_and_the_repeated_ids():
    check_unique_ids(["a", "b"], "fine")
    with pytest.raises(DuplicateIdError) as err:
        check_unique_ids(Dataset.from_dict({"id": ["a", "b", "a", "c", "c", "c"]}), "--data disk:x")
    assert str(err.value).startswith("--data disk:x: 2 duplicate id(s): 'a' (x2), 'c' (x3); every row needs")


def test_folder_files_sharing_a_stem_keep_their_extensions(tmp_path):
    h.write(tmp_path / "x.flac", 1.0, fmt="FLAC")
    h.write(tmp_path / "x.mp3", 1.5, fmt="MP3")
    h.write(tmp_path / "sub" / "x.wav", 2.0)
    h.write(tmp_path / "y.wav", 0.5)
    ds = load_audio_folder(tmp_path)
    assert sorted(ds["id"]) == ["sub/x", "x.flac", "x.mp3", "y"]


def test_voxpopuli_years_sharing_a_file_name_get_the_year_in_the_id(tmp_path):
    u = tmp_path / "unlabelled_data" / "pl"
    h.write(u / "2019" / "session.ogg", 1.0, fmt="OGG", subtype="VORBIS")
    h.write(u / "2020" / "session.ogg", 2.0, fmt="OGG", subtype="VORBIS")
    h.write(u / "2020" / "other.ogg", 1.0, fmt="OGG", subtype="VORBIS")
    ds = load_voxpopuli_unlabelled(tmp_path, ["pl"])
    assert sorted(ds["id"]) == ["pl/2019/session", "pl/2020/session", "pl/other"]


def test_common_voice_clips_sharing_a_stem_both_load_and_a_repeated_row_is_counted(tmp_path):
    clips = tmp_path / "pt" / "clips"
    h.write(clips / "a.mp3", 1.0, fmt="MP3")
    h.write(clips / "a.wav", 1.5)
    rows = [h.CV_HEADER] + [f"c\t{clip}\tOlá.\t2\t0\t\t\t\tpt\t" for clip in ("a.mp3", "a.wav", "a.mp3")]
    (tmp_path / "pt" / "train.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    ds = load_common_voice(tmp_path, ["pt"])
    assert sorted(ds["id"]) == ["pt/a", "pt/a.wav"]
    assert ds.load_report.skipped == {"duplicate_id": 1}


def _disk_with_ids(tmp_path, ids):
    for uid in set(ids):
        h.write(tmp_path / f"{uid}.wav", 1.0)
    rows = {"id": ids, "audio": [str(tmp_path / f"{uid}.wav") for uid in ids], "text": ["a"] * len(ids),
            "language": ["de"] * len(ids)}  # fmt: skip
    path = tmp_path / "ds"
    Dataset.from_dict(rows).save_to_disk(str(path))
    return path


def test_disk_dataset_with_repeated_ids_is_refused_before_reading_audio(tmp_path):
    path = _disk_with_ids(tmp_path, ["a", "b", "a"])
    with pytest.raises(DuplicateIdError, match=r"dataset .*ds: 1 duplicate id\(s\): 'a' \(x2\)"):
        open_dataset(f"disk:{path}")


def test_pseudo_label_refuses_a_disk_dataset_with_repeated_ids(tiny_checkpoint, tmp_path, capsys):
    path = _disk_with_ids(tmp_path, ["a", "b", "a"])
    code = pl_cli.main(["--model", tiny_checkpoint, "--data", f"disk:{path}", "--language", "de",
                        "--output_dir", str(tmp_path / "pl")])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == pl_cli.EXIT_USAGE
    assert err[-1] == (f"pseudo_label.py: error: --data disk:{path}: 1 duplicate id(s): 'a' (x2); every row needs "
                       "its own id (ids key labels, predictions and resumes)")  # fmt: skip
    assert not list((tmp_path / "pl").glob("pl-rank*.jsonl"))


def test_evaluate_refuses_a_disk_dataset_with_repeated_ids(tiny_checkpoint, tmp_path, capsys):
    path = _disk_with_ids(tmp_path, ["a", "a"])
    code = eval_cli.main(["--model", tiny_checkpoint, "--data", f"disk:{path}", "--out", str(tmp_path / "e")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "1 duplicate id(s): 'a' (x2)" in err[-1] and err[-1].startswith("evaluate.py: error:")


def test_labeler_refuses_a_stream_that_repeats_an_id(tiny_checkpoint, tmp_path):
    from modeling_mlpl.pseudo_labeling import PseudoLabelConfig, PseudoLabeler, label_dataset

    h.write(tmp_path / "a.wav", 1.0)
    rows = [{"id": "a", "audio": str(tmp_path / "a.wav"), "duration": 1.0}] * 2
    labeler = PseudoLabeler.from_pretrained(tiny_checkpoint, PseudoLabelConfig(language="de", io_threads=1))
    with pytest.raises(DuplicateIdError, match="the input repeats id 'a'"):
        label_dataset(iter(rows), tmp_path / "pl", labeler)


def test_pseudo_label_refuses_a_dataset_without_ids_whose_audio_paths_repeat(tiny_checkpoint, tmp_path, capsys):
    h.write(tmp_path / "a.wav", 1.0)
    Dataset.from_dict({"audio": [str(tmp_path / "a.wav")] * 2}).save_to_disk(str(tmp_path / "ds"))
    code = pl_cli.main(["--model", tiny_checkpoint, "--data", f"disk:{tmp_path / 'ds'}", "--language", "de",
                        "--output_dir", str(tmp_path / "pl")])  # fmt: skip
    assert code == pl_cli.EXIT_USAGE
    assert "(no id column: the audio paths are the ids): 1 duplicate id(s)" in capsys.readouterr().err
