"""The recipe's script runner: a forked command behaves like `python -m module` (exit code, output, env, threads)."""

import pytest

from modeling_mlpl.recipe.script_runner import RUNNERS, run_script

SCRIPT = """
import os, sys
import torch
print("argv", sys.argv[1:])
print("env", os.environ.get("MLPL_TEST_VALUE"))
print("threads", torch.get_num_threads())
print("name", __name__)
sys.stderr.write("to stderr\\n")
leaked = globals().get("LEAK")
print("leak", leaked)
LEAK = "set by a previous run"
if sys.argv[1:] == ["fail"]:
    sys.exit(3)
if sys.argv[1:] == ["raise"]:
    raise RuntimeError("boom")
"""


@pytest.fixture
def script(tmp_path):
    """A module `mlpl_probe` importable through the env's PYTHONPATH (as the recipe sets it)."""
    (tmp_path / "mlpl_probe.py").write_text(SCRIPT)
    return "mlpl_probe"


def probe_env(tmp_path, **values) -> dict:
    return {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path), **values}


@pytest.mark.parametrize("runner", RUNNERS)
def test_a_script_gets_its_argv_env_threads_and_writes_to_its_log(script, tmp_path, runner):
    log = tmp_path / "step.log"
    env = probe_env(tmp_path, MLPL_TEST_VALUE="42", OMP_NUM_THREADS="1")
    assert run_script(script, ["a", "b"], env, str(log), runner=runner) == 0
    text = log.read_text()
    assert "argv ['a', 'b']" in text
    assert "env 42" in text
    assert "threads 1" in text
    assert "name __main__" in text
    assert "to stderr" in text


@pytest.mark.parametrize("runner", RUNNERS)
def test_exit_codes_and_exceptions_are_returned_like_a_subprocess(script, tmp_path, runner):
    log = tmp_path / "step.log"
    env = probe_env(tmp_path, OMP_NUM_THREADS="1")
    assert run_script(script, ["fail"], env, str(log), runner=runner) == 3
    assert run_script(script, ["raise"], env, str(log), runner=runner) == 1
    assert "RuntimeError: boom" in log.read_text()


def test_forked_runs_share_no_state_and_appended_logs_keep_every_run(script, tmp_path):
    log = tmp_path / "step.log"
    env = probe_env(tmp_path, OMP_NUM_THREADS="2")
    log.write_text("$ header written by the recipe\n")
    for _ in range(2):
        assert run_script(script, [], env, str(log), runner="fork") == 0
    text = log.read_text()
    assert text.startswith("$ header written by the recipe\n")
    assert text.count("leak None") == 2  # the second run did not see the first one's globals
    assert text.count("threads 2") == 2


def test_an_unknown_runner_is_refused(script):
    with pytest.raises(ValueError, match="fork, subprocess"):
        run_script(script, [], {}, None, runner="thread")
