"""Training of MLPL models with Accelerate (recipe stages 1, 2 and 4); CLI in run_scripts/train.py."""

from .arguments import (
    ConfigError,
    DataArguments,
    MLPLTrainingArguments,
    ModelArguments,
    TrainingData,
    resolve_data,
    validate_arguments,
)
from .checkpointing import TrainerState, latest_checkpoint, list_checkpoints
from .train_data import TrainingSet
from .dev_eval import DevSet, evaluate_dev_set
from .tracking import read_log
from .trainer import BEST_DIR, TrainResult, configure_threads, train

__all__ = [
    "ConfigError",
    "DataArguments",
    "MLPLTrainingArguments",
    "ModelArguments",
    "TrainingData",
    "resolve_data",
    "validate_arguments",
    "TrainerState",
    "latest_checkpoint",
    "list_checkpoints",
    "TrainingSet",
    "DevSet",
    "evaluate_dev_set",
    "read_log",
    "BEST_DIR",
    "TrainResult",
    "configure_threads",
    "train",
]
