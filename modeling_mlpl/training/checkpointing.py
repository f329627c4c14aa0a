"""Checkpoints: `accelerator.save_state` (model, optimizer, scheduler, RNG of every process) plus a
`trainer_state.json` with the data position, so a resumed run repeats and skips no batch.

Layout: ``<output_dir>/checkpoints/checkpoint-<step>/``; the last `save_total_limit` are kept.
A checkpoint folder is complete once its `trainer_state.json` exists (written last), so a run killed
while saving resumes from the previous one.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field

STATE_FILE = "trainer_state.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


@dataclass
class TrainerState:
    """Where training stands. `batches_consumed` counts this epoch's batches on each process;
    `epoch_cropped` says whether this epoch's batches are planned with random crops."""

    step: int = 0
    epoch: int = 0
    batches_consumed: int = 0
    epoch_cropped: bool = False
    best_metric: float | None = None
    best_step: int | None = None
    audio_seconds: float = 0.0
    skipped_audio: int = 0
    sampler_state: dict = field(default_factory=dict)

    def save(self, directory: str) -> None:
        tmp = os.path.join(directory, STATE_FILE + ".tmp")
        with open(tmp, "w") as f:
            json.dump(asdict(self), f, indent=2)
        os.replace(tmp, os.path.join(directory, STATE_FILE))

    @classmethod
    def load(cls, directory: str) -> "TrainerState":
        with open(os.path.join(directory, STATE_FILE)) as f:
            return cls(**json.load(f))


def checkpoint_root(output_dir: str) -> str:
    return os.path.join(output_dir, "checkpoints")


def list_checkpoints(output_dir: str) -> list[str]:
    """Complete checkpoints, oldest first."""
    root = checkpoint_root(output_dir)
    if not os.path.isdir(root):
        return []
    found = []
    for name in os.listdir(root):
        match = _CHECKPOINT.match(name)
        if match and os.path.isfile(os.path.join(root, name, STATE_FILE)):
            found.append((int(match.group(1)), os.path.join(root, name)))
    return [path for _, path in sorted(found)]


def latest_checkpoint(output_dir: str) -> str | None:
    found = list_checkpoints(output_dir)
    return found[-1] if found else None


class CheckpointMismatch(ValueError):
    """The checkpoint holds another model than the one this run built (other preset or vocabulary)."""


class CorruptCheckpoint(ValueError):
    """A checkpoint file cannot be read (truncated by a kill or a full disk, or overwritten)."""


def check_checkpoint(directory: str, model_state: dict) -> None:
    """Read the headers of the checkpoint's weights and trainer state without loading them: raise
    CorruptCheckpoint naming the unreadable file, or CheckpointMismatch naming the first tensor whose
    shape differs from `model_state` (the model's state_dict), before `load_state` prints a long
    size-mismatch traceback."""
    from safetensors import safe_open

    from accelerate.utils import load

    weights = os.path.join(directory, "model.safetensors")
    reading = os.path.join(directory, STATE_FILE)
    try:
        with open(reading) as f:
            json.load(f)
        # accelerate's load_state reads the RNG states inside a bare `except` and only logs "Could not load
        # random states" at INFO: a truncated one would resume silently with other random streams.
        for reading in sorted(glob.glob(os.path.join(directory, "random_states_*.pkl"))):
            load(reading)
        if not os.path.isfile(weights):
            return  # pytorch_model.bin checkpoints (safe_serialization off): left to load_state
        reading = weights
        with safe_open(weights, framework="pt") as f:
            shapes = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
    except Exception as err:  # noqa: BLE001 - safetensors, json, pickle and OS errors all mean "cannot be read"
        raise CorruptCheckpoint(f"{reading} cannot be read ({type(err).__name__}: {err})") from None
    for name, tensor in model_state.items():
        if name in shapes and shapes[name] != tuple(tensor.shape):
            raise CheckpointMismatch(f"{directory} holds another model: {name} is {list(shapes[name])} there but "
                                     f"{list(tensor.shape)} in the model built now")  # fmt: skip
    missing = sorted(set(model_state) - set(shapes))
    if missing:
        raise CheckpointMismatch(f"{directory} holds another model: it has no {missing[0]} "
                                 f"({len(missing)} tensors of the model built now are missing)")  # fmt: skip


def checkpoint_dir(output_dir: str, step: int) -> str:
    return os.path.join(checkpoint_root(output_dir), f"checkpoint-{step}")


def rotate_checkpoints(output_dir: str, keep: int) -> list[str]:
    """Delete all but the newest `keep` checkpoints; returns the deleted folders."""
    found = list_checkpoints(output_dir)
    doomed = found[: max(len(found) - keep, 0)]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def average_checkpoints(output_dir: str, save_dir: str, last: int = 3) -> list[str]:
    """Save the uniform average of the weights of the last `last` checkpoints of a training run (with the
    run's processor) to `save_dir`, e.g. as the teacher of a second pseudo-labeling round. Returns the
    checkpoints averaged. Averaging smooths the noise of single updates, so the teacher's labels are steadier."""
    from safetensors.torch import load_file

    from ..modeling_mlpl import MLPLForCTC
    from ..processing_mlpl import MLPLProcessor

    checkpoints = list_checkpoints(output_dir)[-last:]
    if not checkpoints:
        raise FileNotFoundError(f"no training checkpoints under {checkpoint_root(output_dir)} to average")
    total = None
    for path in checkpoints:
        state = load_file(os.path.join(path, "model.safetensors"))
        if total is None:
            total = {k: v.double() for k, v in state.items()}
        else:
            if state.keys() != total.keys():
                raise ValueError(f"{path} holds other tensors than {checkpoints[0]}: not the same model")
            for k, v in state.items():
                total[k] += v.double()
    model = MLPLForCTC.from_pretrained(output_dir)
    reference = model.state_dict()
    model.load_state_dict({k: (v / len(checkpoints)).to(reference[k].dtype) for k, v in total.items()})
    model.save_pretrained(save_dir)
    MLPLProcessor.from_pretrained(output_dir).save_pretrained(save_dir)
    return checkpoints


__all__ = ["TrainerState", "CheckpointMismatch", "CorruptCheckpoint", "check_checkpoint", "list_checkpoints", "latest_checkpoint", "checkpoint_dir", "rotate_checkpoints",
           "average_checkpoints", "STATE_FILE"]
