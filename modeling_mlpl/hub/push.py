"""Sending a prepared folder: create_repo -> create_branch -> upload, each retried on transient errors."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from .auth import HubError, call_with_retries, package_attr
from .staging import UploadPlan, human_bytes, prepare_upload_folder, stage_target

logger = logging.getLogger(__name__)

# Above this size, `upload_large_folder` (resumable, multi-worker; huggingface_hub < 2) is used when the
# installed huggingface_hub has it; otherwise `upload_folder` is retried: files whose sha256 the Hub
# already holds are not sent again, so a retry resumes rather than restarts.
LARGE_FOLDER_BYTES = 2 * 1024**3


def _make_api(token: str):
    from huggingface_hub import HfApi

    return HfApi(token=token)


def push_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    repo_type: str = "model",
    revision: str | None = None,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str | None = None,
    api: Any = None,
    max_attempts: int = 5,
    sleep: Callable[[float], None] | None = None,
) -> str:
    """create_repo -> create_branch (if ``revision``) -> upload, each retried on transient errors.

    Returns the URL of the uploaded tree. Large folders use ``upload_large_folder`` when the
    installed huggingface_hub offers it (resumable across runs); ``upload_folder`` retries resume too,
    since files already on the Hub (same sha256) are skipped.
    """
    folder = Path(folder)
    if not folder.is_dir() or not any(folder.iterdir()):
        raise HubError(f"nothing to upload: {folder} is missing or empty")
    token = package_attr("resolve_token")(token)
    api = api if api is not None else package_attr("_make_api")(token)
    retry = dict(max_attempts=max_attempts, sleep=sleep)

    call_with_retries(
        lambda: api.create_repo(repo_id, token=token, private=private, repo_type=repo_type, exist_ok=True),
        f"create_repo {repo_id}", **retry,
    )  # fmt: skip
    if revision and revision != "main":
        call_with_retries(
            lambda: api.create_branch(repo_id, branch=revision, token=token, repo_type=repo_type, exist_ok=True),
            f"create_branch {revision}", **retry,
        )  # fmt: skip
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    message = commit_message or f"Upload {folder.name}" + (f" ({revision})" if revision else "")
    if size >= LARGE_FOLDER_BYTES and hasattr(api, "upload_large_folder"):
        logger.info("uploading %s (%s) with upload_large_folder (resumable)", folder, human_bytes(size))
        call_with_retries(
            lambda: api.upload_large_folder(repo_id=repo_id, folder_path=str(folder), repo_type=repo_type,
                                            revision=revision, private=private),
            f"upload_large_folder {repo_id}", **retry,
        )  # fmt: skip
    else:
        logger.info("uploading %s (%s) to %s", folder, human_bytes(size), repo_id)
        call_with_retries(
            lambda: api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type=repo_type,
                                      revision=revision, token=token, commit_message=message),
            f"upload_folder {repo_id}", **retry,
        )  # fmt: skip
    prefix = {"model": "", "dataset": "datasets/", "space": "spaces/"}[repo_type]
    return f"https://huggingface.co/{prefix}{repo_id}/tree/{revision or 'main'}"


def push_checkpoint(folder: str | os.PathLike, repo_id: str, **kwargs: Any) -> str:
    """Push a prepared model folder (see :func:`prepare_upload_folder`); kwargs as :func:`push_folder`."""
    return push_folder(folder, repo_id, repo_type="model", **kwargs)


def push_dataset(folder: str | os.PathLike, repo_id: str, **kwargs: Any) -> str:
    """Push a prepared pseudo-label folder as a *dataset* repo; kwargs as :func:`push_folder`."""
    return push_folder(folder, repo_id, repo_type="dataset", **kwargs)


def publish_stage(
    checkpoint_dir: str | os.PathLike,
    repo_id: str,
    stage: str,
    *,
    layout: str = "branch",
    revision: str | None = None,
    dry_run: bool = False,
    out_dir: str | os.PathLike | None = None,
    token: str | None = None,
    private: bool | None = None,
    api: Any = None,
    commit_message: str | None = None,
    sleep: Callable[[float], None] | None = None,
    **card_kwargs: Any,
) -> tuple[UploadPlan, str | None]:
    """Prepare ``checkpoint_dir`` for ``stage`` and push it (unless ``dry_run``): (plan, url or None).

    The token is checked before the (possibly multi-GB) folder is written. Without ``out_dir`` the
    folder lives in a temporary directory next to the checkpoint and is removed after a push.
    ``revision`` overrides the branch name (default: the stage name, with ``layout="branch"``).
    """
    target_repo, default_revision = stage_target(repo_id, stage, layout)
    revision = revision or default_revision
    if not dry_run:
        token = package_attr("resolve_token")(token)
    keep = out_dir is not None or dry_run
    if out_dir is None:
        base = Path(checkpoint_dir).resolve().parent
        out_dir = (base / f"{Path(checkpoint_dir).name}.hub-{stage}") if dry_run else Path(
            tempfile.mkdtemp(prefix=f".hub-{stage}-", dir=base)
        ) / "upload"
    plan = prepare_upload_folder(
        checkpoint_dir, out_dir, stage, repo_id=target_repo, revision=revision, overwrite=True, **card_kwargs
    )
    if dry_run:
        return plan, None
    try:
        url = push_checkpoint(plan.folder, target_repo, revision=revision, token=token, private=private, api=api,
                              commit_message=commit_message or f"{stage}: upload {Path(checkpoint_dir).name}",
                              sleep=sleep)  # fmt: skip
    except Exception:
        logger.error("upload failed; the prepared folder is kept at %s (re-run to resume)", plan.folder)
        raise
    if not keep:
        shutil.rmtree(plan.folder.parent, ignore_errors=True)
    return plan, url
