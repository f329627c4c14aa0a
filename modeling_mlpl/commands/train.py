"""Train an MLPL model: stage 1 (multilingual), stage 2 (monolingual fine-tuning) and stage 4 (with PLs).

Runs the same on one CPU, several CPU processes and GPUs:

    python run_scripts/train.py [CONFIG.yaml|CONFIG.json] [--field value ...]
    accelerate launch --num_processes 2 run_scripts/train.py CONFIG.yaml      # data-parallel

Every field is listed by `--help`; a config file gives defaults that command-line flags override.

Recipe stages (docs/paper.md "Recipe"), as invocations of this one script:

    # 1. multilingual theta on Common Voice (tokenizer and LID classes from the data)
    train.py --preset large --train_data cv:CV@train --eval_data cv:CV@dev --output_dir theta
    # 2. monolingual theta' (10k updates on one language; LID head kept)
    train.py --init_from theta --train_data cv:CV@train --eval_data cv:CV@dev --cv_languages pt \
             --max_steps 10000 --warmup_steps 0 --output_dir theta_pt --load_best_model_at_end true
    # 2'. semi-supervised theta' (the paper's stage 2; slimIPL): the same, plus that language's unlabelled audio
    train.py --init_from theta --train_data cv:CV@train --eval_data cv:CV@dev --cv_languages pt \
             --unlabeled_data voxpopuli:VP --pl_start_step 2000 --pl_labeled_updates 1 --pl_unlabeled_updates 4 --pl_cache_size 100 --pl_cache_refresh_prob 0.1 \
             --pl_dropout 0.1 --max_steps 10000 --output_dir theta_pt
    # 3. pseudo-labels: run_scripts/pseudo_label.py with theta_pt -> PL_pt (save_to_disk folder)
    # 4A. strategy A: continue theta on CV + PLs of every VP language
    train.py --init_from theta --train_data cv:CV@train disk:PL_pt disk:PL_nl ... --eval_data cv:CV@dev \
             --output_dir final_A
    # 4B. strategy B: from scratch on CV + PLs (same vocabulary as theta), then fine-tune on CV only
    train.py --preset large --tokenizer_dir theta --languages <theta's languages> \
             --train_data cv:CV@train disk:PL_pt disk:PL_nl ... --eval_data cv:CV@dev --output_dir scratch_B
    train.py --init_from scratch_B --train_data cv:CV@train --eval_data cv:CV@dev --output_dir final_B \
             --warmup_steps 0

Resume a killed run with the same command plus `--resume true`: it continues from the latest
checkpoint at the same batch of the same epoch, with optimizer, scheduler and RNG states restored.
Bad configuration values end the run with a one-line message and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys


from transformers import HfArgumentParser

from modeling_mlpl.command_line import UserError, ensure_output_dir
from modeling_mlpl.hub import HubError, maybe_push_to_hub, resolve_token

from modeling_mlpl.training.arguments import DATA_SPECS_HELP, TRAIN_ARGUMENT_CLASSES, mapping_to_argv
from modeling_mlpl.training import (
    ConfigError,
    DataArguments,
    MLPLTrainingArguments,
    ModelArguments,
    train,
    validate_arguments,
)

logger = logging.getLogger("train")


def config_file_to_argv(path: str, parser: HfArgumentParser) -> list[str]:
    """A YAML/JSON config (a flat mapping of field names) as command-line arguments."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} not found")
    with open(path, encoding="utf-8") as f:
        if path.endswith(".json"):
            values = json.load(f)
        else:
            import yaml

            values = yaml.safe_load(f) or {}
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a mapping of argument names to values")
    known = {action.dest for action in parser._actions}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"config file {path}: unknown field(s) {unknown}; see --help")
    return mapping_to_argv(values)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults after each flag (HfArgumentParser's own choice), and the description's lines kept: the
    data paragraph lists spec forms that read badly reflowed."""


def parse_args(argv: list[str]) -> tuple[ModelArguments, DataArguments, MLPLTrainingArguments]:
    # No prefix abbreviations (as in modeling_mlpl.command_line): `--max_step 10` must not quietly mean --max_steps.
    parser = HfArgumentParser(TRAIN_ARGUMENT_CLASSES, description=__doc__.split("\n\n")[0] + "\n\n" + DATA_SPECS_HELP,
                              formatter_class=_HelpFormatter, allow_abbrev=False)
    if argv and argv[0].endswith((".yaml", ".yml", ".json")):
        argv = config_file_to_argv(argv[0], parser) + argv[1:]
    # Unknown flags come back to us: one line and exit 2 instead of parse_args_into_dataclasses' ValueError
    # traceback ("Some specified arguments are not used by the HfArgumentParser").
    *parsed, unknown = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    if unknown:
        raise ConfigError(f"unrecognized arguments: {' '.join(unknown)}; see --help")
    return tuple(parsed)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        model_args, data_args, training_args = parse_args(argv)
        rank = int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))
        logging.basicConfig(
            level=logging.INFO if rank == 0 else logging.WARNING,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        # Every check before anything is written or trained: a refused run leaves no output folder behind.
        data = validate_arguments(model_args, data_args, training_args)
        if training_args.push_to_hub:  # fail before hours of training, not after
            if not training_args.hub_model_id:
                raise HubError("--push_to_hub needs --hub_model_id user/name")
            if not training_args.hub_dry_run:
                resolve_token(training_args.hub_token)
        ensure_output_dir(training_args.output_dir)  # a file there, or no permission
        result = train(model_args, data_args, training_args, data=data)
        if rank == 0:
            maybe_push_to_hub(result.output_dir, training_args, stage=training_args.hub_stage)
    except (ConfigError, HubError, UserError) as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        return 2
    cer = f", best mean dev CER {result.best_metric:.4f} at update {result.best_step}" if result.best_metric is not None else ""
    logger.info("done: %d updates%s; model in %s", result.step, cer, result.output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
