"""A resumable output remembers what produced it, so a resume with other inputs cannot mix two runs.

Pseudo-label shards and evaluation predictions are appended to and resumed by id: a resume with
another model (or data, or decoding options) would otherwise keep the first run's lines and add the
second's, and report them as one result. So the first run writes a small JSON file next to its
output (:func:`bind_run`) and a later run into the same place must match it, or is refused with a
one-line :class:`RunMismatch` that names the first difference and the flag that starts afresh.

Model identity is its resolved path plus a content hash of its weights file: blake2b over the whole
``model.safetensors``, read once per run and process (0.4 s for 200 MB measured here, so ~8 s for the
4 GB M-CTC-T large; the demo models are 5 MB). Size + mtime would be cheaper, but a re-trained or
re-copied model with the same bytes would then look new and a resume be refused for nothing. So a
retrained model in the same folder is a different model, and a copied folder with the same weights is
a different path: both are refused rather than guessed at.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

__all__ = ["RunMismatch", "bind_run", "check_run", "file_hash", "lm_identity", "model_identity", "read_run",
           "same_path", "write_run"]

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_CHUNK = 1 << 20


class RunMismatch(ValueError):
    """A resume or re-run whose inputs differ from those the output was started with."""


def file_hash(path: str | os.PathLike, digest_size: int = 8) -> str:
    """blake2b hex digest of a file's bytes."""
    h = hashlib.blake2b(digest_size=digest_size)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def same_path(path: str | os.PathLike) -> str:
    """The resolved path (so ``exp/m`` and ``./exp/../exp/m`` are one input)."""
    return os.path.realpath(os.fspath(path))


def model_identity(model: str | os.PathLike) -> str:
    """``PATH (weights HASH)`` for a local model folder, the id itself for a Hub model."""
    if not os.path.isdir(model):
        return str(model)
    for name in WEIGHT_FILES:
        weights = Path(model, name)
        if weights.is_file():
            return f"{same_path(model)} (weights {file_hash(weights)})"
    config = Path(model, "config.json")
    return f"{same_path(model)} (config {file_hash(config)})" if config.is_file() else same_path(model)


def lm_identity(lm_dir: str | os.PathLike | None) -> str | None:
    """``PATH (LMs lang:bytes, ...)``: which n-gram files decode; None without an LM. The fusion
    weights are left out on purpose: re-tuning alpha/beta rewrites the decoder config, and callers
    that pass weights (evaluate.py --lm-params) record those themselves."""
    if lm_dir is None:
        return None
    from .decoding.lm_decoder import CONFIG_NAME, LM_SUBFOLDER

    for root in (Path(lm_dir, LM_SUBFOLDER), Path(lm_dir)):
        if (root / CONFIG_NAME).is_file():
            languages = json.loads((root / CONFIG_NAME).read_text(encoding="utf-8")).get("languages", {})
            sizes = []
            for lang, cfg in sorted(languages.items()):
                lm_file = root / str(cfg.get("lm_file", ""))
                sizes.append(f"{lang}:{lm_file.stat().st_size if lm_file.is_file() else 'missing'}")
            return f"{same_path(lm_dir)} (LMs {', '.join(sizes)})"
    return same_path(lm_dir)


def read_run(path: str | os.PathLike) -> dict[str, Any] | None:
    path = Path(path)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _show(value: Any) -> str:
    return "(unset)" if value is None or value == [] else str(value)


def check_run(path: str | os.PathLike, inputs: Mapping[str, Any], start_afresh: str) -> None:
    """Raise :class:`RunMismatch` if `path` records other `inputs` (keys are the flags' names).

    `start_afresh` says how to start over, e.g. ``"choose a new --output_dir"``. No record (a new
    output, or one from before run files existed) passes.
    """
    recorded = read_run(path)
    if recorded is None:
        return
    for key, value in inputs.items():
        if key in recorded and recorded[key] != _jsonable(value):
            raise RunMismatch(f"{Path(path).parent} was started with {key} {_show(recorded[key])}, not "
                              f"{_show(_jsonable(value))}: resume with the same inputs, or {start_afresh}")  # fmt: skip


def write_run(path: str | os.PathLike, inputs: Mapping[str, Any]) -> None:
    """Record `inputs` (written whole: tmp + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps({k: _jsonable(v) for k, v in inputs.items()}, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def bind_run(path: str | os.PathLike, inputs: Mapping[str, Any], start_afresh: str) -> None:
    """:func:`check_run`, then record `inputs` (one process; see the PL script for several)."""
    check_run(path, inputs, start_afresh)
    write_run(path, inputs)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))
