#!/usr/bin/env python
"""Wall time of a config that cannot be run here (configs/full.yaml), by arithmetic: every planned step's cost
from measured unit costs, replayed through the scheduler's own rule (`scheduler.simulate_wall`), as
`demo_budget.py` replays a measured run.

    python benchmarks/full_budget.py                          # configs/full.yaml -> results/full_budget.md
    python benchmarks/full_budget.py --config configs/demo.yaml   # the check: the demo's own step times

Unit costs (1-thread seconds unless said; `tiny` model, 60 s batches) come from `make demo`'s measured
step-time sums (README "Results", fresh 2-core machine, 02 Dec 2026): stage 1 312 s for 1000 updates on 2
threads; stage 2 1343 s for 4 x 150 supervised + 4 x 400 slimIPL updates; stage 4 2732 s for 3 x 800 + 12 x
150 updates; stage 3 270 s for greedy PLs + oracle alignment of 4 x 70 min; stage 5 513 s for 25 models
(dev logits, alpha/beta, test); corpus 163 s (2 threads) for its 8.3 h of audio. Model size: a `small`
update costs 1.7x a `tiny` one (measured, 1 thread, 60 s batches of 10 s crops; configs/full.yaml), applied
to inference too. Not counted: the feature cache's saving (benchmarks/results/feature_cache.md; measured on
a loaded machine, so not mixed with these idle-machine costs): the estimate errs on the long side.
"""

from __future__ import annotations

import argparse
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from modeling_mlpl.recipe.recipe import Recipe, RecipeConfig  # noqa: E402
from modeling_mlpl.recipe.scheduler import simulate_wall  # noqa: E402
from modeling_mlpl.synthetic.corpus import PRESETS  # noqa: E402
from results_io import write_results  # noqa: E402

# make demo's measured sums (README "Results"), per unit, tiny model
STAGE1_UPDATE_2T = 312 / 1000  # s per update, 2 threads, alone
STAGE2_UPDATE = 1343 / (4 * 150 + 4 * 400)  # s per update, 1 thread (dev evaluations and slimIPL labelling included)
STAGE4_UPDATE = 2732 / (3 * 800 + 12 * 150)  # s per update, 1 thread (fine-tunes' dev evaluations included)
PL_PASS_PER_HOUR = 270 / (2 * 4 * 70 / 60)  # s per hour of unlabeled audio per pass (greedy PLs, oracle alignment)
MODEL_EVAL = 513 / 25  # s per model: dev logits + alpha/beta search + test, greedy and LM
DEMO_EVAL_MINUTES = 4 + 9  # a demo target's dev + test minutes (evaluation scales with them)
CORPUS_PER_HOUR = 163 / (500 / 60)  # s per hour of synthesised audio, 2 threads
SMALL_OVER_TINY = {"tiny": 1.0, "small": 1.7}


def corpus_hours(config: RecipeConfig) -> tuple[float, object]:
    """Hours of audio the synthetic corpus holds, and its sizes."""
    corpus = config.corpus
    size = PRESETS[corpus["preset"]].replace(**corpus.get("sizes", {}))
    high = size.high_train_minutes + size.high_dev_minutes + size.high_test_minutes + size.high_unlabelled_minutes
    low = size.low_train_minutes + size.low_unlabelled_minutes + size.low_dev_minutes + size.low_test_minutes
    return (len(config.high_resource) * high + len(config.low_resource) * low) / 60, size


def block_steps(config: RecipeConfig, *blocks: str) -> int:
    merged = dict(config.train_common)
    for block in blocks:
        merged.update(getattr(config, block))
    return int(merged["max_steps"])


def step_costs(config: RecipeConfig, recipe: Recipe) -> dict[str, float]:
    hours, size = corpus_hours(config)
    scale = SMALL_OVER_TINY[config.stage1.get("preset", "tiny")]
    update4 = STAGE4_UPDATE * scale
    eval_scale = scale * (size.low_dev_minutes + size.low_test_minutes) / DEMO_EVAL_MINUTES
    pl_pass = size.low_unlabelled_minutes / 60 * PL_PASS_PER_HOUR * scale
    costs = {}
    for step in recipe.steps():
        n = step.name
        if n == "corpus":
            cost = hours * CORPUS_PER_HOUR
        elif n == "stage1":
            cost = block_steps(config, "stage1") * STAGE1_UPDATE_2T * scale
        elif n.startswith("stage2ssl-"):
            updates = block_steps(config, "stage2", "stage2_semi") - config.pl_start_step  # continues theta'
            cost = updates * STAGE2_UPDATE * scale
        elif n.startswith("stage2-"):
            cost = block_steps(config, "stage2") * STAGE2_UPDATE * scale
        elif n.startswith(("pl-", "oracle-", "pl_lm-", "pl_round2-")):
            cost = pl_pass
        elif n == "lm":
            cost = 30.0
        elif n == "tune-lm":
            cost = (1 + len(config.low_resource)) * MODEL_EVAL * eval_scale
        elif n.startswith(("tune-", "eval-")):
            cost = MODEL_EVAL * eval_scale / 2
        elif n == "report":
            cost = 5.0
        elif n.endswith("-scratch"):
            cost = block_steps(config, "stage4b_scratch") * update4
        elif n.startswith("stage4b-"):
            cost = block_steps(config, "stage4b_finetune") * update4
        elif any(n.startswith(f"{v}-") for v in config.variants):  # a per-language fine-tune
            cost = block_steps(config, "stage4_finetune") * update4
        else:  # a stage-4 run over all target languages (A, control, oracle, ...)
            cost = block_steps(config, "stage4") * update4
        costs[n] = cost
    return costs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=os.path.join(REPO, "configs", "full.yaml"))
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "full_budget"))
    args = parser.parse_args(argv)
    config = RecipeConfig.load(args.config)
    recipe = Recipe(config, seed=0)
    costs = step_costs(config, recipe)
    steps = recipe.steps()
    wall = simulate_wall(steps, costs, recipe.jobs)
    by_stage: dict[int, float] = {}
    for step in steps:
        by_stage[step.stage] = by_stage.get(step.stage, 0.0) + costs[step.name]
    names = {0: "corpus", 1: "stage 1", 2: "stage 2", 3: "stage 3 (PLs)", 4: "stage 4", 5: "stage 5 (LM, eval)", 6: "report"}
    lines = [f"# Wall time of {os.path.relpath(args.config, REPO)} by arithmetic (not a run)", "",
             f"Command: `python benchmarks/full_budget.py --config {os.path.relpath(args.config, REPO)}`  ",
             f"{len(steps)} steps, {recipe.jobs} side by side; unit costs: the script's docstring (feature cache not "
             "counted).", "",
             "| stage | 1-thread work (min) |", "|---|---|"]  # fmt: skip
    lines += [f"| {names[s]} | {by_stage[s] / 60:.1f} |" for s in sorted(by_stage)]
    total = sum(costs.values())
    lines += [f"| **all** | **{total / 60:.1f}** |", "",
              f"Replayed wall (scheduler rule, {recipe.jobs} slots): **{wall / 60:.1f} min** ({wall / 3600:.2f} h)."]  # fmt: skip
    write_results(args.out, "\n".join(lines) + "\n", {"config": os.path.relpath(args.config, REPO),
                                                      "steps": costs, "work_s": total, "wall_s": wall})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
