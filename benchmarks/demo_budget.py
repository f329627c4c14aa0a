#!/usr/bin/env python
"""Which rows of a recipe fit a time budget, from one measured run's per-step times.

Reads the step markers of a finished run (`EXP/seedN/.done/<step>`: wall seconds each step took), plans
the recipe again for several row sets (`--variants`-style subsets, the supervised or semi-supervised
teacher), and replays each plan through the scheduler's own rule with those step times
(`scheduler.simulate_wall`). Reference: the measured run itself (its wall time from the first step's start
to the last step's end, and the replay of its full plan, which should match it). Also printed: the
1-thread work of each plan divided by the cores, a lower bound no scheduler can beat.

    python benchmarks/demo_budget.py --config configs/demo.yaml --exp exp/demo/seed0 --setup 128

Step times measured with a neighbour on the other core are reused as they are; a step that would run
alone in a smaller plan (and get both threads) is counted at its 1-thread time, so smaller plans are
slightly pessimistic.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from modeling_mlpl.recipe.recipe import Recipe, RecipeConfig  # noqa: E402
from modeling_mlpl.recipe.scheduler import simulate_wall  # noqa: E402
from results_io import write_results  # noqa: E402

# (label, variants, stage2_mode); None = the config's own
ROW_SETS = [
    ("the config's rows (make demo)", None, None),
    ("without oracle_ft", ["stage4a", "labels_only", "oracle", "stage4a_ft", "labels_only_ft"], None),
    ("without oracle and oracle_ft", ["stage4a", "labels_only", "stage4a_ft", "labels_only_ft"], None),
    ("the rows before the PL issue (theta, theta', A, control, oracle; supervised teacher)",
     ["stage4a", "labels_only", "oracle"], "supervised"),
]  # fmt: skip


def measured_seconds(exp: str) -> tuple[dict[str, float], float]:
    """Step -> seconds, and the run's wall time (first start to last end) from the markers."""
    done = os.path.join(exp, ".done")
    seconds, starts, ends = {}, [], []
    for name in os.listdir(done):
        if name.endswith(".tmp"):
            continue
        with open(os.path.join(done, name)) as f:
            info = json.load(f)
        end = time.mktime(time.strptime(info["finished"], "%Y-%m-%d %H:%M:%S"))
        seconds[name] = info["seconds"]
        starts.append(end - info["seconds"])
        ends.append(end)
    return seconds, max(ends) - min(starts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=os.path.join(REPO, "configs", "demo.yaml"))
    parser.add_argument("--exp", required=True, help="a finished run's EXP/seedN")
    parser.add_argument("--setup", type=float, default=0.0, help="measured set-up seconds (make setup) to add")
    parser.add_argument("--budget", type=float, default=30.0, help="minutes")
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "demo_budget"))
    args = parser.parse_args()
    seconds, measured_wall = measured_seconds(args.exp)
    rows = []
    for label, variants, mode in ROW_SETS:
        config = RecipeConfig.load(args.config)
        if variants is not None:
            config.variants = variants
        if mode == "supervised":
            config.stage2_mode = "supervised"
        recipe = Recipe(config, seed=0)
        steps = [s for s in recipe.steps() if s.name != "report"]
        missing = [s.name for s in steps if s.name not in seconds]
        if missing:
            rows.append({"rows": label, "missing": missing})
            continue
        wall = simulate_wall(steps, seconds, recipe.jobs)
        work = sum(seconds[s.name] for s in steps)
        rows.append({"rows": label, "steps": len(steps), "work_s": work, "bound_s": work / recipe.threads,
                     "wall_s": wall, "with_setup_min": (wall + args.setup) / 60})  # fmt: skip
    lines = [
        "# Which rows fit the demo's time budget (replayed from one measured run)",
        "",
        f"Command: `python benchmarks/demo_budget.py --config {os.path.relpath(args.config, REPO)} --exp {args.exp} "
        f"--setup {args.setup:.0f}`  ",
        f"Measured run: {measured_wall / 60:.1f} min from its first step's start to its last step's end "
        f"(+ {args.setup / 60:.1f} min set-up). Replay = the scheduler's rule over the measured step times; "
        "bound = 1-thread work / cores.",
        "",
        "| rows | steps | 1-thread work (min) | bound (min) | replayed wall (min) | + set-up (min) "
        f"| fits {args.budget:.0f} min |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "missing" in r:
            lines.append(f"| {r['rows']} | not measured: {', '.join(r['missing'][:4])} … | | | | | |")
            continue
        fits = "yes" if r["with_setup_min"] <= args.budget else "no"
        lines.append(f"| {r['rows']} | {r['steps']} | {r['work_s'] / 60:.1f} | {r['bound_s'] / 60:.1f} | "
                     f"{r['wall_s'] / 60:.1f} | {r['with_setup_min']:.1f} | {fits} |")  # fmt: skip
    write_results(args.out, "\n".join(lines) + "\n", {
        "measured_wall_s": measured_wall, "setup_s": args.setup, "rows": rows})


if __name__ == "__main__":
    main()
