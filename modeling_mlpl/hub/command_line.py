"""The ``--push_to_hub`` flags of train.py / pseudo_label.py and the hook they call after saving."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from .auth import HubError, package_attr
from .push import publish_stage, push_dataset
from .staging import check_stage, prepare_dataset_folder

logger = logging.getLogger(__name__)


def add_hub_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """--push_to_hub, --hub_model_id, --hub_revision, --hub_token, --hub_private_repo, --hub_dry_run."""
    group = parser.add_argument_group("Hugging Face Hub")
    group.add_argument("--push_to_hub", action="store_true", help="upload the result when done")
    group.add_argument("--hub_model_id", default=None, help="user/name of the model (or dataset) repo")
    group.add_argument("--hub_revision", default=None,
                       help="branch, e.g. stage2-ft-pt (default: the stage name of this script's run)")  # fmt: skip
    group.add_argument("--hub_token", default=None, help="token (default: HF_TOKEN or `hf auth login`)")
    group.add_argument("--hub_private_repo", action="store_true", default=None, help="create the repo private")
    group.add_argument("--hub_dry_run", action="store_true",
                       help="write the upload folder next to the output and print it; upload nothing")  # fmt: skip
    return parser


def maybe_push_to_hub(
    output_dir: str | os.PathLike,
    args: Any,
    *,
    stage: str | None = None,
    kind: str = "model",
    eval_json: str | os.PathLike | None = None,
    **card_kwargs: Any,
) -> str | None:
    """Publish ``output_dir`` if ``args.push_to_hub`` is set; returns the URL (or the dry-run folder).

    ``args``: any object with the attributes of :func:`add_hub_arguments` (argparse namespace,
    dataclass, TrainingArguments); missing ones default to off. ``stage``: the recipe stage
    (``stage1-multilingual``, ``stage2-ft-<lang>``, ``stage4a-pl``, ``stage4b-pl``); it is the branch
    unless ``args.hub_revision`` overrides it. ``kind="dataset"`` pushes a pseudo-label folder as a
    dataset repo. Raises :class:`HubError` (one-line message) for user errors such as a missing token;
    the token is checked before any folder is written.
    """
    if not getattr(args, "push_to_hub", False):
        return None
    repo_id = getattr(args, "hub_model_id", None)
    if not repo_id:
        raise HubError("--push_to_hub needs --hub_model_id user/name")
    token = getattr(args, "hub_token", None)
    private = getattr(args, "hub_private_repo", None)
    dry_run = bool(getattr(args, "hub_dry_run", False))
    output_dir = Path(output_dir)
    if not dry_run:
        token = package_attr("resolve_token")(token)
    if kind == "dataset":
        out = output_dir.resolve().parent / f"{output_dir.name}.hub-dataset"
        revision = getattr(args, "hub_revision", None)  # datasets: main unless asked
        plan = prepare_dataset_folder(output_dir, out, repo_id=repo_id, revision=revision, overwrite=True,
                                      **card_kwargs)  # fmt: skip
        if dry_run:
            logger.info(plan.describe())
            return str(plan.folder)
        return push_dataset(plan.folder, repo_id, revision=revision, token=token, private=private)
    if kind != "model":
        raise ValueError(f"kind must be 'model' or 'dataset', got {kind!r}")
    revision = getattr(args, "hub_revision", None) or stage
    stage = stage or revision
    if stage is None:
        raise HubError("pass the recipe stage (e.g. stage1-multilingual) or --hub_revision")
    check_stage(stage)
    out_dir = output_dir.resolve().parent / f"{output_dir.name}.hub-{stage}" if dry_run else None
    plan, url = publish_stage(output_dir, repo_id, stage, revision=revision, dry_run=dry_run, out_dir=out_dir,
                              token=token, private=private, eval_json=eval_json, **card_kwargs)  # fmt: skip
    if dry_run:
        logger.info(plan.describe())
        return str(plan.folder)
    return url
