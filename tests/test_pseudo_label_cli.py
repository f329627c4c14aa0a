"""run_scripts/pseudo_label.py: exit codes, merge-only filtering, real multi-process and kill -9 runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from helpers_pl import REPO, SCRIPT, disk_dataset, run_cli, write_audio_folder
from modeling_mlpl.pseudo_labeling.shards import FAILURE_PREFIX, LABEL_PREFIX
from modeling_mlpl.resumable import read_shard, shard_path

from modeling_mlpl.commands import pseudo_label as cli  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_audio")
    ids = write_audio_folder(root, durations=[1.0, 2.0, 3.0, 12.0, 0.7, 4.0])
    (root / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")  # the loader rejects its header
    return root, ids


def test_help_explains_inputs_and_exit_codes(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "voxpopuli:ROOT" in text and "Exit codes" in text and "--resume" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "nowhere:/x"], "KIND:PATH"),
        (["--data", "folder:/does/not/exist"], "does not exist"),
        (["--language", "xx"], "unknown language"),
        (["--align_truth"], "needs --data voxpopuli:ROOT"),
        (["--retry_failed"], "add --resume"),
    ],
)
def test_user_errors_exit_2_with_one_line(folder, tiny_checkpoint, tmp_path, capsys, args, message):
    base = ["--model", tiny_checkpoint, "--data", f"folder:{folder[0]}", "--output_dir", str(tmp_path / "o")]
    code = cli.main(base + args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == cli.EXIT_USAGE
    assert message in err[-1] and "Traceback" not in "\n".join(err)


def test_label_merge_and_refilter_without_relabelling(folder, tiny_checkpoint, tmp_path):
    out = tmp_path / "pl"
    common = ["--model", tiny_checkpoint, "--data", f"folder:{folder[0]}", "--language", "de",
              "--output_dir", str(out), "--threads", "1"]  # fmt: skip
    assert cli.main(common + ["--merge", "--min_chars", "0"]) == cli.EXIT_OK
    stats = json.loads((out / "merged" / "stats.json").read_text())
    assert stats["records"] == len(folder[1]) and stats["skipped_at_load"] == {"corrupt_audio": 1}
    assert (out / "merged" / "confidence_hist.png").exists()
    # A second run into the same folder without --resume would duplicate labels: refused.
    assert cli.main(common) == cli.EXIT_USAGE
    assert cli.main(common + ["--resume"]) == cli.EXIT_OK  # nothing left to do
    assert len(list(read_shard(shard_path(out, 0, LABEL_PREFIX)))) == len(folder[1])
    code = cli.main(["--merge_only", "--output_dir", str(out), "--merged_dir", str(tmp_path / "top"),
                     "--top_percent", "50", "--min_chars", "0"])  # fmt: skip
    assert code == cli.EXIT_OK
    top = json.loads((tmp_path / "top" / "stats.json").read_text())
    assert top["records"] == len(folder[1]) and top["kept"] == len(folder[1]) // 2


def test_mostly_unreadable_input_exits_3(tiny_checkpoint, tmp_path):
    root = tmp_path / "bad"
    write_audio_folder(root, durations=[1.0])
    ds = disk_dataset(root, bad={"a.wav": b"junk", "b.wav": b"junk2", "c.wav": b""})
    ds.save_to_disk(str(tmp_path / "ds"))
    code = cli.main(["--model", tiny_checkpoint, "--data", f"disk:{tmp_path / 'ds'}", "--language", "de",
                     "--output_dir", str(tmp_path / "o"), "--threads", "1"])  # fmt: skip
    assert code == cli.EXIT_FAILURES
    assert len(list(read_shard(shard_path(tmp_path / "o", 0, FAILURE_PREFIX)))) == 3


def _merged_rows(directory) -> dict:
    from datasets import load_from_disk

    return {r["id"]: r for r in load_from_disk(str(directory / "merged" / "dataset"))}


@pytest.mark.slow
def test_two_real_processes_label_the_union_exactly_once(folder, tiny_checkpoint, tmp_path):
    out = tmp_path / "pl"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533"]
    result = run_cli(["--model", tiny_checkpoint, "--data", f"folder:{folder[0]}", "--language", "de",
                      "--output_dir", str(out), "--merge", "--min_chars", "0"], launcher=launcher)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    per_rank = [[r["id"] for r in read_shard(shard_path(out, rank, LABEL_PREFIX))] for rank in (0, 1)]
    assert per_rank[0] and per_rank[1], "both processes must get work"
    assert not set(per_rank[0]) & set(per_rank[1])
    assert sorted(per_rank[0] + per_rank[1]) == sorted(folder[1])
    assert sorted(_merged_rows(out)) == sorted(folder[1])


@pytest.mark.slow
def test_kill_9_mid_run_then_resume_gives_the_uninterrupted_dataset(tiny_checkpoint, tmp_path):
    root = tmp_path / "audio"
    ids = write_audio_folder(root, durations=[2.0 + (i % 4) for i in range(40)])
    args = ["--model", tiny_checkpoint, "--data", f"folder:{root}", "--language", "de",
            "--max_batch_seconds", "6", "--min_chars", "0"]  # fmt: skip
    reference = run_cli(args + ["--output_dir", str(tmp_path / "ref"), "--merge"])
    assert reference.returncode == 0, reference.stderr[-3000:]

    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, str(SCRIPT), *args, "--output_dir", str(out), "--threads", "1"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    shard = shard_path(out, 0, LABEL_PREFIX)
    deadline = time.time() + 120
    while time.time() < deadline and not (shard.exists() and shard.stat().st_size > 0):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = len(list(read_shard(shard)))
    assert 0 < written < len(ids), "the kill must land mid-run"
    resumed = run_cli(args + ["--output_dir", str(out), "--resume", "--merge"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = _merged_rows(tmp_path / "ref"), _merged_rows(out)
    assert sorted(a) == sorted(b) == sorted(ids)
    for uid in a:
        assert a[uid]["text"] == b[uid]["text"] and a[uid]["token_times"] == b[uid]["token_times"]
        assert a[uid]["confidence"] == pytest.approx(b[uid]["confidence"], abs=1e-5)
    assert len(shard.read_bytes().splitlines()) == len(ids)  # nothing duplicated
