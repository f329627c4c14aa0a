"""Tune the LM weight alpha and word bonus beta per language on a dev set; save the best.

Decoding maximises log p(y|x) + alpha * log p_LM(y) + beta * |y|. The acoustic model runs once:
its dev logits come from a file written by `evaluate.py --save-logits` (or
`modeling_mlpl.decoding.tuning.save_logits`), or are computed here with --model/--data. Each
(alpha, beta) point re-runs only the beam search, spread over --workers processes. The search is
coarse-to-fine: the --alphas x --betas grid (or --random points), then --refine rounds around the
best point at half the previous step (--refine 0: the fixed grid only). The decoder's current
weights are always tried, so the saved result is never worse on dev.

Writes OUTPUT_DIR/tuning.json (every trial and the best alpha/beta per language; what `evaluate.py
--lm-params` reads), by default PROCESSOR_DIR/language_model/. Dev languages without an LM in
PROCESSOR_DIR are not tuned (a warning lists them); a --languages one without an LM is an error.

Examples:
  python run_scripts/tune_lm.py --processor-dir exp/model --logits exp/eval/dev_logits.npz
  python run_scripts/tune_lm.py --processor-dir exp/model --random 30 --metric cer \
      --model exp/model --data cv:data/cv --split dev --languages pt nl
  python run_scripts/tune_lm.py --processor-dir exp/lm --logits exp/dev-other.npz --dry-run \
      --output_dir exp/alpha_beta/other     # weights for another model, processor untouched
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
import zipfile
from pathlib import Path

from modeling_mlpl.command_line import ArgumentParser, UserError, add_output_dir, ensure_output_dir, ensure_output_file
from modeling_mlpl.decoding.lm_decoder import LMDecoder
from modeling_mlpl.decoding.tuning import (TUNING_FILE, alpha_beta_grid, default_workers, load_logits, random_alpha_beta,
                                          tune_alpha_beta)

logger = logging.getLogger("tune_lm")


def finite_float(text: str) -> float:
    """argparse ``type`` for grid points: nan/inf are floats to Python but no LM weight (nan never compares)."""
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def build_parser() -> ArgumentParser:
    p = ArgumentParser(description=__doc__)
    p.add_argument("--processor-dir", required=True, help="saved processor with a language_model/ folder (build_lm.py)")
    src = p.add_argument_group("dev logits (one of)")
    src.add_argument("--logits", help=".npz of dev logits + references + languages (save_logits)")
    src.add_argument("--model", help="model directory: compute dev logits with it (see evaluate.py)")
    src.add_argument("--data", action="append", default=[], metavar="KIND:PATH",
                     help="with --model: dev data, e.g. cv:DIR, vp:DIR, librispeech:DIR, folder:DIR (repeatable)")
    src.add_argument("--split", default="dev", help="with --model: split to use (default dev)")
    src.add_argument("--max-utterances", type=int, default=None, help="with --model: per language cap")
    p.add_argument("--languages", nargs="+", help="languages to tune (default: every language with an LM and dev data)")
    p.add_argument("--alphas", type=finite_float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0])
    p.add_argument("--betas", type=finite_float, nargs="+", default=[-1.0, 0.0, 1.0, 2.0, 3.0])
    p.add_argument("--random", type=int, default=0, metavar="N", help="N random points instead of the grid")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--metric", choices=["wer", "cer"], default="wer")
    p.add_argument("--beam-width", type=int, help="beam width while tuning (default: the decoder's)")
    p.add_argument("--backend", choices=["pyctcdecode", "flashlight"],
                   help="beam-search backend to tune with (default: the saved one); saved with the weights")
    p.add_argument("--refine", type=int, default=2, metavar="N",
                   help="coarse-to-fine rounds around the best grid point (default 2; 0 = fixed grid only)")
    p.add_argument("--workers", "--num-workers", dest="workers", type=int, default=default_workers(),
                   help=f"processes over the points of a round (default: the cores, {default_workers()})")
    add_output_dir(p, f"folder for {TUNING_FILE}, every trial and the best point per language "
                      "(default PROCESSOR_DIR/language_model)", old_file="--output")  # fmt: skip
    p.add_argument("--dry-run", action="store_true", help="report the best values but do not write them")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def dev_logits(args: argparse.Namespace):
    if bool(args.logits) == bool(args.model):
        raise ValueError("give either --logits FILE or --model DIR with --data")
    if args.logits:
        if not Path(args.logits).is_file():
            raise FileNotFoundError(f"logits file not found: {args.logits}")
        try:
            logits, refs, langs, _ = load_logits(args.logits)
        except (zipfile.BadZipFile, EOFError, OSError, KeyError, ValueError) as err:  # e.g. a copy cut short
            raise UserError(f"--logits {args.logits}: not a complete logits file ({err}); write it again "
                            "with evaluate.py --save-logits") from err  # fmt: skip
        return logits, refs, langs
    from modeling_mlpl.evaluation.test_sets import compute_logits, load_eval_sets

    if not args.data:
        raise ValueError("--model needs --data KIND:PATH")
    rows, logits = compute_logits(args.model, load_eval_sets(args.data, args.split, args.languages,
                                                              args.max_utterances))  # fmt: skip
    return logits, [r["reference"] for r in rows], [r["language"] for r in rows]


def output_path(args: argparse.Namespace) -> Path:
    """Where the trials go, its folder created and writable (a deprecated --output FILE names the file)."""
    if args.output_file:
        return ensure_output_file(args.output_file, "--output")
    folder = args.output_dir or Path(args.processor_dir) / "language_model"
    return ensure_output_dir(folder) / TUNING_FILE


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("pyctcdecode").setLevel(logging.ERROR)
    args = parse_args(argv)
    try:
        decoder = LMDecoder.from_pretrained(args.processor_dir, **({"backend": args.backend} if args.backend else {}))
        output = output_path(args)  # checked now, not after the whole search
        logits, refs, langs = dev_logits(args)
        if all(lang is None for lang in langs):
            langs = [decoder.config.default_language] * len(langs)
        languages = args.languages or [lang for lang in decoder.languages if lang in set(langs)]
        without_lm = sorted({lang for lang in langs if lang is not None} - set(decoder.languages))
        if without_lm and not args.languages:
            logger.warning("not tuned: no LM in %s for dev language(s) %s (%d utterances)", args.processor_dir,
                           without_lm, sum(lang in without_lm for lang in langs))  # fmt: skip
        if not languages:
            raise ValueError(f"no dev utterances for the decoder's languages {decoder.languages}")
        missing = [lang for lang in languages if lang not in decoder.languages]
        if missing:
            raise ValueError(f"no LM for {missing} in {args.processor_dir} (has {decoder.languages})")
        grid = (random_alpha_beta(args.random, seed=args.seed) if args.random
                else alpha_beta_grid(args.alphas, args.betas))  # fmt: skip
        results = {}
        for lang in languages:
            idx = [i for i, x in enumerate(langs) if x == lang]
            if not idx:
                raise ValueError(f"no dev utterances of language {lang!r}")
            start = time.perf_counter()
            result = tune_alpha_beta(decoder, [logits[i] for i in idx], [refs[i] for i in idx], lang, grid,
                                     args.metric, args.beam_width, args.workers, progress=True,
                                     refine=args.refine)  # fmt: skip
            results[lang] = result.to_dict()
            print(f"{lang}: {args.metric} greedy {result.greedy_score:.4f} | beam no-LM {result.no_lm_score:.4f} | "
                  f"LM before {result.initial_score:.4f} -> best {result.score:.4f} "
                  f"(alpha {result.alpha}, beta {result.beta}, {len(idx)} utts, {len(result.trials)} points, "
                  f"{time.perf_counter() - start:.1f} s)")  # fmt: skip
        if not args.dry_run:
            decoder.save_pretrained(args.processor_dir)
        output.write_text(json.dumps(results, indent=2) + "\n")
        logger.info("trials written to %s%s", output, " (dry run: decoder unchanged)" if args.dry_run else "")
    except (UserError, ValueError, FileNotFoundError, KeyError) as err:
        print(f"tune_lm.py: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
