"""folder: reads every format libsndfile reads and accounts for every file; runs print where each went."""

from __future__ import annotations

import json
import logging

import pytest
import soundfile as sf

from modeling_mlpl.audio import load_audio
from modeling_mlpl.data import get_load_report, load_audio_folder
from modeling_mlpl.data.folder import AUDIO_EXTENSIONS, readable_extensions
from modeling_mlpl.resumable import Accounting
from tests import helpers_data as h

from modeling_mlpl.commands import pseudo_label as pl_cli  # noqa: E402
from test_evaluation import load_script  # noqa: E402

eval_cli = load_script("evaluate")


def every_case(root):
    """Good files in five formats, a same-stem pair, one whose header reads but whose data does not,
    a corrupt and an empty one, two non-audio files and a transcript sidecar: 12 files found, 8 pass
    the loader (7 decode, 1 fails at decode time), 2 unreadable headers, 2 unsupported."""
    h.write(root / "a.wav", 1.0)
    h.write(root / "b.aiff", 1.2, fmt="AIFF")
    h.write(root / "c.sph", 0.8, fmt="NIST", subtype="PCM_16")
    h.write(root / "sub" / "d.au", 1.1, fmt="AU")
    h.write(root / "e.flac", 0.9, fmt="FLAC")
    h.write(root / "pair.flac", 1.0, fmt="FLAC")
    h.write(root / "pair.wav", 1.3)
    (root / "a.txt").write_text("a transcript\n")  # a sidecar: not a skipped file
    h.corrupt(root / "bad.wav")
    h.empty(root / "empty.flac")
    good = h.write(root / "cut.flac", 1.0, fmt="FLAC").read_bytes()
    (root / "cut.flac").write_bytes(good[: len(good) // 2] + bytes(range(256)) * 8)  # "flac decoder lost sync"
    (root / "song.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A ")
    (root / "notes.md").write_text("not audio\n")


def test_every_available_libsndfile_format_has_its_extensions():
    available = sf.available_formats()
    assert {".aiff", ".sph", ".au", ".caf", ".w64", ".wav", ".flac", ".ogg", ".mp3"} <= readable_extensions()
    assert (".aiff" in AUDIO_EXTENSIONS) == ("AIFF" in available)
    assert ".m4a" not in AUDIO_EXTENSIONS and ".txt" not in AUDIO_EXTENSIONS


def test_aiff_and_nist_sphere_files_load_and_decode(tmp_path):
    h.write(tmp_path / "x.aiff", 1.0, fmt="AIFF")
    h.write(tmp_path / "y.sph", 0.5, sr=8000, fmt="NIST", subtype="PCM_16")
    ds = load_audio_folder(tmp_path)
    assert dict(zip(ds["id"], ds["duration"])) == pytest.approx({"x": 1.0, "y": 0.5})
    assert len(load_audio(ds[1]["audio"])) == 8000  # resampled to 16 kHz


def test_unsupported_files_are_counted_as_skipped_with_examples(tmp_path, caplog):
    h.write(tmp_path / "a.wav", 1.0)
    (tmp_path / "a.txt").write_text("hello\n")
    (tmp_path / "b.m4a").write_bytes(b"m4a")
    (tmp_path / "c.webm").write_bytes(b"webm")
    (tmp_path / "orphan.txt").write_text("no audio\n")
    with caplog.at_level(logging.WARNING):
        ds = load_audio_folder(tmp_path)
    report = get_load_report(ds)
    assert ds["id"] == ["a"] and ds["text"] == ["hello"]
    assert report.skipped == {"unsupported_format": 3}
    assert report.examples["unsupported_format"] == ["b.m4a", "c.webm", "orphan.txt"]
    assert "unsupported_format e.g. b.m4a; c.webm; orphan.txt" in caplog.text


def test_loaded_plus_skipped_is_every_file_found(tmp_path):
    every_case(tmp_path)
    report = get_load_report(load_audio_folder(tmp_path))
    assert report.loaded == 8 and report.skipped == {"unsupported_format": 2, "corrupt_audio": 1, "empty_audio": 1}
    n_files = sum(1 for p in tmp_path.rglob("*") if p.is_file() and p.name != "a.txt")
    assert report.found == n_files == 12


def test_accounting_line_names_every_part():
    acc = Accounting(found=12, done=6, failed=1, skipped=3, already_done=1)
    assert acc.remaining == 1
    assert acc.line("labelled") == "found 12 = labelled 6 + failed 1 + skipped 3 + already done 1 + not reached 1"


def test_pseudo_label_prints_the_accounting_and_the_merge_says_the_same(tiny_checkpoint, tmp_path, caplog):
    every_case(tmp_path / "audio")
    out = tmp_path / "pl"
    args = ["--model", tiny_checkpoint, "--data", f"folder:{tmp_path / 'audio'}", "--language", "de",
            "--output_dir", str(out), "--threads", "1", "--merge", "--min_chars", "0"]  # fmt: skip
    with caplog.at_level(logging.INFO):
        assert pl_cli.main(args) == pl_cli.EXIT_OK
    assert "accounting: found 12 = labelled 7 + failed 1 + skipped 4 + already done 0" in caplog.text
    stats = json.loads((out / "merged" / "stats.json").read_text())
    assert stats["accounting"] == {"found": 12, "labelled": 7, "failed": 1, "skipped": 4, "already_done": 0,
                                   "elsewhere": 0, "remaining": 0}  # fmt: skip
    assert "Accounting: found 12 = labelled 7 + failed 1 + skipped 4" in (out / "merged" / "stats.md").read_text()
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert pl_cli.main(args + ["--resume"]) == pl_cli.EXIT_OK
    assert "accounting: found 12 = labelled 0 + failed 0 + skipped 4 + already done 8" in caplog.text


def test_evaluate_prints_the_accounting_of_a_folder_with_every_case(tiny_checkpoint, tmp_path, capsys):
    root = tmp_path / "audio"
    every_case(root)
    for name in ("b", "c", "e", "pair", "cut"):
        (root / f"{name}.txt").write_text("some words\n")  # a.txt exists; sub/d.au has none: not evaluated
    args = ["--model", tiny_checkpoint, "--data", f"folder:{root}", "--languages", "de", "--output_dir",
            str(tmp_path / "eval"), "--no-lm", "--window-s", "0"]  # fmt: skip
    assert eval_cli.main(args) == 0
    out = capsys.readouterr().out
    # 12 files: 4 rejected by the loader, d has no transcript (skipped), cut fails to decode, 6 decoded.
    assert "accounting: found 12 = decoded 6 + failed 1 + skipped 5 + already done 0" in out
    assert eval_cli.main(args) == 0  # a re-run retries the failure only
    assert "accounting: found 12 = decoded 0 + failed 1 + skipped 5 + already done 6" in capsys.readouterr().out
