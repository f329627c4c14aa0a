#!/usr/bin/env python
"""Start-up cost of a recipe step's script: forked from the preloaded server vs a plain subprocess.

Each script of run_scripts/ is run with `--help` (parse arguments and exit: what is left is the cost of
starting Python and importing torch, transformers, datasets and this package, which every real step pays
before its work begins) through `script_runner.run_script`, alternating the two runners `--repeats` times.
Reference: `subprocess` (`python script.py`, how the recipe started every step before). The fork server's
own start (one import of everything, paid once per recipe run) is timed separately.

    python benchmarks/bench_script_runner.py            # ~2 min on 2 cores
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from modeling_mlpl.recipe.script_runner import run_script  # noqa: E402
from results_io import write_results  # noqa: E402

SCRIPTS = ["train.py", "pseudo_label.py", "evaluate.py", "tune_lm.py"]


def time_run(script: str, runner: str, log: str) -> float:
    start = time.perf_counter()
    code = run_script(f"modeling_mlpl.commands.{script.removesuffix('.py')}", ["--help"], dict(os.environ), log,
                      runner=runner)
    if code != 0:
        raise SystemExit(f"{script} --help exited with {code} ({runner}); see {log}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "script_runner"))
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    log = os.path.join(tempfile.mkdtemp(), "runs.log")
    load_before = os.getloadavg()[0]
    server_start = time_run("evaluate.py", "fork", log)  # the first fork run also starts (and preloads) the server
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeats):
        for script in SCRIPTS:
            for runner in ("subprocess", "fork"):
                times.setdefault((script, runner), []).append(time_run(script, runner, log))
    load_after = os.getloadavg()[0]
    rows = []
    for script in SCRIPTS:
        sub, fork = (statistics.median(times[(script, r)]) for r in ("subprocess", "fork"))
        rows.append({"script": script, "subprocess_s": sub, "fork_s": fork, "speedup": sub / fork})
    lines = [
        "# Script start-up: forked from the preloaded server vs a plain subprocess",
        "",
        f"Command: `python benchmarks/bench_script_runner.py --repeats {args.repeats}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores; load average {load_before:.1f} -> {load_after:.1f}. "
        "Each script runs `--help` (start-up and imports only); median of the repeats, runners alternated. "
        f"The fork server's start (its one import of everything, once per recipe run) took {server_start:.1f} s.",
        "",
        "| script | subprocess (reference) s | forked s | speed-up |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r['script']} | {r['subprocess_s']:.2f} | {r['fork_s']:.3f} | {r['speedup']:.0f}x |" for r in rows]
    write_results(args.out, "\n".join(lines) + "\n", {
        "rows": rows, "server_start_s": server_start, "load": [load_before, load_after]})


if __name__ == "__main__":
    main()
