"""Arguments of `run_scripts/train.py` as dataclasses (HfArgumentParser), with the paper's defaults.

Defaults are the paper's large-scale schedule (docs/paper.md "Training"): Adagrad, lr 0.01, 64k warm-up
updates, gradient clipping 0.1, SpecAugment from update 50k, 10 s random crops for the first 10k
updates, ~35 s of audio per batch and device. CPU demos override the step counts (see configs/).
Every field's `help` is what `train.py --help` prints. `validate_arguments` turns bad values into
one-line :class:`ConfigError` messages before anything heavy starts.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field, replace

from ..configuration_mlpl import PRESETS
from ..data.languages import CV_LANGUAGES
from ..data.specs import (
    KINDS,
    PL_SET_KINDS,
    TRAINING_KINDS,
    UNLABELED_POOL_KINDS,
    DataSpec,
    DataSpecError,
    accepted_forms,
    check_path,
    parse_data_spec,
)

logger = logging.getLogger(__name__)


def mapping_to_argv(options: dict) -> list[str]:
    """{"max_steps": 800, "cv_languages": ["pt", "nl"], "resume": True} -> command-line flags
    (None values are left out). Used for config files and by the recipe."""
    argv: list[str] = []
    for key, value in options.items():
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            argv += [f"--{key}", *map(str, value)]
        elif isinstance(value, bool):
            argv += [f"--{key}", "true" if value else "false"]
        else:
            argv += [f"--{key}", str(value)]
    return argv


class ConfigError(ValueError):
    """A user error in the training configuration (printed as one line by the CLI)."""


OPTIMIZERS = ("adagrad", "adamw")
SCHEDULERS = ("constant_with_warmup", "linear", "cosine")
MIXED_PRECISION = ("auto", "no", "bf16", "fp16")


@dataclass
class ModelArguments:
    preset: str | None = field(
        default=None,
        metadata={"help": f"Train from scratch with this model size: one of {sorted(PRESETS)}. "
                  "Exclusive with --init_from."},
    )
    init_from: str | None = field(
        default=None,
        metadata={"help": "Start from this saved MLPL checkpoint (model + processor folder): stage-2 monolingual "
                  "fine-tuning or strategy A continuation. Its tokenizer, languages and LID head are kept."},
    )
    tokenizer_dir: str | None = field(
        default=None,
        metadata={"help": "With --preset: use this saved MLPLTokenizer instead of building the character "
                  "vocabulary from the training transcripts."},
    )
    languages: list[str] | None = field(
        default=None,
        metadata={"help": "With --preset: LID classes in this order (default: the training data's languages, sorted)."},
    )
    hidden_dropout_prob: float | None = field(default=None, metadata={"help": "Override the config's dropout (paper 0.3)."})
    attention_probs_dropout_prob: float | None = field(default=None, metadata={"help": "Override attention dropout."})
    conv_dropout: float | None = field(default=None, metadata={"help": "Override the front-end dropout."})
    layerdrop: float | None = field(default=None, metadata={"help": "Override layerdrop (paper 0.3)."})
    lid_loss_weight: float | None = field(
        default=None, metadata={"help": "Override gamma in loss = CTC + gamma * LID (config default 1.0, the paper's best)."}
    )
    layer_norm_first: bool | None = field(
        default=None,
        metadata={"help": "With --preset: pre-LayerNorm layers instead of the paper's post-LN (small models on a "
                  'CPU leave the all-blank CTC plateau much sooner; see docs/results.md, "Limits of the demo").'},
    )

    def config_overrides(self) -> dict:
        """The model-config fields given on the command line (None = keep the preset's/checkpoint's)."""
        names = ("hidden_dropout_prob", "attention_probs_dropout_prob", "conv_dropout", "layerdrop", "lid_loss_weight")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


_FORMS = ", ".join(KINDS[kind][1] for kind in TRAINING_KINDS)
DATA_SPECS_HELP = f"""Data: train.py names its data as every mlpl command does, by data specs KIND:PATH[@SPLIT]:
  {_FORMS}
(Common Voice; VoxPopuli's transcribed_data; a LibriSpeech split; audio files with .txt transcripts; a
datasets.save_to_disk folder such as a pseudo-label set, @LANG when it has no language column).
--train_data takes the training sources (default split train), --eval_data the dev sets (default split
dev; validation for a disk DatasetDict), --unlabeled_data the slimIPL pool (voxpopuli:ROOT for its
unlabelled_data, or disk:PATH); --cv_languages keeps every cv/vp spec to those languages. Stage 4A,
for example: --train_data cv:CV@train disk:PL_pt disk:PL_nl --eval_data cv:CV@dev. Deprecated and
still accepted (one warning): --cv_root CV (= --train_data cv:CV@train --eval_data cv:CV@dev, splits
from --cv_train_split/--cv_eval_split), then --train_datasets PATH and --eval_datasets PATH (= disk:PATH
after it). More in docs/training_data.md."""


@dataclass
class DataArguments:
    train_data: list[str] | None = field(
        default=None,
        metadata={"help": f"Training sources, as data specs ({_FORMS}), e.g. cv:CV@train disk:PL_pt "
                  "(default split train). See 'Data' above."},
    )
    eval_data: list[str] | None = field(
        default=None,
        metadata={"help": "Dev sets evaluated during training, as data specs, e.g. cv:CV@dev (default split dev; "
                  "validation for a disk DatasetDict). None: no evaluation."},
    )
    cv_languages: list[str] | None = field(
        default=None,
        metadata={"help": "Languages to load from every cv:/vp: spec of --train_data/--eval_data (and the language "
                  "of a folder: spec, when one is given); default every language found. Disk datasets are not "
                  "filtered: rows of languages the model does not know are dropped and counted."},
    )
    train_weights: list[float] | None = field(
        default=None,
        metadata={"help": "Upsampling factor per training source, in --train_data order (2 = every utterance twice "
                  "per epoch, 0.5 = a fixed random half). Default 1 each."},
    )
    max_eval_samples_per_language: int | None = field(
        default=200, metadata={"help": "Cap on dev utterances per language (keeps evaluation cheap)."}
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Use only the first N utterances of each training source (debugging)."}
    )
    unlabeled_data: str | None = field(
        default=None,
        metadata={"help": "Unlabelled long-form audio for semi-supervised (slimIPL) fine-tuning, one data spec: "
                  f"{accepted_forms(UNLABELED_POOL_KINDS)}; a VoxPopuli root gives its unlabelled_data/<lang>/... "
                  "Default none: supervised training only. See --pl_start_step."},
    )
    unlabeled_languages: list[str] | None = field(
        default=None, metadata={"help": "Languages of --unlabeled_data to use; unset: those of --cv_languages, or all."}
    )
    # Deprecated spellings (mapped onto the specs above by `resolve_data`, with a warning).
    cv_root: str | None = field(
        default=None,
        metadata={"help": "Deprecated: --cv_root CV is --train_data cv:CV@train --eval_data cv:CV@dev "
                  "(the splits of --cv_train_split/--cv_eval_split)."},
    )
    cv_train_split: str = field(
        default="train", metadata={"help": "Deprecated, with --cv_root: its training split ('' = none)."}
    )
    cv_eval_split: str = field(
        default="dev", metadata={"help": "Deprecated, with --cv_root: its dev split ('' = no evaluation)."}
    )
    train_datasets: list[str] | None = field(
        default=None,
        metadata={"help": "Deprecated: PATH[:SPLIT][@LANG] is --train_data disk:PATH[:SPLIT][@LANG] (after --cv_root)."},
    )
    eval_datasets: list[str] | None = field(
        default=None, metadata={"help": "Deprecated: PATH is --eval_data disk:PATH (after --cv_root's dev split)."}
    )


@dataclass
class MLPLTrainingArguments:
    output_dir: str = field(metadata={"help": "Where checkpoints, logs and the final model go."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Allow a non-empty output_dir without --resume."})
    resume: bool = field(default=False, metadata={"help": "Continue from the latest checkpoint in output_dir."})
    resume_from_checkpoint: str | None = field(default=None, metadata={"help": "Continue from this checkpoint folder."})
    max_steps: int = field(default=300_000, metadata={"help": "Optimizer updates to train for."})
    max_batch_seconds: float = field(
        default=35.0, metadata={"help": "Padded seconds of audio per batch and process (paper ~35 s per GPU)."}
    )
    max_batch_size: int | None = field(default=None, metadata={"help": "Optional cap on utterances per batch."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Batches per optimizer update."})
    optimizer: str = field(default="adagrad", metadata={"help": f"One of {OPTIMIZERS} (paper: adagrad)."})
    learning_rate: float = field(default=0.01, metadata={"help": "Peak learning rate (paper: 0.01 with Adagrad)."})
    weight_decay: float = field(default=0.0, metadata={"help": "Weight decay (AdamW)."})
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1."})
    adam_beta2: float = field(default=0.98, metadata={"help": "AdamW beta2."})
    adam_epsilon: float = field(default=1e-8, metadata={"help": "AdamW epsilon."})
    lr_scheduler_type: str = field(
        default="constant_with_warmup",
        metadata={"help": f"One of {SCHEDULERS}: linear warm-up then constant (paper), linear decay or cosine decay."},
    )
    warmup_steps: int = field(default=64_000, metadata={"help": "Linear warm-up updates (paper 64k)."})
    max_grad_norm: float = field(default=0.1, metadata={"help": "Gradient-norm clipping (paper 0.1; 0 = off)."})
    mixed_precision: str = field(
        default="auto",
        metadata={"help": f"One of {MIXED_PRECISION} (Accelerate autocast; the CTC loss stays fp32). auto: bf16 on a "
                  "CUDA GPU that supports it, else no (fp32; CPU runs are unchanged)."},
    )
    torch_compile: bool = field(
        default=False,
        metadata={"help": "torch.compile the model (inductor, through Accelerate): faster GPU updates after a "
                  "compilation of a minute or so; variable batch lengths are compiled as dynamic shapes."},
    )
    seed: int = field(default=0, metadata={"help": "Seed of model init, batch order, crops and masks."})
    num_threads: int | None = field(
        default=None,
        metadata={"help": "torch CPU threads per process (default: the cores given to this process divided by the "
                  "processes on this machine). Use 1 when other jobs share the cores: 2 threads on a busy 2-core "
                  "machine run at about 15 percent of their speed."},
    )
    use_cpu: bool = field(
        default=False, metadata={"help": "Train on CPU even if a GPU is present (CPU is used anyway when none is)."}
    )
    feature_cache_gb: float = field(
        default=2.0,
        metadata={"help": "Memory (GiB, per process and worker) for log-mel features of uncropped utterances, reused "
                  "in later epochs, and of whole aligned recordings, whose random crops are sliced from them: on "
                  "CPU, features cost more than a small model's update. 0 = off."},
    )
    dataloader_num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes (0 = in process)."})
    specaugment_start_step: int = field(
        default=50_000, metadata={"help": "Update from which SpecAugment is applied (paper 50k; -1 = never)."}
    )
    num_freq_masks: int = field(default=2, metadata={"help": "SpecAugment frequency masks."})
    freq_mask_width: int = field(default=30, metadata={"help": "Max width of a frequency mask (mel bins)."})
    num_time_masks: int = field(default=2, metadata={"help": "SpecAugment time masks."})
    time_mask_width: int = field(default=50, metadata={"help": "Max width of a time mask (frames)."})
    time_mask_max_ratio: float = field(default=0.1, metadata={"help": "Max time-mask width as a share of the utterance."})
    crop_seconds: float = field(default=10.0, metadata={"help": "Length of the random crops of long aligned audio."})
    crop_steps: int = field(
        default=10_000,
        metadata={"help": "Crop long pseudo-labelled audio for the first N updates (paper 10k; 0 = never). Labelled "
                  "utterances have no alignment and are never cropped."},
    )
    # Semi-supervised fine-tuning (slimIPL; modeling_mlpl.training.slimipl). Only with --unlabeled_data.
    pl_start_step: int = field(
        default=20_000,
        metadata={"help": "With --unlabeled_data: supervised updates before pseudo-labelling starts (slimIPL "
                  "LibriSpeech-100h: 20k)."},
    )
    pl_labeled_updates: int = field(
        default=1, metadata={"help": "Labelled updates per cycle once PL has started (slimIPL LibriSpeech-100h: 1)."}
    )
    pl_unlabeled_updates: int = field(
        default=1,
        metadata={"help": "Unlabelled (pseudo-labelled) updates per cycle once PL has started (slimIPL "
                  "LibriSpeech-100h: 4; 1 suits the demo's few hundred updates)."},
    )
    pl_cache_size: int = field(
        default=100, metadata={"help": "Recordings in the dynamic PL cache (per process; capped at the pool size)."}
    )
    pl_cache_refresh_prob: float = field(
        default=0.1,
        metadata={"help": "Probability that a cache entry, once used, is replaced by a new recording labelled by the "
                  "current model (slimIPL 0.1; 0 = a fixed cache, 1 = relabel after every use)."},
    )
    pl_dropout: float = field(
        default=0.1,
        metadata={"help": "Dropout of every dropout module from --pl_start_step on (slimIPL 0.1; -1 = keep the model's)."},
    )
    pl_specaugment: bool = field(
        default=True, metadata={"help": "SpecAugment (the --num_*_masks settings) on every unlabelled batch."}
    )
    logging_steps: int = field(default=50, metadata={"help": "Updates between log lines (JSONL + TensorBoard)."})
    eval_steps: int = field(default=1000, metadata={"help": "Updates between dev evaluations (0 = only at the end)."})
    save_steps: int = field(default=1000, metadata={"help": "Updates between checkpoints (accelerator.save_state)."})
    save_total_limit: int = field(default=3, metadata={"help": "Checkpoints kept (oldest deleted)."})
    load_best_model_at_end: bool = field(
        default=False, metadata={"help": "Export the checkpoint with the lowest mean dev CER instead of the last one."}
    )
    eval_max_batch_seconds: float | None = field(
        default=None, metadata={"help": "Padded seconds per dev batch (default 2 x max_batch_seconds)."}
    )
    tensorboard: bool = field(default=True, metadata={"help": "Also log to TensorBoard (output_dir/runs)."})
    log_batch_ids: bool = field(
        default=False, metadata={"help": "Write the utterance ids of every batch to batch_ids.rank<R>.jsonl (checks)."}
    )
    # Hub publishing (modeling_mlpl.hub.maybe_push_to_hub reads these names).
    push_to_hub: bool = field(default=False, metadata={"help": "Upload the final model (+ card) when training ends."})
    hub_model_id: str | None = field(default=None, metadata={"help": "user/name of the model repo."})
    hub_stage: str | None = field(
        default=None,
        metadata={"help": "Recipe stage of this run: stage1-multilingual, stage2-ft-<lang>, stage4a-pl or stage4b-pl "
                  "(the branch, unless --hub_revision is given)."},
    )
    hub_revision: str | None = field(default=None, metadata={"help": "Branch to push to (default: --hub_stage)."})
    hub_token: str | None = field(default=None, metadata={"help": "Token (default: HF_TOKEN or `hf auth login`)."})
    hub_private_repo: bool = field(default=False, metadata={"help": "Create the repo private."})
    hub_dry_run: bool = field(default=False, metadata={"help": "Write the upload folder next to output_dir; upload nothing."})


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


@dataclass(frozen=True)
class TrainingData:
    """A run's data, each spec parsed once (:func:`resolve_data`): what the trainer opens."""

    train: tuple[DataSpec, ...]
    eval: tuple[DataSpec, ...] = ()
    unlabeled: DataSpec | None = None


def _parse(spec: str, flag: str, kinds, default_kind: str | None = None) -> DataSpec:
    try:
        return parse_data_spec(spec, kinds, default_kind, flag=flag)
    except DataSpecError as err:
        raise ConfigError(str(err)) from None


def _deprecated_specs(d: DataArguments) -> tuple[list[DataSpec], list[DataSpec], list[str]]:
    """(train specs, dev specs, flags used) that --cv_root/--train_datasets/--eval_datasets stand for:
    the Common Voice root first, then the saved datasets, as these flags always ordered them."""
    train: list[DataSpec] = []
    dev: list[DataSpec] = []
    used = [f"--{name}" for name in ("cv_root", "train_datasets", "eval_datasets") if getattr(d, name)]
    if d.cv_root is not None:
        # Built, not parsed: a root whose name holds '@' stays one path.
        train += [DataSpec("cv", d.cv_root, d.cv_train_split, prefix="cv")] if d.cv_train_split else []
        dev += [DataSpec("cv", d.cv_root, d.cv_eval_split, prefix="cv")] if d.cv_eval_split else []
    # A bare PATH was always a saved dataset: spelt disk:PATH from here on (the name logs and errors show).
    train += [replace(_parse(s, "--train_datasets", PL_SET_KINDS, "disk"), prefix="disk") for s in d.train_datasets or []]
    dev += [replace(_parse(s, "--eval_datasets", PL_SET_KINDS, "disk"), prefix="disk") for s in d.eval_datasets or []]
    return train, dev, used


def resolve_data(d: DataArguments) -> TrainingData:
    """The specs of --train_data/--eval_data/--unlabeled_data, parsed once; the deprecated flags mapped
    onto them with one warning that spells the same data as specs. ConfigError (one line) on a bad spec,
    on both spellings of one thing, or on a --cv_*_split without --cv_root."""
    train = [_parse(s, "--train_data", TRAINING_KINDS) for s in d.train_data or []]
    dev = [_parse(s, "--eval_data", TRAINING_KINDS) for s in d.eval_data or []]
    old_train, old_dev, used = _deprecated_specs(d)
    if d.cv_root is None:
        _check(d.cv_train_split == "train" and d.cv_eval_split == "dev",
               "--cv_train_split/--cv_eval_split only apply with --cv_root; name the split in the spec instead "
               "(--train_data cv:CV@SPLIT, --eval_data cv:CV@SPLIT)")  # fmt: skip
    _check(not (train and (d.cv_root is not None or d.train_datasets)),
           "give the training data once: --train_data, or the deprecated --cv_root/--train_datasets, not both")
    _check(not (dev and (d.cv_root is not None or d.eval_datasets)),
           "give the dev data once: --eval_data, or the deprecated --cv_root/--eval_datasets, not both")
    if used:
        as_specs = " ".join(["--train_data", *map(str, old_train)] if old_train else [])
        as_specs += " --eval_data " + " ".join(map(str, old_dev)) if old_dev else ""
        logger.warning("%s deprecated; the same data as specs: %s", "/".join(used) + (" is" if len(used) == 1 else " are"),
                       as_specs.strip())  # fmt: skip
    unlabeled = None
    if d.unlabeled_data is not None:
        unlabeled = _parse(d.unlabeled_data, "--unlabeled_data", UNLABELED_POOL_KINDS)
    return TrainingData(tuple(train or old_train), tuple(dev or old_dev), unlabeled)


def _check_paths(specs: list[DataSpec], flag: str) -> None:
    for spec in specs:
        try:
            check_path(spec, flag)
        except DataSpecError as err:
            raise ConfigError(str(err)) from None


def validate_arguments(model_args: ModelArguments, data_args: DataArguments, args: MLPLTrainingArguments) -> TrainingData:
    """The run's data specs (:func:`resolve_data`), once every value is checked; ConfigError with a one-line
    message for the first bad value found."""
    m, d, t = model_args, data_args, args
    _check((m.preset is None) != (m.init_from is None), "give exactly one of --preset (from scratch) or --init_from")
    if m.preset is not None:
        _check(m.preset in PRESETS, f"unknown preset {m.preset!r}; choose one of {sorted(PRESETS)}")
    if m.init_from is not None:
        _check(os.path.isfile(os.path.join(m.init_from, "config.json")),
               f"--init_from {m.init_from!r} is not a saved MLPL checkpoint (no config.json)")
        _check(m.tokenizer_dir is None and m.languages is None,
               "--tokenizer_dir/--languages only apply with --preset; --init_from keeps the checkpoint's")
        _check(m.layer_norm_first is None, "--layer_norm_first only applies with --preset; --init_from keeps the checkpoint's")
    if m.tokenizer_dir is not None:
        _check(os.path.isfile(os.path.join(m.tokenizer_dir, "vocab.json")), f"--tokenizer_dir {m.tokenizer_dir!r} has no vocab.json")
    for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "conv_dropout", "layerdrop"):
        value = getattr(m, name)
        _check(value is None or 0.0 <= value < 1.0, f"--{name} must be in [0, 1), got {value}")
    _check(m.lid_loss_weight is None or m.lid_loss_weight >= 0, f"--lid_loss_weight must be >= 0, got {m.lid_loss_weight}")
    for lang in (m.languages or []) + (d.cv_languages or []):
        _check(lang in CV_LANGUAGES, f"unknown language {lang!r}; use Common Voice codes such as en, de, pt, fy-NL")

    data = resolve_data(d)
    _check(bool(data.train), "no training data: give --train_data, e.g. --train_data cv:CV@train")
    _check_paths(list(data.train), "--train_data")
    _check_paths(list(data.eval), "--eval_data")
    _check_paths([data.unlabeled] if data.unlabeled else [], "--unlabeled_data")
    n_sources = len(data.train)
    if d.train_weights is not None:
        _check(len(d.train_weights) == n_sources,
               f"--train_weights has {len(d.train_weights)} values for {n_sources} training sources")
        _check(all(w >= 0 for w in d.train_weights) and any(w > 0 for w in d.train_weights),
               "--train_weights must be >= 0 and not all 0")
    _check(d.max_eval_samples_per_language is None or d.max_eval_samples_per_language > 0,
           "--max_eval_samples_per_language must be > 0")
    _check(d.max_train_samples is None or d.max_train_samples > 0, "--max_train_samples must be > 0")
    for lang in d.unlabeled_languages or []:
        _check(lang in CV_LANGUAGES, f"unknown --unlabeled_languages {lang!r}; use Common Voice codes such as pt")

    _check(t.max_steps > 0, f"--max_steps must be > 0, got {t.max_steps}")
    _check(t.learning_rate > 0, f"--learning_rate must be > 0, got {t.learning_rate}")
    _check(t.max_batch_seconds > 0, f"--max_batch_seconds must be > 0, got {t.max_batch_seconds}")
    _check(t.max_batch_size is None or t.max_batch_size >= 1, "--max_batch_size must be >= 1")
    _check(t.gradient_accumulation_steps >= 1, "--gradient_accumulation_steps must be >= 1")
    _check(t.optimizer in OPTIMIZERS, f"unknown --optimizer {t.optimizer!r}; choose one of {OPTIMIZERS}")
    _check(t.lr_scheduler_type in SCHEDULERS, f"unknown --lr_scheduler_type {t.lr_scheduler_type!r}; choose one of {SCHEDULERS}")
    _check(t.mixed_precision in MIXED_PRECISION, f"unknown --mixed_precision {t.mixed_precision!r}; choose one of {MIXED_PRECISION}")
    _check(t.warmup_steps >= 0, f"--warmup_steps must be >= 0, got {t.warmup_steps}")
    _check(t.max_grad_norm >= 0, f"--max_grad_norm must be >= 0 (0 = no clipping), got {t.max_grad_norm}")
    _check(t.weight_decay >= 0, "--weight_decay must be >= 0")
    _check(t.num_threads is None or t.num_threads >= 1, f"--num_threads must be >= 1, got {t.num_threads}")
    _check(t.dataloader_num_workers >= 0, "--dataloader_num_workers must be >= 0")
    _check(t.feature_cache_gb >= 0, "--feature_cache_gb must be >= 0")
    _check(t.crop_seconds > 0, f"--crop_seconds must be > 0, got {t.crop_seconds}")
    _check(t.crop_steps >= 0, "--crop_steps must be >= 0")
    _check(t.specaugment_start_step >= -1, "--specaugment_start_step must be >= 0, or -1 to disable")
    _check(min(t.num_freq_masks, t.freq_mask_width, t.num_time_masks, t.time_mask_width) >= 0,
           "SpecAugment mask counts and widths must be >= 0")
    _check(0 <= t.time_mask_max_ratio <= 1, "--time_mask_max_ratio must be in [0, 1]")
    _check(t.pl_start_step >= 0, f"--pl_start_step must be >= 0, got {t.pl_start_step}")
    _check(t.pl_labeled_updates >= 0 and t.pl_unlabeled_updates >= 1,
           "--pl_labeled_updates must be >= 0 and --pl_unlabeled_updates >= 1")
    _check(t.pl_cache_size >= 1, f"--pl_cache_size must be >= 1, got {t.pl_cache_size}")
    _check(0 <= t.pl_cache_refresh_prob <= 1, f"--pl_cache_refresh_prob must be in [0, 1], got {t.pl_cache_refresh_prob}")
    _check(t.pl_dropout == -1 or 0 <= t.pl_dropout < 1, f"--pl_dropout must be in [0, 1) or -1 (keep), got {t.pl_dropout}")
    _check(t.logging_steps >= 1 and t.save_steps >= 1, "--logging_steps and --save_steps must be >= 1")
    _check(t.eval_steps >= 0, "--eval_steps must be >= 0")
    _check(t.save_total_limit >= 1, "--save_total_limit must be >= 1")
    _check(t.eval_max_batch_seconds is None or t.eval_max_batch_seconds > 0, "--eval_max_batch_seconds must be > 0")
    if t.resume_from_checkpoint is not None:
        _check(os.path.isdir(t.resume_from_checkpoint), f"--resume_from_checkpoint {t.resume_from_checkpoint!r} does not exist")
    elif not t.resume and not t.overwrite_output_dir and os.path.isdir(t.output_dir) and os.listdir(t.output_dir):
        raise ConfigError(f"output_dir {t.output_dir!r} is not empty: pass --resume to continue or --overwrite_output_dir")
    return data


# What train.py parses, in this order (the recipe validates its config blocks against the same classes).
TRAIN_ARGUMENT_CLASSES = (ModelArguments, DataArguments, MLPLTrainingArguments)


def arguments_to_dict(*groups) -> dict:
    """All argument groups merged into one JSON-able dict (training_args.json)."""
    merged: dict = {}
    for group in groups:
        merged.update(asdict(group))
    return merged


__all__ = [
    "ModelArguments",
    "DataArguments",
    "MLPLTrainingArguments",
    "ConfigError",
    "DATA_SPECS_HELP",
    "TrainingData",
    "resolve_data",
    "validate_arguments",
    "arguments_to_dict",
    "TRAIN_ARGUMENT_CLASSES",
]
