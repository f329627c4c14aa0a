"""Run the recipe's commands without paying Python + torch + transformers start-up for each one.

Why: a demo runs ~110 scripts (train, pseudo-label, evaluate, tune), and on these 2-core machines importing
torch, transformers, datasets and this package takes 7-15 s per process, most of a short step (a 69-utterance
evaluation is 3 s of work). A fork server (``multiprocessing``'s ``forkserver``) imports them once; each
script then runs in a fresh process forked from it, so it is as isolated as a subprocess (own globals,
logging, RNG, exit code) but starts in milliseconds. The server is single-threaded, so forking is safe
even though the recipe runs steps from several threads.

``runner="subprocess"`` (``recipe.py --script-runner subprocess``, or ``MLPL_SCRIPT_RUNNER=subprocess``) runs
each command as a plain ``python -m module`` instead, e.g. where fork is unavailable. Commands are named by module
(``modeling_mlpl.commands.train``), not by a checkout's path, so an installed package runs a recipe too.
"""

from __future__ import annotations

import multiprocessing
import os
import runpy
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence

__all__ = ["RUNNERS", "PRELOAD", "default_runner", "run_script"]

RUNNERS = ("fork", "subprocess")

# What the scripts import; a module that fails to import is skipped by the server (the script then imports
# it itself, or fails with its own message).
PRELOAD = [
    "numpy", "torch", "transformers", "datasets", "accelerate", "soundfile", "soxr", "jiwer",
    "modeling_mlpl", "modeling_mlpl.evaluation.test_sets", "modeling_mlpl.decoding.tuning", "modeling_mlpl.training.trainer",
    "modeling_mlpl.pseudo_labeling.labeler", "modeling_mlpl.pseudo_labeling.merge", "modeling_mlpl.decoding.ngram_lm",
    "modeling_mlpl.recipe.script_runner",
]  # fmt: skip

_start_lock = threading.Lock()
_context = None


def default_runner() -> str:
    wanted = os.environ.get("MLPL_SCRIPT_RUNNER", "fork")
    if wanted not in RUNNERS:
        raise ValueError(f"MLPL_SCRIPT_RUNNER={wanted!r}: use one of {', '.join(RUNNERS)}")
    if wanted == "fork" and "forkserver" not in multiprocessing.get_all_start_methods():
        return "subprocess"
    return wanted


def _fork_context():
    global _context
    if _context is None:
        # Read at import time by huggingface_hub: the server's imports must already see the offline setting.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    return _context


def _run_in_child(module: str, argv: list[str], env: dict[str, str], log_path: str | None) -> None:
    """Body of a forked child: become `python -m module argv...` with `env`, output appended to `log_path`."""
    os.environ.clear()
    os.environ.update(env)
    if log_path is not None:
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    sys.stdout.reconfigure(line_buffering=True)
    sys.stderr.reconfigure(line_buffering=True)
    threads = env.get("OMP_NUM_THREADS")
    if threads and "torch" in sys.modules:  # libgomp read the server's value at import: set this step's own
        sys.modules["torch"].set_num_threads(int(threads))
    # As a fresh interpreter would: $PYTHONPATH first (the server read its own at start-up).
    sys.path[:0] = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]
    sys.argv = [module, *argv]
    runpy.run_module(module, run_name="__main__", alter_sys=True)  # SystemExit(code) becomes the exit code


def run_script(module: str, argv: Sequence[str], env: Mapping[str, str], log_path: str | None = None,
               runner: str | None = None) -> int:  # fmt: skip
    """Run `python -m module *argv` with `env` (stdout + stderr appended to `log_path`, else inherited) and
    return its exit code."""
    runner = runner or default_runner()
    if runner == "subprocess":
        cmd = [sys.executable, "-m", module, *argv]
        if log_path is None:
            return subprocess.run(cmd, env=dict(env)).returncode
        with open(log_path, "a", encoding="utf-8") as log:
            return subprocess.run(cmd, env=dict(env), stdout=log, stderr=subprocess.STDOUT).returncode
    if runner != "fork":
        raise ValueError(f"runner {runner!r}: use one of {', '.join(RUNNERS)}")
    context = _fork_context()
    process = context.Process(target=_run_in_child, args=(module, list(argv), dict(env), log_path), name=module)
    with _start_lock:  # multiprocessing's bookkeeping of children is not meant for concurrent starts
        process.start()
    process.join()
    return process.exitcode if process.exitcode is not None else 1
