"""The model and dataset cards of an upload folder: facts gathered from the checkpoint, the
evaluation JSON and the training files. Rendering (templates, metadata) is :mod:`modeling_mlpl.hub.model_card`."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence

from .model_card import CardInfo, looks_synthetic, render_dataset_card, render_model_card

logger = logging.getLogger(__name__)


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


def _trained_languages(checkpoint_dir: Path, model) -> list[str]:
    """The languages of the card's metadata: those the run trained on (training_args.json's cv_languages,
    as train.py saves it), else the model config's. Never the stage name: a five-language model published
    as stage2-ft-pt is still a five-language model, and the card must not say otherwise."""
    path = checkpoint_dir / "training_args.json"
    try:
        recorded = json.loads(path.read_text(encoding="utf-8")).get("cv_languages") if path.is_file() else None
    except (OSError, ValueError, AttributeError):
        recorded = None
    languages = list(recorded) if isinstance(recorded, list) and recorded else list(model.config.languages or [])
    return languages


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


def write_model_card(
    folder: Path,
    checkpoint_dir: Path,
    stage: str,
    model,
    *,
    eval_rows: list,
    eval_meta: dict[str, Any],
    training_texts: Sequence[str],
    lm_languages: list[str],
    synthetic: bool | None,
    repo_id: str | None,
    revision: str | None,
    datasets: Sequence[str],
    license: str,
    base_model: str | None,
    notes: str,
    template_dir: str | os.PathLike | None,
) -> None:
    """``folder/README.md`` for ``stage``. ``synthetic=None`` guesses from the training files, the
    evaluation metadata and the checkpoint path (see ``looks_synthetic``)."""
    if synthetic is None:
        synthetic = bool(eval_meta.get("synthetic")) or looks_synthetic(
            *training_texts, json.dumps(eval_meta), str(checkpoint_dir.resolve())
        )
    info = CardInfo(
        stage=stage,
        repo_id=repo_id,
        revision=revision,
        languages=_trained_languages(checkpoint_dir, model),
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
    elif eval_rows and all(row.dataset for row in eval_rows):
        # evaluate.py names every non-Common-Voice set in its groups ("folder/NAME/en", "librispeech/test-other/en"):
        # the card names those sets, not the Common Voice default.
        info.eval_dataset_type = info.eval_dataset_name = ", ".join(sorted({row.dataset for row in eval_rows}))
    if eval_meta.get("split"):
        info.eval_split = str(eval_meta["split"])
    render_model_card(info, template_dir).save(folder / "README.md")


def write_dataset_card(
    folder: Path,
    pl_dir: Path,
    *,
    texts: Sequence[str],
    files: list[str],
    n_rows: int,
    synthetic: bool | None,
    repo_id: str | None,
    languages: Sequence[str],
    source_model: str | None,
    source_audio: str,
    license: str,
    template_dir: str | os.PathLike | None,
) -> None:
    """``folder/README.md`` of a pseudo-label dataset; ``synthetic=None`` guesses from its JSON/YAML files."""
    if synthetic is None:
        synthetic = looks_synthetic(*texts, str(pl_dir.resolve()))
    stats = {"files": len(files)} | ({"JSONL rows": n_rows} if n_rows else {})
    render_dataset_card(
        repo_id=repo_id, languages=languages, source_model=source_model, source_audio=source_audio,
        license=license, synthetic=synthetic, files=files, stats=stats, template_dir=template_dir,
    ).save(folder / "README.md")  # fmt: skip
