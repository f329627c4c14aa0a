"""Evaluate a saved model on test sets: per-language CER/WER, greedy and LM decoding side by side.

Writes OUTPUT_DIR/predictions.jsonl (one line per utterance: reference, greedy and LM output, fsync'd per batch;
a rerun of the same command, also after a kill, resumes after the ids already there and decodes again a
line the kill cut short; it is refused if the model, data or decoding options differ from those recorded
in OUTPUT_DIR/eval_run.json: --overwrite starts afresh), OUTPUT_DIR/metrics.json and OUTPUT_DIR/metrics.md. The LM comes from
--lm-dir (a processor directory with language_model/, see build_lm.py) or the model directory.
--report-only recomputes the tables from an existing predictions.jsonl.

Data specs (repeatable --data): cv:DIR (Common Voice layout), vp:DIR (VoxPopuli transcribed_data),
librispeech:DIR (test-clean and test-other, or librispeech:DIR@test-other), folder:DIR (audio +
.txt sidecars, one --languages code), disk:PATH[:SPLIT][@LANG] (a save_to_disk dataset); vp: is also
spelt voxpopuli:, and DIR@SPLIT picks a split per set (modeling_mlpl.data.open_dataset parses them).

Examples:
  python run_scripts/evaluate.py --model exp/stage4 --data cv:data/cv --languages pt nl pl --output_dir exp/eval
  python run_scripts/evaluate.py --model exp/stage4 --data librispeech:data/LibriSpeech --output_dir exp/eval_ls \
      --lm-dir exp/lm_processor --beam-width 64
  python run_scripts/evaluate.py --model exp/stage2 --data cv:data/cv --split dev --save-logits exp/dev.npz \
      --output_dir exp/eval_dev --no-lm      # then: tune_lm.py --logits exp/dev.npz
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from modeling_mlpl.command_line import ArgumentParser, UserError, add_output_dir, ensure_output_dir, positive_float

logger = logging.getLogger("evaluate")


def build_parser() -> ArgumentParser:
    p = ArgumentParser(description=__doc__)
    p.add_argument("--model", help="saved model + processor directory")
    p.add_argument("--data", action="append", default=[], metavar="KIND:PATH", help="test set spec (repeatable)")
    p.add_argument("--split", default="test", help="split name (default test)")
    p.add_argument("--languages", nargs="+", help="only these languages (Common Voice codes)")
    p.add_argument("--max-per-language", type=int, help="cap utterances per language (quick checks)")
    add_output_dir(p, "output folder (created)", old=("--out",), required=True)
    lm = p.add_mutually_exclusive_group()
    lm.add_argument("--lm-dir", help="processor directory holding language_model/ (default: --model's)")
    lm.add_argument("--no-lm", action="store_true", help="greedy decoding only")
    p.add_argument("--lm-params", help="JSON of per-language alpha/beta (tune_lm.py --output) replacing the saved "
                                        "ones: decode each model with weights tuned for it on dev")  # fmt: skip
    p.add_argument("--beam-width", type=int, help="beam width (default: the saved decoder's)")
    p.add_argument("--num-workers", type=int, default=0, help="processes for LM beam search (0 = serial)")
    p.add_argument("--window-s", type=float, default=10.0, help="decode long audio in windows of this size (0 = off)")
    p.add_argument("--overlap-s", type=float, default=2.0, help="context on each side of a window")
    p.add_argument("--max-batch-seconds", type=positive_float, default=60.0, help="padded audio per forward batch")
    p.add_argument("--device", default="cpu")
    p.add_argument("--save-logits", help="also store log-probs + references here (.npz) for tune_lm.py")
    p.add_argument("--report-only", action="store_true", help="recompute metrics from OUTPUT_DIR/predictions.jsonl")
    p.add_argument("--overwrite", action="store_true",
                   help="start OUTPUT_DIR/predictions.jsonl afresh (by default a re-run resumes it, and is refused when "
                        "the model, data or decoding options differ from those it was started with)")  # fmt: skip
    return p


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def normalized_spec(spec: str) -> str:
    """KIND:PATH with PATH resolved, so that one test set given two ways is one input."""
    from modeling_mlpl.data.specs import EVAL_KINDS, parse_data_spec

    return parse_data_spec(spec, EVAL_KINDS).normalized()


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("pyctcdecode").setLevel(logging.ERROR)
    args = parse_args(argv)
    from modeling_mlpl.evaluation.test_sets import PREDICTIONS_NAME, evaluate_model, load_eval_sets, report_from_predictions

    try:
        if args.report_only:
            summary = report_from_predictions(Path(args.output_dir) / PREDICTIONS_NAME, args.output_dir)
        else:
            if not args.model or not args.data:
                raise ValueError("--model and at least one --data are required (or --report-only)")
            ensure_output_dir(args.output_dir)
            sets = load_eval_sets(args.data, args.split, args.languages, args.max_per_language)
            lm_params = json.loads(Path(args.lm_params).read_text()) if args.lm_params else None
            summary = evaluate_model(
                args.model, sets, args.output_dir, lm_dir=args.lm_dir, use_lm=False if args.no_lm else None,
                beam_width=args.beam_width, num_workers=args.num_workers, device=args.device,
                save_logits_to=args.save_logits, window_s=args.window_s or None, overlap_s=args.overlap_s,
                max_batch_seconds=args.max_batch_seconds, lm_params=lm_params, overwrite=args.overwrite,
                run_inputs={"--data": [normalized_spec(d) for d in args.data], "--split": args.split,
                            "--languages": sorted(args.languages or [])},
            )  # fmt: skip
    except (UserError, ValueError, FileNotFoundError) as err:
        print(f"evaluate.py: error: {err}", file=sys.stderr)
        return 2
    print(summary["markdown"])
    if "accounting_line" in summary:
        print(f"accounting: {summary['accounting_line']}")
    logger.info("wrote %s/{predictions.jsonl, metrics.json, metrics.md}", args.output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
