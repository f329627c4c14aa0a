"""The training loop (stages 1, 2 and 4 of the recipe) on Accelerate: one CPU, several processes, GPUs.

Why a hand-written loop rather than `transformers.Trainer`: batches are planned by seconds of audio
per process (the data helper's length-bucketing sampler, already split by rank), the crop warm-up
and SpecAugment switch on and off by update number, and resume must continue from the exact batch
of the epoch. Accelerate provides devices, DDP, mixed precision and `save_state`.

Reading order (as nanoGPT's train.py): :func:`train` is one run in a dozen lines (set-up, resume, the
epochs, the end) and the functions below it follow the order it calls them. What a run builds once
(:class:`Setup`) is kept apart from what its updates change (:class:`Loop`, whose `state` is the
checkpointed :class:`~.checkpointing.TrainerState`), so a function's signature says which it may change.
"""

from __future__ import annotations

import json
import logging
import contextlib
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedDataParallelKwargs, set_seed
from tqdm.auto import tqdm
from transformers import get_scheduler

from ..augment import spec_augment
from ..configuration_mlpl import MLPLConfig
from ..data.sampler import LengthBucketBatchSampler
from ..data.specs import DataSpec, DataSpecError, open_dataset
from ..feature_cache import FeatureCache
from ..feature_extraction_mlpl import MLPLFeatureExtractor
from ..modeling_mlpl import MLPLForCTC
from ..processing_mlpl import MLPLProcessor
from ..resumable import ShardWriter, truncate_shard
from ..tokenization_mlpl import MLPLTokenizer
from .arguments import (
    ConfigError,
    DataArguments,
    MLPLTrainingArguments,
    ModelArguments,
    TrainingData,
    arguments_to_dict,
    resolve_data,
    validate_arguments,
)
from .checkpointing import (
    CheckpointMismatch,
    CorruptCheckpoint,
    TrainerState,
    check_checkpoint,
    checkpoint_dir,
    checkpoint_root,
    list_checkpoints,
    rotate_checkpoints,
)
from .train_data import SourceStats, TaggedBatchSampler, TrainingSet, expand_by_weight, filter_rows, make_loader
from .dev_eval import DevSet, evaluate_dev_set
from .slimipl import SlimIPL, SlimIPLConfig, load_unlabeled_pool
from .tracking import MetricsLog

logger = logging.getLogger(__name__)

BEST_DIR = "best_model"


@dataclass
class TrainResult:
    """What `train` returns: where the model went, the last update, the best dev CER and its update, the
    last dev result, what each source gave, and the unreadable recordings skipped (counted, not dropped)."""

    output_dir: str
    step: int
    best_metric: float | None
    best_step: int | None
    last_eval: dict | None
    sources: list[SourceStats]
    skipped_audio: int


# ------------------------------------------------------------------------------------------ run state
@dataclass(frozen=True)
class Setup:
    """What a run builds once, before its first update, and then only uses: the accelerator, the model
    and its optimiser, the data and its batch plans, the dev sets, the PL cache, and (set by `open_logs`
    once the resumed update is known) where the run reports. The objects inside change (weights,
    optimiser moments, the PL cache's entries); which objects they are does not. Updates are `Loop`'s."""

    args: MLPLTrainingArguments
    accelerator: Accelerator
    model: torch.nn.Module  # wrapped by Accelerate (DDP) when data-parallel
    unwrapped: MLPLForCTC
    processor: MLPLProcessor
    optimizer: torch.optim.Optimizer
    scheduler: object
    train_set: TrainingSet
    dev: DevSet | None
    samplers: dict[bool, LengthBucketBatchSampler]  # cropped? -> batch plan of the epoch
    semi: SlimIPL | None
    work_dir: str
    threads: int
    loaders: dict = field(default_factory=dict)  # cropped? -> DataLoader, kept across epochs (see _epoch_loader)
    logs: "Logs | None" = None

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process


@dataclass(frozen=True)
class Logs:
    """Where the run reports, opened after resume (each continues from the resumed update): the metrics
    log, the progress bar and the --log_batch_ids writer (None without the flag)."""

    metrics: MetricsLog
    progress: tqdm
    batch_ids: ShardWriter | None


@dataclass
class Loop:
    """What the updates change. `state` is what a checkpoint saves and a resume restores (update, epoch,
    batch position, best dev CER, counters: TrainerState); the rest starts afresh in a resumed run, which
    always starts at an update boundary: the running sums of the log window, the micro-batches trained
    (every gradient_accumulation_steps-th one ends an update) and the last dev result."""

    state: TrainerState
    start_step: int  # the update this run started at (train_results.json: updates_this_run)
    window: "_Window"
    micro: int = 0
    last_eval: dict | None = None


def train(model_args: ModelArguments, data_args: DataArguments, args: MLPLTrainingArguments,
          step_callback: Callable[[TrainerState], None] | None = None,
          data: TrainingData | None = None) -> TrainResult:  # fmt: skip
    """Train, evaluate, checkpoint and export to `args.output_dir` (see the module docstring): set-up,
    resume, the epochs, the end. The functions below follow this order.

    `step_callback(state)` runs after every update (tests use it to interrupt a run). `data`: what
    :func:`validate_arguments` returned for these arguments, when the caller checked them already.
    """
    if data is None:
        data = validate_arguments(model_args, data_args, args)
    setup = setup_run(model_args, data_args, args, data)
    state = resume_run(setup)
    setup = replace(setup, logs=open_logs(setup, state, model_args, data_args))
    loop = Loop(state, start_step=state.step, window=_Window())
    setup.model.train()
    while state.step < args.max_steps:
        train_one_epoch(setup, loop, step_callback)
    return finish(setup, loop)


# ------------------------------------------------------------------------------------------- set-up
def make_accelerator(args: MLPLTrainingArguments) -> Accelerator:
    """The run's Accelerator (DDP's find_unused_parameters is set once the model is known: setup_run)."""
    # Accelerate keeps one global state per process; reset it so that several runs in one process
    # (tests, benchmarks) may use different precisions. The distributed set-up (PartialState) is kept.
    AcceleratorState._reset_state(reset_partial_state=False)
    cpu = args.use_cpu or not torch.cuda.is_available()
    return Accelerator(
        # Accelerate only sets up CPU data parallelism (gloo) when told it runs on CPU.
        cpu=cpu,
        mixed_precision=resolve_mixed_precision(args.mixed_precision, cuda=not cpu),
        dynamo_backend="inductor" if args.torch_compile else "no",
    )


def setup_run(model_args: ModelArguments, data_args: DataArguments, args: MLPLTrainingArguments,
              data: TrainingData | None = None) -> Setup:  # fmt: skip
    """Accelerator, data, model, optimizer, schedule and batch plans of a run (nothing trained yet).
    `data`: the specs :func:`validate_arguments` parsed (None: parsed here from `data_args`)."""
    data = data if data is not None else resolve_data(data_args)
    accelerator = make_accelerator(args)
    is_main = accelerator.is_main_process
    threads = configure_threads(args.num_threads, accelerator.state.num_processes if accelerator.device.type == "cpu" else 1)
    logger.info("process %d/%d on %s, %d torch threads, mixed precision %s", accelerator.process_index,
                accelerator.num_processes, accelerator.device, threads, accelerator.mixed_precision)  # fmt: skip
    if is_main:
        _prepare_output_dir(args, is_main)
    accelerator.wait_for_everyone()
    set_seed(args.seed)

    train_sources, train_names = load_sources(data.train, data_args, "train")
    data_languages = sorted({lang for ds in train_sources for lang in set(ds["language"])})
    work_dir = tempfile.mkdtemp(prefix="mlpl-train-")
    texts = [t for ds in train_sources for t in ds["text"]]
    model, processor = build_model_and_processor(model_args, texts, data_languages, work_dir)
    languages = model.config.languages
    unknown = sorted(set(data_languages) - set(languages))
    if unknown:
        raise ConfigError(f"training data has language(s) {unknown} that the model does not know; it knows {languages}")
    train_set = build_training_set(train_sources, train_names, processor.tokenizer, languages, data_args.train_weights,
                                   args.crop_seconds, args.seed, processor.feature_extractor, args.feature_cache_gb,
                                   FeatureCache.from_setting(args.feature_cache_dir))  # fmt: skip
    dev_sources, _ = load_sources(data.eval, data_args, "eval")
    dev = DevSet(dev_sources, data_args.max_eval_samples_per_language) if dev_sources else None
    if dev is not None and len(dev) == 0:
        dev = None

    model.to(accelerator.device)  # before the optimizer: fused kernels need the parameters on the GPU
    optimizer = build_optimizer(model, args)
    scheduler = build_scheduler(optimizer, args)
    accelerator.ddp_handler = DistributedDataParallelKwargs(find_unused_parameters=needs_unused_parameters(model.config))
    model, optimizer = accelerator.prepare(model, optimizer)
    # Not prepared: Accelerate would step it once per process per update.
    accelerator.register_for_checkpointing(scheduler)
    unwrapped = accelerator.unwrap_model(model)
    semi = build_slimipl(data, data_args, args, accelerator, unwrapped, processor, train_set)

    def make_sampler(cropped: bool) -> LengthBucketBatchSampler:
        return LengthBucketBatchSampler(
            train_set.cropped_durations if cropped else train_set.durations,
            args.max_batch_seconds,
            num_replicas=accelerator.num_processes,
            rank=accelerator.process_index,
            seed=args.seed,
            shuffle=True,
            max_batch_size=args.max_batch_size,
        )

    samplers = {False: make_sampler(False)}
    if args.crop_steps > 0:
        samplers[True] = make_sampler(True)
    return Setup(args, accelerator, model, unwrapped, processor, optimizer, scheduler, train_set, dev, samplers, semi,
                 work_dir, threads)  # fmt: skip


def configure_threads(num_threads: int | None, local_processes: int = 1) -> int:
    """Set torch's intra-op threads. Default: this process's cores / processes on this machine, because
    oversubscribed threads wait on each other (2 threads on a busy 2-core machine: ~15 % speed)."""
    if num_threads is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        num_threads = max(1, cores // max(local_processes, 1))
    torch.set_num_threads(num_threads)
    return num_threads


def _check_rows(ds, spec: DataSpec, split: str, languages: Sequence[str] | None, flag: str) -> None:
    """A source with no usable rows (e.g. a header-only Common Voice `{split}.tsv`) is named here; it would
    otherwise surface later as an empty MLPLConfig.languages. Named languages must each have rows."""
    if not hasattr(ds, "num_rows"):  # streamed: counted as it is read
        return
    present = set(ds["language"]) if ds.num_rows and "language" in ds.column_names else set()
    empty = [lang for lang in languages if lang not in present] if languages else ([] if ds.num_rows else ["*"])
    if not empty:
        return
    if empty == ["*"] and spec.kind == "cv":  # none named: the languages whose split file is there
        root = str(spec.path)
        empty = sorted(d for d in os.listdir(root) if os.path.isfile(os.path.join(root, d, f"{split}.tsv"))) or empty
    where = (", ".join(os.path.join(spec.path, lang, f"{split}.tsv") for lang in empty) if spec.kind == "cv"
             else f"its {split!r} split" + ("" if empty == ["*"] else f" for {', '.join(empty)}"))  # fmt: skip
    raise ConfigError(f"{flag} {spec}: no usable rows in {where} (header only, or every row skipped by the "
                      "loader's checks)")  # fmt: skip


def load_sources(specs: Sequence[DataSpec], data_args: DataArguments, split_kind: str = "train") -> tuple[list, list[str]]:
    """Datasets and display names (the specs) of the training (`split_kind="train"`) or dev sources, in
    the order given; cv/vp specs keep to --cv_languages. Default split: train, or dev (validation for a
    saved DatasetDict, the `datasets` name of that split) for the dev sets."""
    flag = "--train_data" if split_kind == "train" else "--eval_data"
    datasets, names = [], []
    for spec in specs:
        split = "train" if split_kind == "train" else "validation" if spec.kind == "disk" else "dev"
        try:
            ds = open_dataset(spec, split=split, languages=data_args.cv_languages, flag=flag)
        except DataSpecError as err:  # names the flag and the spec already
            raise ConfigError(str(err)) from None
        except (ValueError, FileNotFoundError) as err:
            raise ConfigError(f"{flag} {spec}: {err}") from None
        _check_rows(ds, spec, split, data_args.cv_languages if spec.kind in ("cv", "vp") else None, flag)
        datasets.append(ds)
        names.append(str(spec))
    if split_kind == "train" and data_args.max_train_samples is not None:
        datasets = [ds.select(range(min(len(ds), data_args.max_train_samples))) for ds in datasets]
    if split_kind == "train":
        check_unique_training_ids(datasets, names)
    return datasets, names


def check_unique_training_ids(datasets: list, names: list[str]) -> None:
    """Refuse training sources whose ids repeat across two sources (each loader already refuses repeats
    within one: :func:`modeling_mlpl.data.check_unique_ids`): batch logs, PL caches and every resume are
    keyed by id. The message names the two sources, so the user sees which flags brought the same rows."""
    seen: dict[str, int] = {}
    duplicates: list[tuple[str, int, int]] = []
    for s, ds in enumerate(datasets):
        for uid in ds["id"]:
            if uid in seen:
                duplicates.append((uid, seen[uid], s))
            else:
                seen[uid] = s
    if duplicates:
        uid, first, second = duplicates[0]
        where = f"twice in {names[first]}" if first == second else f"in {names[first]} and in {names[second]}"
        raise ConfigError(f"duplicate id {uid!r} in the training data ({where}; {len(duplicates)} repeated id(s) in "
                          "all): give each utterance one id; to upsample a source use --train_weights, not the same path twice")  # fmt: skip


def build_model_and_processor(model_args: ModelArguments, texts: list[str], data_languages: list[str],
                              work_dir: str) -> tuple[MLPLForCTC, MLPLProcessor]:  # fmt: skip
    """From a preset (tokenizer from the transcripts unless given; languages from the data unless
    given) or from a checkpoint (its tokenizer, languages and LID head)."""
    overrides = model_args.config_overrides()
    if model_args.init_from is not None:
        model = MLPLForCTC.from_pretrained(model_args.init_from, **overrides)
        processor = MLPLProcessor.from_pretrained(model_args.init_from)
        return model, processor
    if model_args.tokenizer_dir is not None:
        tokenizer = MLPLTokenizer.from_pretrained(model_args.tokenizer_dir)
    else:
        tokenizer = MLPLTokenizer.build_from_texts(texts, save_directory=os.path.join(work_dir, "tokenizer"))
    languages = list(model_args.languages or sorted(set(data_languages)))
    if model_args.layer_norm_first is not None:  # architecture: only when building a new model
        overrides["layer_norm_first"] = model_args.layer_norm_first
    config = MLPLConfig.from_preset(model_args.preset, vocab_size=len(tokenizer), languages=languages, **overrides)
    model = MLPLForCTC(config)
    return model, MLPLProcessor(MLPLFeatureExtractor(), tokenizer)


def build_training_set(datasets: list, names: list[str], tokenizer: MLPLTokenizer, languages: list[str],
                       weights: list[float] | None, crop_seconds: float, seed: int, feature_extractor=None,
                       feature_cache_gb: float = 0.0, feature_cache: FeatureCache | None = None) -> TrainingSet:  # fmt: skip
    """Filter every source for this model, expand by weight, and report what was dropped."""
    vocabulary = list(tokenizer.get_vocab())
    weights = weights or [1.0] * len(datasets)
    rng = np.random.default_rng([seed, 1])
    entries, stats = [], []
    for s, (ds, name, weight) in enumerate(zip(datasets, names, weights)):
        kept, dropped, oov = filter_rows(ds, vocabulary, languages)
        durations = np.asarray(ds["duration"], dtype=np.float64)
        stat = SourceStats(name, rows=len(ds), kept=len(kept), weight=weight, dropped=dropped, oov_characters=oov,
                           seconds=float(durations[kept].sum()) if kept else 0.0)  # fmt: skip
        stats.append(stat)
        logger.info("training data %s", stat.line())
        entries += [(s, i) for i in expand_by_weight(kept, weight, rng)]
    if not entries:
        raise ConfigError("no usable training utterances left after filtering: " + "; ".join(s.line() for s in stats))
    return TrainingSet(datasets, entries, {lang: i for i, lang in enumerate(languages)}, crop_seconds, seed, stats,
                       feature_extractor, feature_cache_gb, feature_cache)  # fmt: skip


def optimizer_kernels(params: list[torch.Tensor]) -> dict:
    """Fused AdamW (one kernel for all tensors instead of a loop of small ones) when every parameter is
    on CUDA; elsewhere torch's default, so CPU results stay as they were. (Adagrad keeps torch's default:
    foreach on CUDA; its fused kernel is CPU-only.)"""
    if params and all(p.device.type == "cuda" for p in params):
        return {"fused": True}
    return {}


def build_optimizer(model: torch.nn.Module, args: MLPLTrainingArguments) -> torch.optim.Optimizer:
    """The optimizer over the model's trainable parameters (move the model to its device first)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if args.optimizer == "adagrad":
        return torch.optim.Adagrad(params, lr=args.learning_rate, weight_decay=args.weight_decay)
    return torch.optim.AdamW(params, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                             eps=args.adam_epsilon, weight_decay=args.weight_decay, **optimizer_kernels(params))  # fmt: skip


class ContinuedSchedule:
    """LR factor (of --learning_rate) per update of a run that continues another run's checkpoint
    (--continue_from) at `start_step`, where that run left the LR at `start_factor` x --learning_rate.

    Why not the other run's schedule, nor a fresh one: theta' (the supervised run) ends its own schedule at
    its last update (cosine and linear decay to 0, constant stays at the peak), and a fresh schedule would
    jump from there to the peak. So the new phase starts at the LR the other run left (no jump), warms up
    linearly to the peak over `warmup_steps`, then decays with `kind` over its own `max_steps - start_step`
    updates, as the same settings would in a run of that length. A callable object rather than a function:
    LambdaLR saves its attributes with the scheduler, so this run's own resume restores the phase as it was.
    """

    def __init__(self, kind: str, warmup_steps: int, max_steps: int, start_step: int = 0, start_factor: float = 1.0):
        self.kind, self.warmup_steps, self.max_steps = kind, warmup_steps, max_steps
        self.start_step, self.start_factor = start_step, start_factor

    def __call__(self, step: int) -> float:
        done = max(step - self.start_step, 0)
        if done < self.warmup_steps:
            return self.start_factor + (1.0 - self.start_factor) * done / self.warmup_steps
        if self.kind == "constant_with_warmup":
            return 1.0
        progress = (done - self.warmup_steps) / max(1, self.max_steps - self.start_step - self.warmup_steps)
        if self.kind == "linear":
            return max(0.0, 1.0 - progress)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0))))  # cosine


def build_scheduler(optimizer: torch.optim.Optimizer, args: MLPLTrainingArguments):
    """transformers' schedule of --lr_scheduler_type, or the continuation's (see ContinuedSchedule; its start
    is set when the other run's checkpoint is loaded: `resume_run`)."""
    if args.continue_from is not None:
        schedule = ContinuedSchedule(args.lr_scheduler_type, args.warmup_steps, args.max_steps)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    return get_scheduler(args.lr_scheduler_type, optimizer, num_warmup_steps=args.warmup_steps,
                         num_training_steps=args.max_steps)  # fmt: skip


def resolve_mixed_precision(value: str, cuda: bool | None = None, bf16_supported: bool | None = None) -> str:
    """--mixed_precision auto -> "bf16" on a CUDA GPU with bf16, else "no"; other values unchanged."""
    if value != "auto":
        return value
    cuda = torch.cuda.is_available() if cuda is None else cuda
    if not cuda:
        return "no"
    bf16_supported = torch.cuda.is_bf16_supported() if bf16_supported is None else bf16_supported
    return "bf16" if bf16_supported else "no"


def needs_unused_parameters(config: MLPLConfig) -> bool:
    """Whether a training batch can leave parameters without a gradient, which DDP must then be told
    (find_unused_parameters costs a graph walk per update): layerdrop skips whole layers, and with
    gamma = 0 the LID head is not in the loss. Every training batch has CTC labels (the collator gives
    all-ignored ones to a batch of empty crops) and a batch of unreadable audio gets a zero loss over
    all parameters, so nothing else leaves a head unused."""
    return config.layerdrop > 0 or config.lid_loss_weight == 0


def _prepare_output_dir(args: MLPLTrainingArguments, is_main: bool) -> None:
    if is_main and args.overwrite_output_dir and not (args.resume or args.resume_from_checkpoint) and os.path.isdir(args.output_dir):
        shutil.rmtree(args.output_dir)
    os.makedirs(args.output_dir, exist_ok=True)


def build_slimipl(data: TrainingData, data_args: DataArguments, args: MLPLTrainingArguments, accelerator: Accelerator,
                  model: MLPLForCTC, processor: MLPLProcessor, train_set: TrainingSet) -> SlimIPL | None:  # fmt: skip
    """The semi-supervised (slimIPL) PL cache of this process, or None for supervised training."""
    if data.unlabeled is None:
        return None
    pool = load_unlabeled_pool(data.unlabeled, data_args.unlabeled_languages or data_args.cv_languages)
    config = SlimIPLConfig(
        start_step=args.pl_start_step, labeled_updates=args.pl_labeled_updates, unlabeled_updates=args.pl_unlabeled_updates,
        cache_size=args.pl_cache_size, refresh_prob=args.pl_cache_refresh_prob,
        dropout=None if args.pl_dropout == -1 else args.pl_dropout, crop_seconds=args.crop_seconds,
        max_batch_seconds=args.max_batch_seconds, max_batch_size=args.max_batch_size, seed=args.seed,
        specaugment=args.pl_specaugment,
    )  # fmt: skip
    if args.pl_start_step >= args.max_steps:
        logger.warning("--pl_start_step %d >= --max_steps %d: the unlabelled data will not be used",
                       args.pl_start_step, args.max_steps)  # fmt: skip
    autocast = {"bf16": "bf16", "fp16": "fp16"}.get(accelerator.mixed_precision) if accelerator.device.type == "cuda" else None
    semi = SlimIPL(config, pool, processor, model, train_set.lang2id, accelerator.process_index, accelerator.num_processes,
                   label_batch_seconds=args.eval_max_batch_seconds or 2 * args.max_batch_seconds, autocast_dtype=autocast)  # fmt: skip
    logger.info("semi-supervised: %d unlabelled recordings for this process; %s", len(semi.rows), config.summary())
    return semi


def resume_run(setup: Setup) -> TrainerState:
    """The loop state to start from: the checkpoint named by --resume_from_checkpoint, or the latest
    readable one with --resume (a truncated last checkpoint is named in the log and the one before it
    used), loaded into the model, optimiser, schedule, RNGs and PL cache; else a fresh state."""
    args = setup.args
    explicit = args.resume_from_checkpoint
    candidates = [explicit] if explicit else list(reversed(list_checkpoints(args.output_dir))) if args.resume else []
    # --continue_from: only while this run has no checkpoint of its own (afterwards --resume continues those).
    continuing = not candidates and args.continue_from is not None
    if continuing:
        candidates, explicit = [args.continue_from], args.continue_from
    elif args.resume and not explicit and not candidates:
        logger.warning("--resume: no checkpoint in %s yet, starting from scratch", args.output_dir)
    flag = "--continue_from" if continuing else "--resume_from_checkpoint"
    model_state = setup.unwrapped.state_dict()
    for k, directory in enumerate(candidates):
        try:
            check_checkpoint(directory, model_state)
            setup.accelerator.load_state(directory)
            state = TrainerState.load(directory)
        except CheckpointMismatch as err:
            raise ConfigError(f"cannot resume: {err}{_started_with(args.output_dir)}; resume with the same --preset/"
                              "--init_from/--tokenizer_dir, or pass --overwrite_output_dir to start afresh") from None
        except Exception as err:  # noqa: BLE001 - any unreadable file: try the previous checkpoint
            reason = str(err) if isinstance(err, CorruptCheckpoint) else f"{directory} cannot be loaded ({type(err).__name__}: {err})"
            reason = reason.splitlines()[0] if reason else type(err).__name__
            if explicit:
                raise ConfigError(f"{flag}: {reason}; pass an earlier checkpoint "
                                  f"(see {checkpoint_root(args.output_dir)})") from None  # fmt: skip
            if k + 1 == len(candidates):
                raise ConfigError(f"--resume: no readable checkpoint in {checkpoint_root(args.output_dir)} (the oldest: "
                                  f"{reason}); pass --overwrite_output_dir to start afresh") from None  # fmt: skip
            logger.warning("--resume: %s; resuming from the previous checkpoint %s instead", reason, candidates[k + 1])
            continue
        if continuing:
            _start_continuation(setup, state, directory)
            return state
        if setup.semi is not None and setup.semi.load(directory):
            logger.info("resumed the PL cache: %d entries, %d refreshes so far", len(setup.semi.state.entries),
                        setup.semi.state.refreshes)  # fmt: skip
        logger.info("resumed from %s at update %d (epoch %d, batch %d)", directory, state.step, state.epoch,
                    state.batches_consumed)  # fmt: skip
        return state
    # A fresh run: the crop warm-up (if any) plans the first epoch's batches for cropped lengths.
    return TrainerState(epoch_cropped=args.crop_steps > 0)


def _start_continuation(setup: Setup, state: TrainerState, directory: str) -> None:
    """After loading another run's checkpoint (--continue_from): this run goes on from its update, weights,
    optimizer moments and data position, with its own LR phase (ContinuedSchedule) and its own best model."""
    args, scheduler = setup.args, setup.scheduler
    if state.step >= args.max_steps:
        raise ConfigError(f"--continue_from {directory} is at update {state.step}: nothing left to train with "
                          f"--max_steps {args.max_steps}")  # fmt: skip
    schedule = scheduler.lr_lambdas[0]
    schedule.start_step = state.step
    schedule.start_factor = scheduler.get_last_lr()[0] / args.learning_rate  # where the other run left the LR
    scheduler.base_lrs = [args.learning_rate] * len(scheduler.base_lrs)
    for group in setup.optimizer.param_groups:
        group["initial_lr"] = args.learning_rate
    # The other run's dev evaluations chose its own model (its row in the report); this run's best model is
    # chosen among its own evaluations, and BEST_DIR of the other run is not here anyway.
    state.best_metric = state.best_step = None
    logger.info("continuing %s at update %d (epoch %d, batch %d), learning rate %.3g -> %.3g over %d updates",
                directory, state.step, state.epoch, state.batches_consumed, scheduler.get_last_lr()[0],
                args.learning_rate, args.warmup_steps)  # fmt: skip


def _started_with(output_dir: str) -> str:
    """", the run in DIR was started with --preset small" from its training_args.json, if readable."""
    try:
        with open(os.path.join(output_dir, "training_args.json")) as f:
            old = json.load(f)
    except (OSError, ValueError):
        return ""
    how = f"--preset {old['preset']}" if old.get("preset") else f"--init_from {old.get('init_from')}"
    return f" (the run in {output_dir} was started with {how})"


def open_logs(setup: Setup, state: TrainerState, model_args: ModelArguments, data_args: DataArguments) -> Logs:
    """Metrics log (truncated to the resumed update), training_args.json, batch-id log, progress bar."""
    args = setup.args
    metrics = MetricsLog(args.output_dir, enabled=setup.is_main, tensorboard=args.tensorboard, truncate_after=state.step)
    if setup.is_main:
        with open(os.path.join(args.output_dir, "training_args.json"), "w") as f:
            json.dump(arguments_to_dict(model_args, data_args, args) | {"num_threads": setup.threads,
                      "num_processes": setup.accelerator.num_processes, "training_mode": _mode(setup.semi)}, f, indent=2)  # fmt: skip
        for stat in setup.train_set.stats:
            metrics.text("data", stat.line())
    batch_ids = open_batch_id_log(args.output_dir, setup.accelerator.process_index, state.step) if args.log_batch_ids else None
    progress = tqdm(total=args.max_steps, initial=state.step, disable=not setup.is_main, desc="training", unit="upd")
    return Logs(metrics, progress, batch_ids)


def open_batch_id_log(output_dir: str, rank: int, step: int) -> ShardWriter:
    """This process's batch-id log (one row per micro-batch: the update it is trained in, epoch, kind,
    ids), cut to the rows of updates before `step`, where the run starts: rows written after the
    checkpoint it resumes from were lost with that update, and are written again. Rows are flushed per
    batch (a killed process loses none) and fsync'd with each checkpoint (save_checkpoint)."""
    path = os.path.join(output_dir, f"batch_ids.rank{rank}.jsonl")
    removed, last = truncate_shard(path, lambda row: row["step"] < step)
    if removed:
        logger.info("%s: removed %d row(s) of updates from %d on, which this run does again", path, removed, step)
    if step > 0 and (last is None or last["step"] < step - 1):
        listed = "none" if last is None else f"updates up to {last['step'] + 1}"
        logger.warning("%s lists %s, but the run resumes after update %d: the batches in between are not listed "
                       "(was --log_batch_ids off before?)", path, listed, step)  # fmt: skip
    return ShardWriter(path, fsync=False)


# --------------------------------------------------------------------------------------------- the loop
def train_one_epoch(setup: Setup, loop: Loop, step_callback: Callable[[TrainerState], None] | None = None) -> None:
    """Train until the epoch's batches run out, the crop warm-up ends (its batches were planned for
    cropped lengths) or max_steps is reached; logs, evaluates and checkpoints on the way."""
    args, state = setup.args, loop.state
    cropped = state.epoch_cropped
    params = [p for p in setup.model.parameters() if p.requires_grad]
    for batch in _with_unlabeled_batches(_epoch_loader(setup, state), setup.semi, state, setup.unwrapped):
        kind = batch.get("kind", "labeled")
        state.batches_consumed += kind == "labeled"
        loop.micro += 1
        if setup.logs.batch_ids is not None:
            setup.logs.batch_ids.write([{"step": state.step, "epoch": state.epoch, "kind": kind, "ids": batch["ids"]}])
        _train_micro_batch(setup.model, batch, params, setup.accelerator, args, state, loop.micro, loop.window)
        if loop.micro % args.gradient_accumulation_steps:
            continue
        _optimizer_step(setup, loop)
        end_epoch_early = cropped and state.step >= args.crop_steps
        _after_update(setup, loop, end_epoch_early)
        if step_callback is not None:
            step_callback(state)
        if state.step >= args.max_steps or end_epoch_early:
            return
    state.epoch += 1
    state.batches_consumed = 0
    state.epoch_cropped = args.crop_steps > 0 and state.step < args.crop_steps


def _epoch_loader(setup: Setup, state: TrainerState):
    """This epoch's batches, from the sampler position a resumed run stopped at. One DataLoader per
    batch plan (cropped or not) serves every epoch: its workers persist, and with them their feature
    caches (a new loader per epoch re-spawned the workers and lost the caches at every epoch). The crop
    warm-up's loader is let go when it is over (it never comes back)."""
    args = setup.args
    sampler = setup.samplers[state.epoch_cropped]
    sampler.set_epoch(state.epoch)
    if state.batches_consumed:
        try:
            sampler.load_state_dict({**(state.sampler_state or sampler.state_dict()), "epoch": state.epoch,
                                     "batches_consumed": state.batches_consumed})  # fmt: skip
        except ValueError as err:
            raise ConfigError(f"cannot resume mid-epoch: {err} (did the training data or batch size change?)") from None
    if not state.epoch_cropped:
        setup.loaders.pop(True, None)  # shuts its workers down
    loader = setup.loaders.get(state.epoch_cropped)
    if loader is None:
        tagged = TaggedBatchSampler(sampler, state.epoch_cropped, args.seed, state.epoch, state.batches_consumed)
        loader = make_loader(setup.train_set, tagged, setup.processor, args.dataloader_num_workers,
                             pin_memory=setup.accelerator.device.type == "cuda")  # fmt: skip
        setup.loaders[state.epoch_cropped] = loader
    else:
        loader.batch_sampler.set_position(state.epoch, state.batches_consumed)
    return loader


def _with_unlabeled_batches(loader, semi: SlimIPL | None, state: TrainerState, model):
    """The labelled loader's batches, with the PL cache's unlabelled batches put in front of a labelled one
    whenever the coming update is an unlabelled one (see SlimIPLConfig.is_unlabeled_update). A labelled
    batch fetched but not trained on when the loop stops is fetched again on resume (it is not counted)."""
    for batch in loader:
        if semi is not None and state.step >= semi.config.start_step:
            semi.apply_dropout(model)
            while semi.config.is_unlabeled_update(state.step):
                yield semi.next_batch()
        yield batch


def _train_micro_batch(model, batch: dict, params, accelerator: Accelerator, args: MLPLTrainingArguments,
                       state: TrainerState, micro: int, window: "_Window") -> None:  # fmt: skip
    """Forward + backward of one batch (loss scaled for accumulation). Nothing here reads a value back
    from the device: on a GPU every read makes the host wait before it can collate the next batch."""
    state.skipped_audio += batch["n_skipped"]
    window.skipped += batch["n_skipped"]
    window.kinds[batch.get("kind", "labeled")] += 1
    sync = micro % args.gradient_accumulation_steps == 0
    context = accelerator.no_sync(model) if not sync else contextlib.nullcontext()
    with context:
        if "input_features" not in batch:
            # Every example unreadable: a zero loss touching all parameters keeps DDP's all-reduce in step.
            loss = sum(p.sum() for p in params) * 0.0
            accelerator.backward(loss)
            return
        device = accelerator.device
        features = batch["input_features"].to(device, non_blocking=True)  # pinned on CUDA: copies overlap
        mask = batch["attention_mask"].to(device, non_blocking=True)
        if batch.get("specaugment", 0 <= args.specaugment_start_step <= state.step):
            key = batch.get("augment_key", (args.seed, state.epoch, state.batches_consumed, accelerator.process_index))
            generator = torch.Generator().manual_seed(hash(key) % 2**63)
            lengths = batch["attention_mask"].sum(-1)  # on the host: spec_augment reads each length
            features = spec_augment(features, lengths, args.num_freq_masks, args.freq_mask_width, args.num_time_masks,
                                    args.time_mask_width, args.time_mask_max_ratio, generator)  # fmt: skip
        out = model(input_features=features, attention_mask=mask, labels=batch["labels"].to(device, non_blocking=True),
                    language_labels=batch["language_labels"].to(device, non_blocking=True))  # fmt: skip
        accelerator.backward(out.loss / args.gradient_accumulation_steps)
    window.add(out, batch)
    state.audio_seconds += batch["audio_seconds"]


def _optimizer_step(setup: Setup, loop: Loop) -> None:
    """Clip, step the optimiser and the schedule: one update."""
    args = setup.args
    grad_norm = None
    if args.max_grad_norm > 0:  # a tensor: read (a host-device sync) only when the window is logged
        grad_norm = setup.accelerator.clip_grad_norm_(setup.model.parameters(), args.max_grad_norm).detach()
    setup.optimizer.step()
    setup.scheduler.step()
    setup.optimizer.zero_grad(set_to_none=True)
    loop.state.step += 1
    setup.logs.progress.update(1)
    loop.window.grad_norm = grad_norm


def _after_update(setup: Setup, loop: Loop, end_epoch_early: bool) -> None:
    """Log line, evaluation and checkpoint when due. `end_epoch_early`: the crop warm-up is over, the
    rest of this epoch was planned for cropped lengths, so a new epoch starts (and is checkpointed)."""
    args, state, logs = setup.args, loop.state, setup.logs
    if state.step % args.logging_steps == 0 or state.step == args.max_steps:
        record = loop.window.flush(setup.accelerator, setup.scheduler.get_last_lr()[0], state)
        if setup.semi is not None:
            record.update(setup.semi.log_fields())
        logs.metrics.train(state.step, record)
        logs.progress.set_postfix(loss=f"{record['loss']:.3f}", audio_s_per_s=f"{record['audio_seconds_per_second']:.0f}")
    if (args.eval_steps and state.step % args.eval_steps == 0) or state.step == args.max_steps:
        evaluate(setup, loop)
    if state.step % args.save_steps == 0 or state.step == args.max_steps or end_epoch_early:
        if end_epoch_early:
            state.epoch, state.batches_consumed, state.epoch_cropped = state.epoch + 1, 0, False
        save_checkpoint(setup, state)


def evaluate(setup: Setup, loop: Loop) -> dict | None:
    """Dev-set CER on the main process (others wait); keeps the best model in BEST_DIR."""
    if setup.dev is None:
        return None
    args, state = setup.args, loop.state
    result = None
    if setup.is_main:
        result = evaluate_dev_set(setup.unwrapped, setup.processor, setup.dev, args.eval_max_batch_seconds or 2 * args.max_batch_seconds,
                                setup.accelerator.device, setup.accelerator.autocast)  # fmt: skip
        setup.logs.metrics.eval(state.step, result)
        if state.best_metric is None or result["mean_cer"] < state.best_metric:
            state.best_metric, state.best_step = result["mean_cer"], state.step
            best = os.path.join(args.output_dir, BEST_DIR)
            setup.unwrapped.save_pretrained(best)
            setup.processor.save_pretrained(best)
        setup.logs.progress.set_postfix(dev_cer=f"{result['mean_cer']:.3f}")
        loop.last_eval = result
    setup.accelerator.wait_for_everyone()
    return result


def save_checkpoint(setup: Setup, state: TrainerState) -> None:
    """accelerator.save_state + the PL cache + trainer_state.json, written last by the main process once
    every process has saved its part: it marks the checkpoint complete. The batch-id log is fsync'd
    first, so a complete checkpoint never lists fewer batches than it trained on."""
    if setup.logs.batch_ids is not None:
        setup.logs.batch_ids.sync()
    directory = checkpoint_dir(setup.args.output_dir, state.step)
    setup.accelerator.save_state(directory)
    state.sampler_state = setup.samplers[state.epoch_cropped].state_dict(state.batches_consumed)
    if setup.semi is not None:
        setup.semi.save(directory)
    setup.accelerator.wait_for_everyone()
    if setup.is_main:
        state.save(directory)
        rotate_checkpoints(setup.args.output_dir, setup.args.save_total_limit)
    setup.accelerator.wait_for_everyone()


class _Window:
    """Running sums between two log lines (per process; summed over processes when flushed). Losses and
    the grad norm stay detached device tensors until `flush`, so that logging costs no host-device sync
    per micro-batch."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.loss = self.ctc = self.lid = 0.0
        self.batches = 0
        self.audio = self.padded = 0.0
        self.skipped = 0
        self.utterances = 0
        self.kinds = {"labeled": 0, "unlabeled": 0}
        self.grad_norm = None
        self.started = time.perf_counter()

    def add(self, out, batch: dict) -> None:
        self.loss = self.loss + out.loss.detach().double()
        if out.ctc_loss is not None:
            self.ctc = self.ctc + out.ctc_loss.detach().double()
        if out.lid_loss is not None:
            self.lid = self.lid + out.lid_loss.detach().double()
        self.batches += 1
        self.audio += batch["audio_seconds"]
        self.padded += batch["padded_seconds"]
        self.utterances += len(batch["ids"])

    def flush(self, accelerator: Accelerator, lr: float, state: TrainerState) -> dict:
        sums = torch.tensor([float(self.loss), float(self.ctc), float(self.lid), self.batches, self.audio, self.padded, self.skipped,
                             self.utterances, self.kinds["labeled"], self.kinds["unlabeled"]], dtype=torch.float64)  # fmt: skip
        if accelerator.num_processes > 1:
            sums = accelerator.reduce(sums.to(accelerator.device), "sum").cpu()
        loss, ctc, lid, batches, audio, padded, skipped, utts, labeled, unlabeled = sums.tolist()
        elapsed = time.perf_counter() - self.started
        record = {
            "loss": loss / max(batches, 1),
            "ctc_loss": ctc / max(batches, 1),
            "lid_loss": lid / max(batches, 1),
            "learning_rate": lr,
            "grad_norm": None if self.grad_norm is None else float(self.grad_norm),
            "epoch": state.epoch,
            "cropping": state.epoch_cropped,
            "audio_seconds_per_second": audio / elapsed if elapsed > 0 else 0.0,
            "padding_fraction": 1.0 - audio / padded if padded else 0.0,
            "utterances": int(utts),
            "skipped_audio": int(skipped),
            "labeled_batches": int(labeled),
            "unlabeled_batches": int(unlabeled),
        }
        self.reset()
        return record



# ---------------------------------------------------------------------------------------------- the end
def finish(setup: Setup, loop: Loop) -> TrainResult:
    """Close the logs, export the model (main process) and remove the run's scratch folder. The barriers
    keep the other processes from returning before the export they may read is written."""
    logs, state = setup.logs, loop.state
    logs.progress.close()
    if logs.batch_ids is not None:
        logs.batch_ids.close()
    setup.accelerator.wait_for_everyone()
    if setup.is_main:
        export_model(setup, loop)
    logs.metrics.close()
    setup.accelerator.wait_for_everyone()
    shutil.rmtree(setup.work_dir, ignore_errors=True)
    return TrainResult(setup.args.output_dir, state.step, state.best_metric, state.best_step, loop.last_eval,
                       setup.train_set.stats, state.skipped_audio)  # fmt: skip


def export_model(setup: Setup, loop: Loop) -> None:
    """The final (or best) model + processor and train_results.json in output_dir (main process)."""
    args, state = setup.args, loop.state
    best = os.path.join(args.output_dir, BEST_DIR)
    if args.load_best_model_at_end and state.best_step is not None and os.path.isdir(best):
        logger.info("exporting the best checkpoint (update %d, mean dev CER %.4f)", state.best_step, state.best_metric)
        exported = MLPLForCTC.from_pretrained(best)
    else:
        exported = setup.unwrapped
    exported.save_pretrained(args.output_dir)
    setup.processor.save_pretrained(args.output_dir)
    summary = {
        "step": state.step,
        "updates_this_run": state.step - loop.start_step,
        "best_metric_mean_dev_cer": state.best_metric,
        "best_step": state.best_step,
        "skipped_unreadable_audio": state.skipped_audio,
        "audio_hours_seen": state.audio_seconds / 3600,
        "data": [s.__dict__ for s in setup.train_set.stats],
        "mode": _mode(setup.semi),
        "slimipl": setup.semi.summary() if setup.semi is not None else None,
        "last_eval": {k: v for k, v in (loop.last_eval or {}).items() if k != "predictions"},
    }
    with open(os.path.join(args.output_dir, "train_results.json"), "w") as f:
        json.dump(summary, f, indent=2)


def _mode(semi: SlimIPL | None) -> str:
    """The training mode named in training_args.json and train_results.json."""
    return "supervised" if semi is None else "semi_supervised"


__all__ = ["train", "TrainResult", "Setup", "Logs", "Loop", "configure_threads", "build_model_and_processor",
           "build_training_set", "build_optimizer", "build_scheduler", "ContinuedSchedule", "optimizer_kernels", "resolve_mixed_precision", "needs_unused_parameters",
           "build_slimipl", "load_sources", "setup_run", "resume_run", "open_logs", "train_one_epoch", "evaluate",
           "save_checkpoint", "finish", "export_model", "BEST_DIR"]  # fmt: skip
