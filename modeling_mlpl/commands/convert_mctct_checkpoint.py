"""Convert the paper's published M-CTC-T model into an MLPL checkpoint (model + processor).

The source is a local folder or a Hub id (default speechbrain/m-ctc-t-large, the 1 B-parameter
multilingual model; ~4 GB download). The result loads with AutoModelForCTC / pipeline like any MLPL
checkpoint and is the natural `--init_from` of the recipe's stage 2.

What changes (see modeling_mlpl/hub/convert_mctct.py): the CTC blank moves to id 0 as `<pad>` (the CTC
head's rows move with their tokens; `conversion.json` records the permutation); features are computed by
MLPLFeatureExtractor (the port's MFSC settings); the LID head, not published, is zero-initialised and
`lid_loss_weight` defaults to 0 — train it as a linear probe before setting it to 1 (model card,
"Limitations").

Example:
  python run_scripts/convert_mctct_checkpoint.py --source speechbrain/m-ctc-t-large --output_dir exp/mctct-large
  python run_scripts/push_to_hub.py --checkpoint exp/mctct-large --repo_id me/mlpl --stage mctct-converted \\
      --base_model speechbrain/m-ctc-t-large --not_synthetic
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


import torch

from modeling_mlpl.command_line import ArgumentParser, UserError, add_output_dir, ensure_output_dir
from modeling_mlpl.hub.convert_mctct import convert_mctct_checkpoint

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def parse_args(argv=None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--source", default="speechbrain/m-ctc-t-large", help="M-CTC-T folder or Hub id")
    parser.add_argument("--revision", help="Hub revision of --source")
    add_output_dir(parser, "where to write the MLPL checkpoint", old=("--out_dir",), required=True, type=Path)
    parser.add_argument("--lid_loss_weight", type=float, default=0.0,
                        help="gamma of the converted config (default 0: the LID head is untrained)")  # fmt: skip
    parser.add_argument("--languages", nargs="*", default=None,
                        help="LID classes of the new head (default: the 60 Common Voice 6.1 codes)")  # fmt: skip
    parser.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="store weights in this dtype")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        ensure_output_dir(args.output_dir)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if any(args.output_dir.iterdir()):
        print(f"error: {args.output_dir} is not empty; choose a new --output_dir", file=sys.stderr)
        return 2
    try:
        out = convert_mctct_checkpoint(
            args.source, args.output_dir, revision=args.revision, languages=args.languages,
            lid_loss_weight=args.lid_loss_weight, dtype=DTYPES.get(args.dtype),
        )  # fmt: skip
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # e.g. the Hub is unreachable
        print(f"error: could not read {args.source}: {error}", file=sys.stderr)
        return 1
    print(f"converted {args.source} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
