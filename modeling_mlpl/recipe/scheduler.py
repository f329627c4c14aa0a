"""Run a plan of steps that declare their inputs, several at a time, each resumable on its own.

Why: on a small machine one training step cannot use every core (2 threads run ~1.1x one thread for
the demo's model), but two independent steps side by side give ~1.8x the throughput. So ready steps
(all their `needs` finished) run as up to `jobs` processes with `cores // jobs` threads each; a step
that is alone (nothing else ready or running, so nothing can become ready before it ends) gets every
core. Each finished step leaves `<done_dir>/<name>` (seconds, threads, time); a re-run skips it. A
failed step stops only the steps that need it; the others finish, then the failures are reported.

Steps run their work in threads of this process (the work is mostly waiting on a subprocess);
`current()` tells a step's code how many threads it was given and where its log goes.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

logger = logging.getLogger(__name__)

__all__ = ["Step", "StepContext", "SchedulerError", "current", "run_steps", "check_plan", "step_times",
           "render_step_times", "simulate_wall"]


@dataclass
class Step:
    """One unit of the plan. `needs`: names of steps whose outputs it reads; `outputs`: paths it writes."""

    stage: int
    name: str
    run: Callable[[], None]
    description: str = ""
    needs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()


@dataclass
class StepContext:
    """What the scheduler gave the step running in this thread."""

    name: str = ""
    threads: int = 1
    log_path: str | None = None  # None: the step's output goes to this process's stdout/stderr


class SchedulerError(RuntimeError):
    """The plan is inconsistent, or steps failed (message lists them)."""


_local = threading.local()


def current() -> StepContext:
    return getattr(_local, "context", None) or StepContext()


def check_plan(steps: list[Step]) -> None:
    """Names unique, every need known and planned earlier, no two steps writing the same output."""
    seen: set[str] = set()
    writers: dict[str, str] = {}
    for step in steps:
        if step.name in seen:
            raise SchedulerError(f"two steps are named {step.name!r}")
        unknown = [n for n in step.needs if n not in seen]
        if unknown:
            raise SchedulerError(f"step {step.name} needs {unknown}, which are not planned before it")
        for out in step.outputs:
            path = os.path.normpath(out)
            if path in writers:
                raise SchedulerError(f"steps {writers[path]} and {step.name} both write {path}")
            writers[path] = step.name
        seen.add(step.name)
    paths = sorted(writers)
    for a, b in zip(paths, paths[1:]):  # sorted: a folder sits right before what lies inside it
        if b.startswith(a + os.sep):
            raise SchedulerError(f"steps {writers[a]} and {writers[b]} write inside one another ({a}, {b})")


def step_times(done_dir: str, steps: list[Step]) -> list[dict]:
    """Per finished step: name, stage, seconds and threads from its marker (for the time table)."""
    rows = []
    for step in steps:
        marker = os.path.join(done_dir, step.name)
        if os.path.exists(marker):
            with open(marker) as f:
                info = json.load(f)
            rows.append({"step": step.name, "stage": step.stage, "seconds": info.get("seconds"),
                         "threads": info.get("threads"), "finished": info.get("finished")})  # fmt: skip
    return rows


def run_steps(steps: list[Step], done_dir: str, jobs: int = 1, cores: int = 1, force: bool = False,
              log_dir: str | None = None, selected: Callable[[Step], bool] = lambda s: True) -> None:  # fmt: skip
    """Run `steps` (in plan order when jobs == 1) respecting `needs`. A step whose marker exists is skipped
    unless a step it needs ran in this call (its outputs are then older than their inputs: a report after a
    newly added row, a fine-tune after its base was re-trained). Steps not `selected` are neither run
    nor waited for (their outputs are assumed to exist, as with --stage N). Raises SchedulerError listing
    the failed and blocked steps after every runnable step has finished."""
    check_plan(steps)
    os.makedirs(done_dir, exist_ok=True)
    jobs = max(1, jobs)
    todo = [s for s in steps if selected(s)]
    names = {s.name for s in todo}
    finished: set[str] = set()
    ran: set[str] = set()  # run in this call, not skipped: a marked step that needs one of them is stale
    failed: dict[str, str] = {}
    blocked: dict[str, str] = {}
    running: dict[Future, Step] = {}
    pending = list(todo)

    def marker(step: Step) -> str:
        return os.path.join(done_dir, step.name)

    def ready(step: Step) -> bool:
        return all(n in finished or n not in names for n in step.needs)

    def start(pool: ThreadPoolExecutor, step: Step, threads: int) -> None:
        log_path = os.path.join(log_dir, f"{step.name}.log") if log_dir and jobs > 1 else None
        where = f", log {log_path}" if log_path else ""
        logger.info("[stage %d] %s: %s (%d thread%s%s)", step.stage, step.name, step.description, threads,
                    "s" if threads > 1 else "", where)  # fmt: skip
        running[pool.submit(_run_one, step, StepContext(step.name, threads, log_path), marker(step))] = step

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        while pending or running:
            for step in list(pending):
                bad = [n for n in step.needs if n in failed or n in blocked]
                if bad:
                    blocked[step.name] = bad[0]
                    pending.remove(step)
                elif (os.path.exists(marker(step)) and not force and ready(step)
                      and not any(n in ran for n in step.needs)):  # e.g. the report after a newly added row
                    logger.info("[stage %d] %s: done, skipped", step.stage, step.name)
                    finished.add(step.name)
                    pending.remove(step)
            startable = [s for s in pending if ready(s)]
            if jobs == 1:
                startable = startable[:1] if startable and startable[0] is pending[0] else []
            while startable and len(running) < jobs:
                step = startable.pop(0)
                pending.remove(step)
                alone = not running and not startable
                start(pool, step, cores if alone else max(1, cores // jobs))
            if not running:
                if pending:  # nothing runs and nothing can start: a need is neither planned nor done
                    raise SchedulerError(f"steps {[s.name for s in pending]} wait for steps that cannot run")
                break
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in done:
                step = running.pop(future)
                error = future.exception()
                if error is None:
                    finished.add(step.name)
                    ran.add(step.name)
                    logger.info("[stage %d] %s: finished in %.0f s", step.stage, step.name,
                                json.load(open(marker(step)))["seconds"])  # fmt: skip
                else:
                    failed[step.name] = str(error)
                    logger.error("[stage %d] %s: failed: %s", step.stage, step.name, error)
    if failed:
        lines = [f"{name}: {why}" for name, why in failed.items()]
        lines += [f"{name}: not run, needs {need}" for name, need in blocked.items()]
        raise SchedulerError(f"{len(failed)} step(s) failed; " + "; ".join(lines))


def _run_one(step: Step, context: StepContext, marker: str) -> None:
    _local.context = context
    start = time.time()
    try:
        step.run()
    finally:
        _local.context = None
    with open(marker + ".tmp", "w") as f:
        json.dump({"seconds": round(time.time() - start, 1), "threads": context.threads,
                   "finished": time.strftime("%F %T")}, f)  # fmt: skip
    os.replace(marker + ".tmp", marker)


def render_step_times(rows: list[dict]) -> str:
    """Markdown table of per-step wall times (and the threads each step had), from :func:`step_times`."""
    if not rows:
        return ""
    lines = ["| stage | step | seconds | threads |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['stage']} | {r['step']} | {r['seconds']:.0f} | {r.get('threads') or '–'} |")
    total = sum(r["seconds"] or 0 for r in rows)
    lines.append(f"| | sum of step times | {total:.0f} | |")
    return "\n".join(lines)


def simulate_wall(steps: list[Step], seconds: dict[str, float], jobs: int) -> float:
    """Wall seconds :func:`run_steps` would take for `steps` with `jobs` slots if each step took
    `seconds[name]`: the same rule (plan order, a step starts once its needs are done, at most `jobs` at a
    time). Used to ask which rows fit a time budget from one measured run; it ignores that a step alone
    gets every core (slightly pessimistic for those)."""
    check_plan(steps)
    names = {s.name for s in steps}
    finish: dict[str, float] = {}
    running: list[tuple[float, str]] = []  # (end time, name)
    pending = list(steps)
    now = 0.0
    while pending or running:
        for step in list(pending):
            if len(running) >= jobs:
                break
            if all(n in finish and finish[n] <= now or n not in names for n in step.needs):
                pending.remove(step)
                running.append((now + seconds[step.name], step.name))
        if not running:
            raise SchedulerError(f"steps {[s.name for s in pending]} wait for steps that cannot run")
        running.sort()
        now, name = running.pop(0)
        finish[name] = now
    return now
