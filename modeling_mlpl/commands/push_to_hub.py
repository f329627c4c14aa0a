"""Publish one recipe stage (or a pseudo-label dataset) to the Hugging Face Hub.

Model stages go to one branch each of --repo_id (stage1-multilingual, stage2-ft-<lang>, stage4a-pl,
stage4b-pl, mctct-converted), or to their own repo with --layout repo. The folder that would be
uploaded is always written first; --dry_run stops there and lists it.

Examples:
  python run_scripts/push_to_hub.py --checkpoint exp/stage2/pt --repo_id me/mlpl --stage stage2-ft-pt \\
      --eval_json exp/eval/stage2-pt.json --dry_run
  python run_scripts/push_to_hub.py --dataset exp/pl/pt --repo_id me/mlpl-pl-pt --languages pt

Exit codes: 0 done, 2 user error (missing token, bad stage, missing files), 1 upload failed after retries
(re-run the same command: files already on the Hub are not sent again).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


from modeling_mlpl.command_line import ArgumentParser, add_output_dir
from modeling_mlpl.hub import HubError, prepare_dataset_folder, publish_stage, push_dataset, resolve_token

logger = logging.getLogger("push_to_hub")


def parse_args(argv=None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="saved MLPL checkpoint (model + processor) to publish")
    source.add_argument("--dataset", type=Path, help="pseudo-label output folder to publish as a dataset repo")
    parser.add_argument("--repo_id", required=True, help="user/name on the Hub")
    parser.add_argument("--stage", help="recipe stage of --checkpoint: stage1-multilingual, stage2-ft-<lang>, "
                        "stage4a-pl, stage4b-pl or mctct-converted")  # fmt: skip
    parser.add_argument("--layout", choices=("branch", "repo"), default="branch",
                        help="branch: one branch per stage of --repo_id (default); repo: <repo_id>-<stage>")  # fmt: skip
    parser.add_argument("--revision", help="branch to push to (default: the stage name; datasets: main)")
    parser.add_argument("--eval_json", type=Path, help="per-language CER/WER JSON (run_scripts/evaluate.py) for the card")
    parser.add_argument("--processor_dir", type=Path, help="processor folder if not saved with the checkpoint")
    add_output_dir(parser, "where to write the upload folder (default: next to the input)", old=("--out_dir",), type=Path)
    parser.add_argument("--dry_run", action="store_true", help="write the folder, print what would go where, upload nothing")
    parser.add_argument("--private", action="store_true", default=None, help="create the repo private")
    parser.add_argument("--token", help="Hub token (default: HF_TOKEN or the one saved by `hf auth login`)")
    parser.add_argument("--synthetic", dest="synthetic", action="store_true", default=None,
                        help="trained on the espeak-ng synthetic corpus: warn loudly in the card (default: guessed)")  # fmt: skip
    parser.add_argument("--not_synthetic", dest="synthetic", action="store_false", help="real-speech checkpoint")
    parser.add_argument("--datasets", nargs="*", default=[], help="Hub ids of training datasets for the card metadata")
    parser.add_argument("--license", default=None, help="card license (default apache-2.0; datasets cc0-1.0)")
    parser.add_argument("--base_model", help="Hub id this checkpoint was fine-tuned/converted from")
    parser.add_argument("--languages", nargs="*", default=[], help="dataset languages (datasets only)")
    parser.add_argument("--source_model", help="model that made the pseudo-labels (datasets only)")
    parser.add_argument("--include_audio", action="store_true", help="also upload audio files (datasets only)")
    parser.add_argument("--commit_message", help="commit message")
    args = parser.parse_args(argv)
    if args.checkpoint is not None and not args.stage:
        parser.error("--checkpoint needs --stage")
    return args


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        # Checked before any folder is written, naming this command's flags (--token, --dry_run).
        token = None if args.dry_run else resolve_token(args.token, token_flag="--token", dry_run_flag="--dry_run")
        if args.checkpoint is not None:
            plan, url = publish_stage(
                args.checkpoint, args.repo_id, args.stage, layout=args.layout, revision=args.revision,
                dry_run=args.dry_run, out_dir=args.output_dir, token=token, private=args.private,
                commit_message=args.commit_message, eval_json=args.eval_json, processor_dir=args.processor_dir,
                synthetic=args.synthetic, datasets=args.datasets, license=args.license or "apache-2.0",
                base_model=args.base_model,
            )  # fmt: skip
        else:
            out_dir = args.output_dir or args.dataset.resolve().parent / f"{args.dataset.name}.hub-dataset"
            plan = prepare_dataset_folder(
                args.dataset, out_dir, repo_id=args.repo_id, revision=args.revision, languages=args.languages,
                source_model=args.source_model, license=args.license or "cc0-1.0", synthetic=args.synthetic,
                include_audio=args.include_audio, overwrite=True,
            )  # fmt: skip
            url = None if args.dry_run else push_dataset(
                plan.folder, args.repo_id, revision=args.revision, token=token, private=args.private,
                commit_message=args.commit_message,
            )  # fmt: skip
    except (HubError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # noqa: BLE001 - network failure after retries: one line, resumable
        if args.dry_run:  # nothing was uploaded: not a network failure, and re-running will not help
            raise
        print(f"error: upload failed ({type(error).__name__}: {error}); re-run the same command to resume",
              file=sys.stderr)  # fmt: skip
        return 1
    print(plan.describe(uploaded=url is not None))
    if url:
        print(f"uploaded: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
