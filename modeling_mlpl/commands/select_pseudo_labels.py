"""Select pseudo-label segments on which two PL sets of the same audio agree (a post-processing step).

Two spellings: --greedy A --lm B (the greedy and LM decodes of one MLPL model; --label_source says which
is the label), or --labels A --reference B for any two teachers (e.g. an MMS set against a Whisper
set). The label set needs word times (a CTC teacher's); the reference is compared by its words, by its
segments (Whisper without word times) or as one whole-recording text, whichever its rows allow: the
report counts the recordings compared each way, and each output row's `consensus` column names both
teachers, the level and the disagreement.

Both inputs are merged PL sets of the same recordings made by run_scripts/pseudo_label.py (the LM one
with --lm_dir). Each recording is cut at the label's word times into segments of at most
--segment_seconds; a segment is kept when the CER between the two decodes' words in it is at most
--max_disagreement, it has no decoder loop (a word --max_repeats times in a row, a repeated
--repeat_ngram-gram) and a plausible characters-per-second rate. The output is a merged-PL dataset
(one row per kept segment, id <recording id>#<k>) that run_scripts/train.py takes like any PL set.

Examples:
  python run_scripts/select_pseudo_labels.py --greedy exp/pl/pl-pt --lm exp/pl/pl_lm-pt \\
      --output_dir exp/pl/pl_agree-pt
  # threshold from the agreement alone, and the kept-fraction/true-CER table on the synthetic corpus:
  python run_scripts/select_pseudo_labels.py --greedy exp/pl/pl-pt --lm exp/pl/pl_lm-pt \\
      --output_dir exp/pl/pl_agree-pt --max_disagreement auto --truth data/synthetic/voxpopuli
  # two teachers: MMS (word times) labels, checked against Whisper:
  python run_scripts/select_pseudo_labels.py --labels exp/pl/mms-pt --reference exp/pl/whisper-pt \\
      --output_dir exp/pl/consensus-pt --max_disagreement 0.15

--max_disagreement auto picks, per language, the largest kept set whose pooled greedy/LM disagreement
is at most --auto_ratio times that of all candidate segments; --target_kept_fraction F the smallest
threshold keeping F of the hours. --truth only adds the true PL CER to the report: it never chooses.

Output: OUTPUT_DIR/{dataset/, stats.json, stats.md, agreement.png}.
Exit codes: 0 done; 2 usage or input error; 1 unexpected error.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path


from modeling_mlpl.command_line import ArgumentParser

EXIT_OK, EXIT_USAGE = 0, 2

logger = logging.getLogger("select_pseudo_labels")


def max_disagreement(args) -> float | None:
    """--max_disagreement as the config takes it: a number, or None (chosen by the rule: auto or
    --target_kept_fraction); unset means 0.1."""
    value = args.max_disagreement
    if args.target_kept_fraction is not None:
        if value is not None:
            raise ValueError("give either --max_disagreement or --target_kept_fraction, not both")
        return None
    if value is None:
        return 0.1
    if value == "auto":
        return None
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if number < 0:
        raise ValueError(f"--max_disagreement must be a number >= 0 or 'auto', got {value!r}")
    return number


def pl_sets(args) -> tuple[str, str, str]:
    """(mode, first, second): ("pair", labels, reference) or ("decodes", greedy, lm), from the flags."""
    pair, decodes = (args.labels, args.reference), (args.greedy, args.lm)
    if any(pair) and any(decodes):
        raise ValueError("give either --labels/--reference or --greedy/--lm, not both")
    if any(pair):
        if not all(pair):
            raise ValueError("--labels and --reference go together")
        if args.label_source is not None:
            raise ValueError("--label_source chooses between --greedy and --lm; with --labels/--reference the "
                             "labels are --labels")  # fmt: skip
        return ("pair", *pair)
    if not all(decodes):
        raise ValueError("give the two PL sets: --labels A --reference B (or --greedy A --lm B)")
    return ("decodes", *decodes)


def build_parser() -> ArgumentParser:
    p = ArgumentParser(description=__doc__)
    g = p.add_argument_group("the two PL sets (either --labels/--reference or --greedy/--lm)")
    g.add_argument("--labels", default=None,
                   help="PLs that become the labels (with word times): the merged dataset folder, or the PL folder "
                        "holding merged/dataset")  # fmt: skip
    g.add_argument("--reference", default=None,
                   help="PLs of the same recordings by another teacher, compared with --labels (same form)")
    g.add_argument("--greedy", default=None, help="greedy PLs of one model (same form as --labels)")
    g.add_argument("--lm", default=None, help="LM-decoded PLs of the same model and recordings")
    g.add_argument("--label_source", choices=["lm", "greedy"], default=None,
                   help="with --greedy/--lm: which decode becomes the label; segments are cut at its word times "
                        "(default lm)")  # fmt: skip
    p.add_argument("--output_dir", required=True, help="where dataset/ and the report go")
    p.add_argument("--segment_seconds", type=float, default=10.0,
                   help="longest segment (default 10, the training crop)")
    p.add_argument("--pad_seconds", type=float, default=0.5,
                   help="audio kept before the first and after the last word of a segment, never past the middle "
                        "of the pause to the next word (default 0.5)")
    p.add_argument("--max_disagreement", default=None,
                   help="keep segments whose greedy/LM CER is <= this (default 0.1), or 'auto' (see above)")
    p.add_argument("--target_kept_fraction", type=float, default=None,
                   help="instead of --max_disagreement: the smallest threshold keeping this fraction of the hours")
    p.add_argument("--auto_ratio", type=float, default=0.5,
                   help="with --max_disagreement auto: kept disagreement <= this x all candidates' (default 0.5)")
    p.add_argument("--max_repeats", type=int, default=3,
                   help="drop a segment with a word this many times in a row (default 3; 0: off)")
    p.add_argument("--repeat_ngram", type=int, default=3,
                   help="drop a segment in which a word n-gram of this length occurs twice (default 3; 0: off)")
    p.add_argument("--min_cps", type=float, default=None,
                   help="drop segments with fewer characters per second (default: the language's median / 2)")
    p.add_argument("--max_cps", type=float, default=None,
                   help="drop segments with more characters per second (default: the language's median x 2)")
    p.add_argument("--truth", default=None,
                   help="synthetic corpus only: the VoxPopuli root with unlabelled_truth/; adds the true PL CER of "
                        "each threshold's kept segments to the report (it never chooses the threshold)")
    p.add_argument("--log_level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from datasets import load_from_disk

    from modeling_mlpl.data import load_unlabelled_truth
    from modeling_mlpl.pseudo_labeling.agreement import (AgreementConfig, pl_dataset_path, select_by_agreement,
                                                         select_by_consensus)

    try:
        mode, first, second = pl_sets(args)
        config = AgreementConfig(
            segment_seconds=args.segment_seconds, pad_seconds=args.pad_seconds, max_disagreement=max_disagreement(args),
            target_kept_fraction=args.target_kept_fraction, auto_ratio=args.auto_ratio, label_source=args.label_source or "lm",
            max_repeats=args.max_repeats, repeat_ngram=args.repeat_ngram, min_cps=args.min_cps, max_cps=args.max_cps,
        )  # fmt: skip
        truth = None
        if args.truth:
            labels = first if mode == "pair" else (args.lm if config.label_source == "lm" else args.greedy)
            languages = sorted(set(load_from_disk(str(pl_dataset_path(labels)))["language"]))
            truth = load_unlabelled_truth(args.truth, languages)
        select = select_by_consensus if mode == "pair" else select_by_agreement
        _, stats = select(first, second, args.output_dir, config, truth=truth)
    except (FileNotFoundError, ValueError) as err:
        logger.debug("details", exc_info=True)
        print(f"select_pseudo_labels.py: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    thresholds = {lang: round(s["threshold"], 4) for lang, s in stats["languages"].items()}
    logger.info("kept %d of %d segments (%.2f of %.2f h) at max_disagreement %s; compared by %s; report %s",
                stats["kept"], stats["segments"], stats["hours_kept"], stats["hours_in"], thresholds,
                stats["compared_by"], Path(args.output_dir) / "stats.md")  # fmt: skip
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
