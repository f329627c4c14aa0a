"""The training loop (stages 1, 2 and 4 of the recipe) on Accelerate: one CPU, several processes, GPUs.

Why a hand-written loop rather than `transformers.Trainer`: batches are planned by seconds of audio
per process (the data helper's length-bucketing sampler, already split by rank), the crop warm-up
and SpecAugment switch on and off by update number, and resume must continue from the exact batch
of the epoch. Accelerate provides devices, DDP, mixed precision and `save_state`.
"""

from __future__ import annotations

import json
import logging
import contextlib
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
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
from ..feature_extraction_mlpl import MLPLFeatureExtractor
from ..modeling_mlpl import MLPLForCTC
from ..processing_mlpl import MLPLProcessor
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
from .dev_eval import DevSet, evaluate_model
from .slimipl import SlimIPL, SlimIPLConfig, load_unlabeled_pool
from .tracking import MetricsLog

logger = logging.getLogger(__name__)

BEST_DIR = "best_model"


@dataclass
class TrainResult:
    output_dir: str
    step: int
    best_metric: float | None
    best_step: int | None
    last_eval: dict | None
    sources: list[SourceStats]
    skipped_audio: int


# ----------------------------------------------------------------------------------------------- set-up
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
                       feature_cache_gb: float = 0.0) -> TrainingSet:  # fmt: skip
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
                       feature_extractor, feature_cache_gb)  # fmt: skip


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


def _mode(semi: SlimIPL | None) -> str:
    return "supervised" if semi is None else "semi_supervised"


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


# -------------------------------------------------------------------------------------------- training
@dataclass
class _Run:
    """Everything one training run holds, passed between its steps (set-up, resume, epochs, evaluation,
    checkpoints, export), as icefall's train.py passes its `params`."""

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
    state: TrainerState = field(default_factory=TrainerState)
    log: MetricsLog | None = None
    progress: tqdm | None = None
    window: "_Window | None" = None
    ids_file: object = None
    last_eval: dict | None = None
    micro: int = 0
    start_step: int = 0
    loaders: dict = field(default_factory=dict)  # cropped? -> DataLoader, kept across epochs (see _epoch_loader)

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process


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
              data: TrainingData | None = None) -> _Run:  # fmt: skip
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
                                   args.crop_seconds, args.seed, processor.feature_extractor, args.feature_cache_gb)  # fmt: skip
    dev_sources, _ = load_sources(data.eval, data_args, "eval")
    dev = DevSet(dev_sources, data_args.max_eval_samples_per_language) if dev_sources else None
    if dev is not None and len(dev) == 0:
        dev = None

    model.to(accelerator.device)  # before the optimizer: fused kernels need the parameters on the GPU
    optimizer = build_optimizer(model, args)
    scheduler = get_scheduler(args.lr_scheduler_type, optimizer, num_warmup_steps=args.warmup_steps,
                              num_training_steps=args.max_steps)  # fmt: skip
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
    return _Run(args, accelerator, model, unwrapped, processor, optimizer, scheduler, train_set, dev, samplers, semi,
                work_dir, threads, state=TrainerState(epoch_cropped=args.crop_steps > 0))  # fmt: skip


def resume_run(run: _Run) -> None:
    """Load the checkpoint named by --resume_from_checkpoint, or the latest readable one with --resume
    (a truncated last checkpoint is named in the log and the one before it used)."""
    args = run.args
    explicit = args.resume_from_checkpoint
    candidates = [explicit] if explicit else list(reversed(list_checkpoints(args.output_dir))) if args.resume else []
    if args.resume and not explicit and not candidates:
        logger.warning("--resume: no checkpoint in %s yet, starting from scratch", args.output_dir)
    model_state = run.unwrapped.state_dict()
    for k, directory in enumerate(candidates):
        try:
            check_checkpoint(directory, model_state)
            run.accelerator.load_state(directory)
            run.state = TrainerState.load(directory)
        except CheckpointMismatch as err:
            raise ConfigError(f"cannot resume: {err}{_started_with(args.output_dir)}; resume with the same --preset/"
                              "--init_from/--tokenizer_dir, or pass --overwrite_output_dir to start afresh") from None
        except Exception as err:  # noqa: BLE001 - any unreadable file: try the previous checkpoint
            reason = str(err) if isinstance(err, CorruptCheckpoint) else f"{directory} cannot be loaded ({type(err).__name__}: {err})"
            reason = reason.splitlines()[0] if reason else type(err).__name__
            if explicit:
                raise ConfigError(f"--resume_from_checkpoint: {reason}; pass an earlier checkpoint "
                                  f"(see {checkpoint_root(args.output_dir)})") from None  # fmt: skip
            if k + 1 == len(candidates):
                raise ConfigError(f"--resume: no readable checkpoint in {checkpoint_root(args.output_dir)} (the oldest: "
                                  f"{reason}); pass --overwrite_output_dir to start afresh") from None  # fmt: skip
            logger.warning("--resume: %s; resuming from the previous checkpoint %s instead", reason, candidates[k + 1])
            continue
        if run.semi is not None and run.semi.load(directory):
            logger.info("resumed the PL cache: %d entries, %d refreshes so far", len(run.semi.state.entries),
                        run.semi.state.refreshes)  # fmt: skip
        logger.info("resumed from %s at update %d (epoch %d, batch %d)", directory, run.state.step, run.state.epoch,
                    run.state.batches_consumed)  # fmt: skip
        return


def _started_with(output_dir: str) -> str:
    """", the run in DIR was started with --preset small" from its training_args.json, if readable."""
    try:
        with open(os.path.join(output_dir, "training_args.json")) as f:
            old = json.load(f)
    except (OSError, ValueError):
        return ""
    how = f"--preset {old['preset']}" if old.get("preset") else f"--init_from {old.get('init_from')}"
    return f" (the run in {output_dir} was started with {how})"


def open_logs(run: _Run, model_args: ModelArguments, data_args: DataArguments) -> None:
    """Metrics log (truncated to the resumed update), training_args.json, batch-id log, progress bar."""
    args, state = run.args, run.state
    run.log = MetricsLog(args.output_dir, enabled=run.is_main, tensorboard=args.tensorboard, truncate_after=state.step)
    if run.is_main:
        with open(os.path.join(args.output_dir, "training_args.json"), "w") as f:
            json.dump(arguments_to_dict(model_args, data_args, args) | {"num_threads": run.threads,
                      "num_processes": run.accelerator.num_processes, "training_mode": _mode(run.semi)}, f, indent=2)  # fmt: skip
        for stat in run.train_set.stats:
            run.log.text("data", stat.line())
    if args.log_batch_ids:
        run.ids_file = open(os.path.join(args.output_dir, f"batch_ids.rank{run.accelerator.process_index}.jsonl"), "a")
    run.progress = tqdm(total=args.max_steps, initial=state.step, disable=not run.is_main, desc="training", unit="upd")
    run.window = _Window()
    run.start_step = state.step


def save_checkpoint(run: _Run) -> None:
    """accelerator.save_state + the PL cache + trainer_state.json (written last: marks it complete)."""
    state = run.state
    directory = checkpoint_dir(run.args.output_dir, state.step)
    run.accelerator.save_state(directory)
    state.sampler_state = run.samplers[state.epoch_cropped].state_dict(state.batches_consumed)
    if run.semi is not None:
        run.semi.save(directory)
    if run.is_main:
        state.save(directory)
        rotate_checkpoints(run.args.output_dir, run.args.save_total_limit)
    run.accelerator.wait_for_everyone()


def evaluate(run: _Run) -> dict | None:
    """Dev-set CER on the main process (others wait); keeps the best model in BEST_DIR."""
    if run.dev is None:
        return None
    args, state = run.args, run.state
    result = None
    if run.is_main:
        result = evaluate_model(run.unwrapped, run.processor, run.dev, args.eval_max_batch_seconds or 2 * args.max_batch_seconds,
                                run.accelerator.device, run.accelerator.autocast)  # fmt: skip
        run.log.eval(state.step, result)
        if state.best_metric is None or result["mean_cer"] < state.best_metric:
            state.best_metric, state.best_step = result["mean_cer"], state.step
            best = os.path.join(args.output_dir, BEST_DIR)
            run.unwrapped.save_pretrained(best)
            run.processor.save_pretrained(best)
        run.progress.set_postfix(dev_cer=f"{result['mean_cer']:.3f}")
        run.last_eval = result
    run.accelerator.wait_for_everyone()
    return result


def _epoch_loader(run: _Run):
    """This epoch's batches, from the sampler position a resumed run stopped at. One DataLoader per
    batch plan (cropped or not) serves every epoch: its workers persist, and with them their feature
    caches (a new loader per epoch re-spawned the workers and lost the caches at every epoch). The crop
    warm-up's loader is let go when it is over (it never comes back)."""
    state, args = run.state, run.args
    sampler = run.samplers[state.epoch_cropped]
    sampler.set_epoch(state.epoch)
    if state.batches_consumed:
        try:
            sampler.load_state_dict({**(state.sampler_state or sampler.state_dict()), "epoch": state.epoch,
                                     "batches_consumed": state.batches_consumed})  # fmt: skip
        except ValueError as err:
            raise ConfigError(f"cannot resume mid-epoch: {err} (did the training data or batch size change?)") from None
    if not state.epoch_cropped:
        run.loaders.pop(True, None)  # shuts its workers down
    loader = run.loaders.get(state.epoch_cropped)
    if loader is None:
        tagged = TaggedBatchSampler(sampler, state.epoch_cropped, args.seed, state.epoch, state.batches_consumed)
        loader = make_loader(run.train_set, tagged, run.processor, args.dataloader_num_workers,
                             pin_memory=run.accelerator.device.type == "cuda")  # fmt: skip
        run.loaders[state.epoch_cropped] = loader
    else:
        loader.batch_sampler.set_position(state.epoch, state.batches_consumed)
    return loader


def train_one_epoch(run: _Run, step_callback: Callable[[TrainerState], None] | None = None) -> None:
    """Train until the epoch's batches run out, the crop warm-up ends (its batches were planned for
    cropped lengths) or max_steps is reached; logs, evaluates and checkpoints on the way."""
    args, state, accelerator = run.args, run.state, run.accelerator
    cropped = state.epoch_cropped
    params = [p for p in run.model.parameters() if p.requires_grad]
    for batch in _with_unlabeled_batches(_epoch_loader(run), run.semi, state, run.unwrapped):
        kind = batch.get("kind", "labeled")
        state.batches_consumed += kind == "labeled"
        run.micro += 1
        if run.ids_file is not None:
            run.ids_file.write(json.dumps({"step": state.step, "epoch": state.epoch, "kind": kind, "ids": batch["ids"]}) + "\n")
        _train_micro_batch(run.model, batch, params, accelerator, args, state, run.micro, run.window)
        if run.micro % args.gradient_accumulation_steps:
            continue
        _optimizer_step(run)
        end_epoch_early = cropped and state.step >= args.crop_steps
        _after_update(run, end_epoch_early)
        if step_callback is not None:
            step_callback(state)
        if state.step >= args.max_steps or end_epoch_early:
            return
    state.epoch += 1
    state.batches_consumed = 0
    state.epoch_cropped = args.crop_steps > 0 and state.step < args.crop_steps


def _optimizer_step(run: _Run) -> None:
    args = run.args
    grad_norm = None
    if args.max_grad_norm > 0:  # a tensor: read (a host-device sync) only when the window is logged
        grad_norm = run.accelerator.clip_grad_norm_(run.model.parameters(), args.max_grad_norm).detach()
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.state.step += 1
    run.progress.update(1)
    run.window.grad_norm = grad_norm


def _after_update(run: _Run, end_epoch_early: bool) -> None:
    """Log line, evaluation and checkpoint when due. `end_epoch_early`: the crop warm-up is over, the
    rest of this epoch was planned for cropped lengths, so a new epoch starts (and is checkpointed)."""
    args, state = run.args, run.state
    if state.step % args.logging_steps == 0 or state.step == args.max_steps:
        record = run.window.flush(run.accelerator, run.scheduler.get_last_lr()[0], state)
        if run.semi is not None:
            record.update(run.semi.log_fields())
        run.log.train(state.step, record)
        run.progress.set_postfix(loss=f"{record['loss']:.3f}", audio_s_per_s=f"{record['audio_seconds_per_second']:.0f}")
    if (args.eval_steps and state.step % args.eval_steps == 0) or state.step == args.max_steps:
        evaluate(run)
    if state.step % args.save_steps == 0 or state.step == args.max_steps or end_epoch_early:
        if end_epoch_early:
            state.epoch, state.batches_consumed, state.epoch_cropped = state.epoch + 1, 0, False
        save_checkpoint(run)


def export_model(run: _Run) -> None:
    """The final (or best) model + processor and train_results.json in output_dir (main process)."""
    args, state = run.args, run.state
    best = os.path.join(args.output_dir, BEST_DIR)
    if args.load_best_model_at_end and state.best_step is not None and os.path.isdir(best):
        logger.info("exporting the best checkpoint (update %d, mean dev CER %.4f)", state.best_step, state.best_metric)
        exported = MLPLForCTC.from_pretrained(best)
    else:
        exported = run.unwrapped
    exported.save_pretrained(args.output_dir)
    run.processor.save_pretrained(args.output_dir)
    summary = {
        "step": state.step,
        "updates_this_run": state.step - run.start_step,
        "best_metric_mean_dev_cer": state.best_metric,
        "best_step": state.best_step,
        "skipped_unreadable_audio": state.skipped_audio,
        "audio_hours_seen": state.audio_seconds / 3600,
        "data": [s.__dict__ for s in run.train_set.stats],
        "mode": _mode(run.semi),
        "slimipl": run.semi.summary() if run.semi is not None else None,
        "last_eval": {k: v for k, v in (run.last_eval or {}).items() if k != "predictions"},
    }
    with open(os.path.join(args.output_dir, "train_results.json"), "w") as f:
        json.dump(summary, f, indent=2)


def train(model_args: ModelArguments, data_args: DataArguments, args: MLPLTrainingArguments,
          step_callback: Callable[[TrainerState], None] | None = None) -> TrainResult:  # fmt: skip
    """Train, evaluate, checkpoint and export to `args.output_dir` (see the module docstring).

    `step_callback(state)` runs after every update (tests use it to interrupt a run).
    """
    data = validate_arguments(model_args, data_args, args)
    run = setup_run(model_args, data_args, args, data)
    resume_run(run)
    open_logs(run, model_args, data_args)
    run.model.train()
    while run.state.step < args.max_steps:
        train_one_epoch(run, step_callback)
    run.progress.close()
    if run.ids_file is not None:
        run.ids_file.close()
    run.accelerator.wait_for_everyone()
    if run.is_main:
        export_model(run)
    run.log.close()
    run.accelerator.wait_for_everyone()
    shutil.rmtree(run.work_dir, ignore_errors=True)
    state = run.state
    return TrainResult(args.output_dir, state.step, state.best_metric, state.best_step, run.last_eval, run.train_set.stats,
                       state.skipped_audio)  # fmt: skip


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


__all__ = ["train", "TrainResult", "configure_threads", "build_model_and_processor", "build_training_set",
           "build_optimizer", "optimizer_kernels", "resolve_mixed_precision", "needs_unused_parameters", "build_slimipl", "load_sources", "setup_run", "resume_run", "open_logs", "train_one_epoch",
           "evaluate", "save_checkpoint", "export_model", "BEST_DIR"]  # fmt: skip
