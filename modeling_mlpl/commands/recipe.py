"""Run the paper's recipe, staged and idempotent (icefall style), from one config file.

    python run_scripts/recipe.py --config configs/demo.yaml                 # everything, seed 0
    python run_scripts/recipe.py --config configs/demo.yaml --stage 4 --stop-stage 6
    python run_scripts/recipe.py --config configs/demo.yaml --seeds 3       # seeds 0,1,2 + aggregate
    python run_scripts/recipe.py --config configs/demo.yaml --list          # the plan, nothing run
    python run_scripts/recipe.py --config configs/external_teacher.yaml      # a student of an external teacher

Stages: 0 corpus | 1 multilingual theta | 2 fine-tune theta' per target language | 3 pseudo-labels
| 4 strategy A/B, controls and options | 5 LMs, alpha/beta tuning, evaluation | 6 report.
Finished steps leave EXP/seedN/.done/<step> and are skipped on a re-run; a step killed half way is
resumed by its own script. Independent steps run side by side (--jobs; logs in EXP/seedN/logs/<step>.log
when they do); a failed step stops the steps that need it, the others finish. A per-step time table is
printed at the end and written into the report. Results: EXP/seedN/report/report.md (+ .json, .png), EXP/report.md over seeds.
"""

from __future__ import annotations

import logging
import sys


from modeling_mlpl.command_line import ArgumentParser
from modeling_mlpl.recipe.recipe import Recipe, RecipeConfig, RecipeError
from modeling_mlpl.recipe.script_runner import RUNNERS
from modeling_mlpl.recipe.variants import VARIANTS
from modeling_mlpl.recipe.report import aggregate_seeds


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True, help="recipe config (configs/demo.yaml, smoke.yaml, ...)")
    parser.add_argument("--stage", type=int, default=0, help="first stage to run (default 0)")
    parser.add_argument("--stop-stage", type=int, default=6,
                        help="last stage to run (default 6)")
    parser.add_argument("--seed", type=int, default=None, help="run this one seed")
    parser.add_argument("--seeds", type=int, default=1, help="run seeds 0..N-1 one after another, then aggregate")
    parser.add_argument("--threads", type=int, default=None,
                        help="cores the recipe may use (default: the config's `threads`)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="independent steps run side by side, each with threads // jobs torch threads (a step "
                             "alone gets every thread); default: the config's `jobs`, else --threads")
    parser.add_argument("--force", action="store_true", help="re-run steps even if they are marked done")
    parser.add_argument("--exp_dir", default=None, help="override the config's exp_dir")
    parser.add_argument("--corpus_dir", default=None, help="override the config's corpus.dir (synthetic corpus)")
    parser.add_argument("--variants", nargs="+", default=None, metavar="VARIANT",
                        help="override the config's stage-4 variants, e.g. --variants stage4a labels_only oracle "
                             "pl_lm (finished steps are reused); choices: " + ", ".join(VARIANTS))  # fmt: skip
    parser.add_argument("--teacher", default=None, metavar="MODEL",
                        help="override the config's `teacher:`: stage 3's pseudo-labels come from this checkpoint "
                             "(folder or Hub id; any kind pseudo_label.py takes, docs/teachers.md) instead of theta'")
    parser.add_argument("--script-runner", choices=RUNNERS, default=None,
                        help="fork: each script forks from a server that imported torch & co. once (default; saves "
                             "7-15 s per script here); subprocess: a plain `python script.py` per script")
    parser.add_argument("--list", action="store_true", help="print the steps and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s recipe: %(message)s", datefmt="%H:%M:%S")
    try:
        config = RecipeConfig.load(args.config)
        if args.exp_dir:
            config.exp_dir = args.exp_dir
        if args.corpus_dir:
            config.corpus["dir"] = args.corpus_dir
        if args.variants:
            config.variants = args.variants
        if args.teacher:
            config.teacher = args.teacher
        if args.variants or args.teacher:
            config.validate(f"{args.config} with --variants/--teacher")
        seeds = [args.seed] if args.seed is not None else list(range(args.seeds))
        for seed in seeds:
            recipe = Recipe(config, seed=seed, threads=args.threads, jobs=args.jobs, runner=args.script_runner)
            if args.list:
                for step in recipe.steps():
                    needs = f"  <- {', '.join(step.needs)}" if step.needs else ""
                    print(f"stage {step.stage}  {step.name:<22} {step.description}{needs}")
                return 0
            recipe.run(args.stage, args.stop_stage, force=args.force)
        if args.stop_stage >= 6:
            print(aggregate_seeds(config.exp_dir, seeds))
    except RecipeError as err:
        print(f"recipe.py: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("recipe.py: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
