"""The recipe's step scheduler: dependency order, side-by-side steps, failures, resume after a kill."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from modeling_mlpl.recipe.scheduler import SchedulerError, Step, check_plan, current, run_steps, simulate_wall

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Clock:
    """Records when each step started and ended, and how many threads it was given."""

    def __init__(self):
        self.lock = threading.Lock()
        self.events: dict[str, dict] = {}

    def step(self, name, seconds=0.2, fail=False, needs=()):
        def run():
            with self.lock:
                self.events[name] = {"start": time.monotonic(), "threads": current().threads}
            time.sleep(seconds)
            if fail:
                raise RuntimeError(f"{name} broke")
            with self.lock:
                self.events[name]["end"] = time.monotonic()

        return Step(1, name, run, needs=tuple(needs))


def test_a_step_starts_only_after_every_step_it_needs_has_finished(tmp_path):
    clock = Clock()
    steps = [clock.step("a"), clock.step("b"), clock.step("c", needs=["a", "b"]), clock.step("d", needs=["c"])]
    run_steps(steps, str(tmp_path / "done"), jobs=2, cores=2)
    e = clock.events
    assert e["c"]["start"] >= max(e["a"]["end"], e["b"]["end"])
    assert e["d"]["start"] >= e["c"]["end"]
    assert sorted(os.listdir(tmp_path / "done")) == ["a", "b", "c", "d"]


def test_independent_steps_run_side_by_side_with_a_share_of_the_cores(tmp_path):
    clock = Clock()
    steps = [clock.step("a", 0.5), clock.step("b", 0.5), clock.step("alone", 0.1, needs=["a", "b"])]
    run_steps(steps, str(tmp_path / "done"), jobs=2, cores=2)
    e = clock.events
    assert e["b"]["start"] < e["a"]["end"] and e["a"]["start"] < e["b"]["end"]  # they overlapped
    assert e["a"]["threads"] == e["b"]["threads"] == 1
    assert e["alone"]["threads"] == 2  # nothing else ready or running: it gets every core
    assert json.load(open(tmp_path / "done" / "a"))["threads"] == 1


def test_one_job_runs_the_steps_in_plan_order(tmp_path):
    clock = Clock()
    steps = [clock.step("a", 0.05), clock.step("b", 0.05), clock.step("c", 0.05)]
    run_steps(steps, str(tmp_path / "done"), jobs=1, cores=2)
    starts = sorted(clock.events, key=lambda n: clock.events[n]["start"])
    assert starts == ["a", "b", "c"]
    assert all(v["threads"] == 2 for v in clock.events.values())


def test_a_failed_step_stops_its_dependants_and_the_others_finish(tmp_path):
    clock = Clock()
    steps = [clock.step("bad", 0.05, fail=True), clock.step("after_bad", needs=["bad"]), clock.step("fine", 0.3)]
    with pytest.raises(SchedulerError, match=r"1 step\(s\) failed; bad: bad broke; after_bad: not run, needs bad"):
        run_steps(steps, str(tmp_path / "done"), jobs=2, cores=2)
    assert "after_bad" not in clock.events and "end" in clock.events["fine"]
    assert sorted(os.listdir(tmp_path / "done")) == ["fine"]


def test_finished_steps_are_skipped_on_a_rerun(tmp_path):
    clock = Clock()
    steps = [clock.step("a", 0.01), clock.step("b", 0.01, needs=["a"])]
    run_steps(steps, str(tmp_path / "done"), jobs=2, cores=2)
    clock.events.clear()
    run_steps(steps, str(tmp_path / "done"), jobs=2, cores=2)
    assert clock.events == {}
    run_steps(steps, str(tmp_path / "done"), jobs=2, cores=2, force=True)
    assert set(clock.events) == {"a", "b"}


def test_a_finished_step_reruns_when_a_step_it_needs_ran_after_it(tmp_path):
    clock = Clock()
    done = str(tmp_path / "done")
    report = lambda needs: clock.step("report", 0.01, needs=needs)  # noqa: E731
    run_steps([clock.step("a", 0.01), report(["a"])], done, jobs=1, cores=1)
    clock.events.clear()
    # A row added to a finished run: its new step runs, and the report that needs it is rendered again.
    run_steps([clock.step("a", 0.01), clock.step("b", 0.01), report(["a", "b"])], done, jobs=1, cores=1)
    assert set(clock.events) == {"b", "report"}
    clock.events.clear()
    run_steps([clock.step("a", 0.01), clock.step("b", 0.01), report(["a", "b"])], done, jobs=1, cores=1)
    assert clock.events == {}  # nothing ran, so nothing is stale


def test_plans_where_two_steps_write_the_same_place_are_refused():
    noop = lambda: None  # noqa: E731
    with pytest.raises(SchedulerError, match="both write"):
        check_plan([Step(1, "a", noop, outputs=("exp/x",)), Step(1, "b", noop, outputs=("exp/x/",))])
    with pytest.raises(SchedulerError, match="inside one another"):
        check_plan([Step(1, "a", noop, outputs=("exp/x",)), Step(1, "b", noop, outputs=("exp/x/y",))])
    with pytest.raises(SchedulerError, match="not planned before it"):
        check_plan([Step(1, "a", noop, needs=("b",)), Step(1, "b", noop)])


_PLAN = textwrap.dedent(
    """
    import os, sys, time
    sys.path.insert(0, {repo!r})
    from modeling_mlpl.recipe.scheduler import Step, run_steps
    out = {out!r}

    def work(name, seconds):
        def run():
            with open(os.path.join(out, name + ".log"), "a") as f:
                f.write("start\\n")
            time.sleep(seconds)
            with open(os.path.join(out, name + ".txt"), "w") as f:
                f.write(name)
        return run

    steps = [Step(1, "quick", work("quick", 0.05)), Step(1, "slow_a", work("slow_a", {slow})),
             Step(1, "slow_b", work("slow_b", {slow})), Step(2, "last", work("last", 0.05), needs=("slow_a", "slow_b"))]
    run_steps(steps, os.path.join(out, "done"), jobs=2, cores=2)
    """
)


def test_a_parallel_run_killed_half_way_resumes_the_unfinished_steps_only(tmp_path):
    out = str(tmp_path)
    script = tmp_path / "plan.py"
    script.write_text(_PLAN.format(repo=REPO, out=out, slow=30))
    proc = subprocess.Popen([sys.executable, str(script)])
    deadline = time.time() + 300  # importing the package (torch) takes a while on a loaded machine
    while not (os.path.exists(tmp_path / "done" / "quick") and os.path.exists(tmp_path / "slow_b.log")):
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # both slow steps are running
    proc.wait()
    assert sorted(os.listdir(tmp_path / "done")) == ["quick"]
    script.write_text(_PLAN.format(repo=REPO, out=out, slow=0.05))
    subprocess.run([sys.executable, str(script)], check=True, timeout=300)
    assert sorted(os.listdir(tmp_path / "done")) == ["last", "quick", "slow_a", "slow_b"]
    assert open(tmp_path / "quick.log").read() == "start\n"  # finished before the kill: not run again
    assert open(tmp_path / "slow_a.log").read().count("start") == 2  # killed half way: run again
    assert all(open(tmp_path / f"{n}.txt").read() == n for n in ("quick", "slow_a", "slow_b", "last"))


def test_the_simulated_wall_time_follows_the_schedulers_rule():
    clock = Clock()
    seconds = {"a": 0.2, "b": 0.3, "c": 0.4, "d": 0.1}
    steps = [clock.step("a", seconds["a"]), clock.step("b", seconds["b"], needs=["a"]),
             clock.step("c", seconds["c"]), clock.step("d", seconds["d"], needs=["b", "c"])]
    # two slots: a and c start at 0, b after a (0.2 -> 0.5), d after b and c (0.5 -> 0.6)
    assert simulate_wall(steps, seconds, jobs=2) == pytest.approx(0.6)
    assert simulate_wall(steps, seconds, jobs=1) == pytest.approx(1.0)
    assert simulate_wall(steps, seconds, jobs=4) == pytest.approx(0.6)  # d still waits for b
