"""Where a stage goes, and the exact folder a push uploads.

Everything is first written to a folder beside the target and renamed at the end, so an interrupted
run leaves no half folder, and ``--dry_run`` shows byte for byte what a push would send."""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from .model_card import load_eval_results, validate_stage
from .auth import HubError
from .cards import write_dataset_card, write_model_card

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
        lines = [f"{verb} {len(self.files)} files ({human_bytes(self.total_bytes)}) from {self.folder} to {where}:"]
        lines += [f"  {size:>12,d}  {name}" for name, size in self.files]
        return "\n".join(lines)


def human_bytes(n: int) -> str:
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
# where a stage goes
# ----------------------------------------------------------------------------------------------
def check_stage(stage: str) -> str:
    """The stage name, or HubError (one line) naming the stages there are."""
    try:
        return validate_stage(stage)
    except ValueError as error:
        raise HubError(str(error)) from None


def stage_target(repo_id: str, stage: str, layout: str = "branch") -> tuple[str, str | None]:
    """(repo_id, revision) of a stage: a branch of one repo, or its own repo ``<repo_id>-<stage>``."""
    check_stage(stage)
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
            raise HubError(f"{out_dir} exists and is not empty; pick another --output_dir or pass overwrite")
    # Written beside the target and renamed at the end: an interrupted run leaves no half folder.
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    except OSError as err:  # a user's problem (permissions, a file in the way), not a failed upload
        raise HubError(f"cannot write the upload folder {out_dir}: {err.strerror or err}") from err


def _finish_dir(staging: Path, out_dir: Path) -> None:
    if out_dir.exists():
        shutil.rmtree(out_dir)
    staging.rename(out_dir)


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

    check_stage(stage)
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

        write_model_card(
            staging, checkpoint_dir, stage, model, eval_rows=eval_rows, eval_meta=eval_meta,
            training_texts=training_texts, lm_languages=lm_languages, synthetic=synthetic, repo_id=repo_id,
            revision=revision, datasets=datasets, license=license, base_model=base_model, notes=notes,
            template_dir=template_dir,
        )  # fmt: skip

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
        write_dataset_card(
            staging, pl_dir, texts=texts, files=files, n_rows=n_rows, synthetic=synthetic, repo_id=repo_id,
            languages=languages, source_model=source_model, source_audio=source_audio, license=license,
            template_dir=template_dir,
        )  # fmt: skip
        _finish_dir(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return UploadPlan(out_dir, repo_id, revision, "dataset", _list_files(out_dir))
