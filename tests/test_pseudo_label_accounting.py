"""The accounting identity through a crash: two processes killed with SIGKILL half way, resumed by one."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter

import psutil
import pytest

from helpers_pl import REPO, SCRIPT, run_cli, write_audio_folder
from modeling_mlpl.resumable import read_shards
from test_folder_accounting import every_case


@pytest.mark.slow
def test_every_file_is_accounted_for_after_a_kill_9_of_two_processes_and_a_resume(tiny_checkpoint, tmp_path):
    root = tmp_path / "audio"
    every_case(root)  # 12 files: 7 decode, 1 fails at decode, 4 rejected by the loader
    write_audio_folder(root / "more", durations=[2.0 + (i % 3) for i in range(24)])  # so that a kill lands mid-run
    found, skipped, failing = 12 + 24, 4, 1
    out = tmp_path / "pl"
    args = ["--model", tiny_checkpoint, "--data", f"folder:{root}", "--language", "de", "--output_dir", str(out),
            "--max_batch_seconds", "6", "--min_chars", "0", "--threads", "1"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29547"]
    proc = subprocess.Popen([*launcher, str(SCRIPT), *args], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    shards = [out / "pl-rank00000.jsonl", out / "pl-rank00001.jsonl"]
    deadline = time.time() + 240
    while time.time() < deadline and not all(s.exists() and s.stat().st_size for s in shards):
        time.sleep(0.01)
    workers = psutil.Process(proc.pid).children(recursive=True)  # in process groups of their own
    for process in workers + [psutil.Process(proc.pid)]:
        process.send_signal(signal.SIGKILL)  # mid-write or not
    psutil.wait_procs(workers, timeout=30)
    proc.wait()
    done_before = {r["id"] for prefix in ("pl", "failures") for r in read_shards(out, prefix)}
    assert 0 < len(done_before) < found - skipped, "the kill must land mid-run"

    resumed = run_cli(args[:-2] + ["--resume", "--merge"])  # one process now
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    line = re.search(r"accounting: (found .*)", resumed.stderr).group(1)
    labelled = found - skipped - failing
    already = len(done_before)
    done_now = found - skipped - already  # labelled or failed by the resumed run
    assert line.startswith(f"found {found} = labelled ")
    assert line.endswith(f"+ skipped {skipped} + already done {already}")
    counts = [int(n) for n in re.findall(r"\d+", line)]
    assert counts[0] == sum(counts[1:]) and counts[1] + counts[2] == done_now
    stats = json.loads((out / "merged" / "stats.json").read_text())
    assert stats["accounting"] == {"found": found, "labelled": labelled, "failed": failing, "skipped": skipped,
                                   "already_done": 0, "elsewhere": 0, "remaining": 0}  # fmt: skip
    # Every recording exactly once over both runs' shards: nothing lost, nothing labelled twice.
    ids = Counter(r["id"] for prefix in ("pl", "failures") for r in read_shards(out, prefix))
    assert max(ids.values()) == 1 and len(ids) == found - skipped
    assert stats["duplicates"] == 0 and stats["failed_ids"] == ["cut"]
