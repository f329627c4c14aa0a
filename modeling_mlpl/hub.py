"""Publishing recipe stages to the Hugging Face Hub: the exact upload folder, then a resilient push.

Layout: one model repo with one branch per stage (``stage1-multilingual``, ``stage2-ft-<lang>``,
``stage4a-pl``, ``stage4b-pl``; or one repo per stage with ``layout="repo"``), pseudo-label sets as
dataset repos. What is uploaded is always first written to a local folder
(:func:`prepare_upload_folder`), so ``--dry_run`` shows byte for byte what a push would send, and a
folder that loads locally with ``trust_remote_code=True`` is the folder that goes up.

Training / pseudo-labeling scripts call :func:`maybe_push_to_hub` after saving (their arguments come
from :func:`add_hub_arguments`).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from .model_card import (
    CardInfo,
    load_eval_results,
    looks_synthetic,
    render_dataset_card,
    render_model_card,
    validate_stage,
)

__all__ = [
    "HubError",
    "MISSING_TOKEN_MESSAGE",
    "UploadPlan",
    "resolve_token",
    "is_transient_error",
    "call_with_retries",
    "stage_target",
    "prepare_upload_folder",
    "prepare_dataset_folder",
    "push_folder",
    "push_checkpoint",
    "push_dataset",
    "publish_stage",
    "add_hub_arguments",
    "maybe_push_to_hub",
]

logger = logging.getLogger(__name__)

MISSING_TOKEN_MESSAGE = (
    "no Hugging Face token found: run `hf auth login` (or `huggingface-cli login`), set HF_TOKEN=<token>, "
    "or pass --hub_token; use --dry_run to only write the folder"
)
# Trainer / recipe outputs worth publishing next to the weights (paths relative to the checkpoint).
TRAINING_FILE_PATTERNS = (
    "training_args.json", "training_args.bin", "trainer_state.json", "conversion.json", "*results.json", "train_config.*",
    "*.yaml", "*.yml", "*.log", "*.jsonl", "metrics*.json", "*.png", "runs/*", "logs/*", "*.tfevents.*",
)  # fmt: skip
# Never uploaded: half-written files, locks, caches.
CACHE_PATTERNS = ("*.tmp", "*.partial", "*.lock", "__pycache__/*", ".cache/*", "*.pyc")
# Nor from a checkpoint: optimizer state and resume bookkeeping (large, useless to users), and the raw
# weights (the model is re-saved as safetensors instead).
EXCLUDED_PATTERNS = CACHE_PATTERNS + (
    "optimizer.*", "scheduler.*", "rng_state*", "scaler.*", "pytorch_model*.bin", "model*.safetensors", "*.index.json",
)  # fmt: skip
AUDIO_PATTERNS = ("*.wav", "*.flac", "*.ogg", "*.mp3", "*.opus", "*.m4a")
TRANSIENT_STATUS = {408, 409, 423, 429, 500, 502, 503, 504}
# Above this size, `upload_large_folder` (resumable, multi-worker; huggingface_hub < 2) is used when the
# installed huggingface_hub has it; otherwise `upload_folder` is retried: files whose sha256 the Hub
# already holds are not sent again, so a retry resumes rather than restarts.
LARGE_FOLDER_BYTES = 2 * 1024**3


class HubError(RuntimeError):
    """A user-facing problem (missing token, bad stage, missing files): scripts print it in one line."""


@dataclass
class UploadPlan:
    """A written upload folder and where it goes."""

    folder: Path
    repo_id: str | None
    revision: str | None
    repo_type: str = "model"
    files: list[tuple[str, int]] = field(default_factory=list)  # (path in repo, bytes)

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size in self.files)

    def describe(self, uploaded: bool = False) -> str:
        where = f"{self.repo_type} repo {self.repo_id or '<repo_id>'}" + (
            f" @ branch {self.revision}" if self.revision else " @ main"
        )
        verb = "uploaded" if uploaded else "would upload"
        lines = [f"{verb} {len(self.files)} files ({_human(self.total_bytes)}) from {self.folder} to {where}:"]
        lines += [f"  {size:>12,d}  {name}" for name, size in self.files]
        return "\n".join(lines)


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return f"{n} B"


def _list_files(folder: Path) -> list[tuple[str, int]]:
    return sorted((p.relative_to(folder).as_posix(), p.stat().st_size) for p in folder.rglob("*") if p.is_file())


def _matches(relpath: str, patterns: Iterable[str]) -> bool:
    name = relpath.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(relpath, pat) or fnmatch.fnmatch(name, pat) for pat in patterns)


# ----------------------------------------------------------------------------------------------
# tokens and retries
# ----------------------------------------------------------------------------------------------
def resolve_token(token: str | None = None) -> str:
    """An explicit token, else HF_TOKEN, else the token saved by `hf auth login`; HubError if none."""
    if token:
        return token
    from huggingface_hub import get_token

    found = os.environ.get("HF_TOKEN") or get_token()
    if not found:
        raise HubError(MISSING_TOKEN_MESSAGE)
    return found


def is_transient_error(error: BaseException) -> bool:
    """Network drops, timeouts, rate limits and 5xx answers are worth retrying; 4xx (auth, missing repo) not."""
    status = getattr(getattr(error, "response", None), "status_code", None)
    if status is not None:
        return int(status) in TRANSIENT_STATUS
    if isinstance(error, (ConnectionError, TimeoutError)):
        return True
    # httpx / requests transport errors (not subclasses of ConnectionError)
    names = {cls.__name__ for cls in type(error).__mro__}
    return bool(names & {"TransportError", "TimeoutException", "NetworkError", "ConnectionError", "ChunkedEncodingError"})


def call_with_retries(
    fn: Callable[[], Any],
    what: str,
    max_attempts: int = 5,
    base_delay: float = 2.0,
    max_delay: float = 60.0,
    sleep: Callable[[float], None] | None = None,
) -> Any:
    """Run ``fn``; on a transient error wait 2, 4, 8, ... s (capped) and try again, up to ``max_attempts``."""
    for attempt in range(1, max_attempts + 1):
        try:
            return fn()
        except Exception as error:  # noqa: BLE001 - classified just below
            if not is_transient_error(error) or attempt == max_attempts:
                raise
            delay = min(max_delay, base_delay * 2 ** (attempt - 1))
            logger.warning("%s failed (%s: %s); retry %d/%d in %.0f s", what, type(error).__name__, error,
                           attempt, max_attempts - 1, delay)  # fmt: skip
            (sleep or time.sleep)(delay)  # looked up late so tests can patch time.sleep
    raise AssertionError("unreachable")


# ----------------------------------------------------------------------------------------------
# where a stage goes
# ----------------------------------------------------------------------------------------------
def _check_stage(stage: str) -> str:
    try:
        return validate_stage(stage)
    except ValueError as error:
        raise HubError(str(error)) from None


def stage_target(repo_id: str, stage: str, layout: str = "branch") -> tuple[str, str | None]:
    """(repo_id, revision) of a stage: a branch of one repo, or its own repo ``<repo_id>-<stage>``."""
    _check_stage(stage)
    if "/" not in repo_id or repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise HubError(f"repo id must look like 'user/name', got {repo_id!r}")
    if layout == "branch":
        return repo_id, stage
    if layout == "repo":
        return f"{repo_id}-{stage}", None
    raise HubError(f"layout must be 'branch' or 'repo', got {layout!r}")


# ----------------------------------------------------------------------------------------------
# the upload folder
# ----------------------------------------------------------------------------------------------
def _fresh_dir(out_dir: Path, overwrite: bool) -> Path:
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite:
            raise HubError(f"{out_dir} exists and is not empty; pick another --out_dir or pass overwrite")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed at the end: an interrupted run leaves no half folder.
    return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))


def _finish_dir(staging: Path, out_dir: Path) -> None:
    if out_dir.exists():
        shutil.rmtree(out_dir)
    staging.rename(out_dir)


def _read_hyperparameters(checkpoint_dir: Path) -> dict[str, Any]:
    """Scalar settings from training_args.json / train_config.{json,yaml} if the trainer wrote them."""
    found: dict[str, Any] = {}
    for name in ("training_args.json", "train_config.json", "train_config.yaml", "train_config.yml", "conversion.json"):
        path = checkpoint_dir / name
        if not path.is_file():
            continue
        try:
            if path.suffix == ".json":
                data = json.loads(path.read_text(encoding="utf-8"))
            else:
                import yaml

                data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except Exception as error:  # noqa: BLE001 - a broken log must not block publishing
            logger.warning("could not read %s (%s); hyper-parameters left out of the card", path, error)
            continue
        if isinstance(data, dict):
            found.update({k: v for k, v in _flatten(data).items() if not isinstance(v, (list, dict))})
    return found


def _flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        elif value is not None:
            out[name] = value
    return out


def _model_facts(model) -> dict[str, Any]:
    config = model.config
    return {
        "parameters": f"{sum(p.numel() for p in model.parameters()):,}",
        "layers × width": f"{config.num_hidden_layers} × {config.hidden_size} ({config.num_attention_heads} heads)",
        "CTC vocabulary": f"{config.vocab_size} (blank/pad = id {config.pad_token_id})",
        "LID languages": f"{config.num_languages}",
        "lid_loss_weight (gamma)": config.lid_loss_weight,
        "max relative distance (frames)": config.max_position_embeddings,
        "samples per output frame": config.inputs_to_logits_ratio,
    }


def prepare_upload_folder(
    checkpoint_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    stage: str,
    *,
    repo_id: str | None = None,
    revision: str | None = None,
    eval_json: str | os.PathLike | None = None,
    processor_dir: str | os.PathLike | None = None,
    synthetic: bool | None = None,
    datasets: Sequence[str] = (),
    license: str = "apache-2.0",
    base_model: str | None = None,
    notes: str = "",
    template_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> UploadPlan:
    """Write the folder a push of ``checkpoint_dir`` as ``stage`` would upload, and return its plan.

    Contents: ``model.safetensors`` + ``config.json`` (with ``auto_map``) and the remote-code modules,
    the processor (tokenizer, feature extractor, ``processor_config.json``), ``language_model/`` when the
    processor has one, training args/logs found in the checkpoint (no optimizer state), the evaluation
    JSON as ``eval_results.json``, and ``README.md`` (the stage's model card).

    The model is re-saved through ``save_pretrained`` rather than copied, so whatever format the
    trainer wrote (sharded, ``.bin``), the upload is safetensors with remote code that matches the
    installed ``modeling_mlpl``. ``synthetic=None`` guesses from the training files (see
    ``looks_synthetic``); pass it explicitly when you know.
    """
    import modeling_mlpl  # registers auto classes, so save_pretrained writes auto_map + code

    _check_stage(stage)
    checkpoint_dir = Path(checkpoint_dir)
    processor_dir = Path(processor_dir) if processor_dir else checkpoint_dir
    if not (checkpoint_dir / "config.json").is_file():
        raise HubError(f"{checkpoint_dir} is not a saved MLPL checkpoint (no config.json)")
    if not (processor_dir / "vocab.json").is_file():
        raise HubError(
            f"no processor (vocab.json) in {processor_dir}: save the processor with the model, or pass processor_dir"
        )
    eval_rows, eval_meta = load_eval_results(eval_json) if eval_json else ([], {})
    out_dir = Path(out_dir)
    staging = _fresh_dir(out_dir, overwrite)
    try:
        model = modeling_mlpl.MLPLForCTC.from_pretrained(checkpoint_dir)
        model.save_pretrained(staging)
        processor = modeling_mlpl.MLPLProcessor.from_pretrained(processor_dir)
        processor.save_pretrained(staging)

        # The processor saves its LM itself; an LM folder it could not load is still copied as is.
        for source in dict.fromkeys([processor_dir, checkpoint_dir]):
            lm_dir = source / "language_model"
            if lm_dir.is_dir() and not (staging / "language_model").exists():
                shutil.copytree(lm_dir, staging / "language_model")
        lm_languages: list[str] = []
        lm_config = staging / "language_model" / "decoder_config.json"
        if lm_config.is_file():
            lm_languages = sorted(json.loads(lm_config.read_text(encoding="utf-8")).get("languages", {}))

        training_texts: list[str] = []
        for path in sorted(checkpoint_dir.rglob("*")):
            rel = path.relative_to(checkpoint_dir).as_posix()
            if not path.is_file() or rel.startswith("language_model/") or (staging / rel).exists():
                continue
            if _matches(rel, TRAINING_FILE_PATTERNS) and not _matches(rel, EXCLUDED_PATTERNS):
                (staging / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, staging / rel)
                if path.suffix in (".json", ".yaml", ".yml") and path.stat().st_size < 1_000_000:
                    training_texts.append(path.read_text(encoding="utf-8", errors="replace"))
        if eval_json:
            shutil.copy2(eval_json, staging / "eval_results.json")

        if synthetic is None:
            synthetic = bool(eval_meta.get("synthetic")) or looks_synthetic(
                *training_texts, json.dumps(eval_meta), str(checkpoint_dir.resolve())
            )
        info = CardInfo(
            stage=stage,
            repo_id=repo_id,
            revision=revision,
            languages=list(model.config.languages) if not stage.startswith("stage2-ft-")
            else [stage[len("stage2-ft-"):]],
            datasets=list(datasets),
            license=license,
            base_model=base_model,
            synthetic=synthetic,
            eval_rows=eval_rows,
            hyperparameters=_read_hyperparameters(checkpoint_dir),
            model_facts=_model_facts(model),
            lm_languages=lm_languages,
            notes=notes,
        )
        if eval_meta.get("dataset_type") or eval_meta.get("dataset"):
            info.eval_dataset_type = str(eval_meta.get("dataset_type") or eval_meta.get("dataset"))
            info.eval_dataset_name = str(eval_meta.get("dataset_name") or eval_meta.get("dataset"))
        elif synthetic:
            info.eval_dataset_type, info.eval_dataset_name = "mlpl-synthetic-espeak", "MLPL synthetic espeak-ng corpus"
        if eval_meta.get("split"):
            info.eval_split = str(eval_meta["split"])
        render_model_card(info, template_dir).save(staging / "README.md")

        auto_map = json.loads((staging / "config.json").read_text(encoding="utf-8")).get("auto_map", {})
        missing = sorted({ref.split(".")[0] + ".py" for ref in auto_map.values() if isinstance(ref, str)}
                         - {p.name for p in staging.glob("*.py")})  # fmt: skip
        if not auto_map or missing:
            raise HubError(f"upload folder lacks remote code (auto_map={auto_map}, missing {missing})")
        _finish_dir(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return UploadPlan(out_dir, repo_id, revision, "model", _list_files(out_dir))


def prepare_dataset_folder(
    pl_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    repo_id: str | None = None,
    revision: str | None = None,
    languages: Sequence[str] = (),
    source_model: str | None = None,
    source_audio: str = "VoxPopuli (unlabelled_data)",
    license: str = "cc0-1.0",
    synthetic: bool | None = None,
    include_audio: bool = False,
    template_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> UploadPlan:
    """Copy a pseudo-label output folder (minus caches, locks and, unless asked, audio) and add a card."""
    pl_dir = Path(pl_dir)
    if not pl_dir.is_dir() or not any(pl_dir.iterdir()):
        raise HubError(f"pseudo-label folder {pl_dir} does not exist or is empty")
    excluded = CACHE_PATTERNS + (() if include_audio else AUDIO_PATTERNS)
    out_dir = Path(out_dir)
    staging = _fresh_dir(out_dir, overwrite)
    try:
        texts, n_rows = [], 0
        for path in sorted(pl_dir.rglob("*")):
            rel = path.relative_to(pl_dir).as_posix()
            if not path.is_file() or _matches(rel, excluded) or rel == "README.md":
                continue
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, staging / rel)
            if path.suffix in (".json", ".yaml", ".yml") and path.stat().st_size < 1_000_000:
                texts.append(path.read_text(encoding="utf-8", errors="replace"))
            if path.suffix == ".jsonl":
                with open(path, "rb") as f:
                    n_rows += sum(1 for line in f if line.strip())
        files = [name for name, _ in _list_files(staging)]
        if not files:
            raise HubError(f"nothing to upload in {pl_dir} (only excluded files: caches, locks, audio)")
        if synthetic is None:
            synthetic = looks_synthetic(*texts, str(pl_dir.resolve()))
        stats = {"files": len(files)} | ({"JSONL rows": n_rows} if n_rows else {})
        render_dataset_card(
            repo_id=repo_id, languages=languages, source_model=source_model, source_audio=source_audio,
            license=license, synthetic=synthetic, files=files, stats=stats, template_dir=template_dir,
        ).save(staging / "README.md")  # fmt: skip
        _finish_dir(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return UploadPlan(out_dir, repo_id, revision, "dataset", _list_files(out_dir))


# ----------------------------------------------------------------------------------------------
# pushing
# ----------------------------------------------------------------------------------------------
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
    token = resolve_token(token)
    api = api if api is not None else _make_api(token)
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
        logger.info("uploading %s (%s) with upload_large_folder (resumable)", folder, _human(size))
        call_with_retries(
            lambda: api.upload_large_folder(repo_id=repo_id, folder_path=str(folder), repo_type=repo_type,
                                            revision=revision, private=private),
            f"upload_large_folder {repo_id}", **retry,
        )  # fmt: skip
    else:
        logger.info("uploading %s (%s) to %s", folder, _human(size), repo_id)
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
        token = resolve_token(token)
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


# ----------------------------------------------------------------------------------------------
# the hook for train.py / pseudo_label.py
# ----------------------------------------------------------------------------------------------
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
        token = resolve_token(token)
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
    _check_stage(stage)
    out_dir = output_dir.resolve().parent / f"{output_dir.name}.hub-{stage}" if dry_run else None
    plan, url = publish_stage(output_dir, repo_id, stage, revision=revision, dry_run=dry_run, out_dir=out_dir,
                              token=token, private=private, eval_json=eval_json, **card_kwargs)  # fmt: skip
    if dry_run:
        logger.info(plan.describe())
        return str(plan.folder)
    return url
