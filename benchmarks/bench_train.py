#!/usr/bin/env python
"""Training throughput (audio seconds per wall second) of mlpl's trainer against a plain PyTorch loop.

    python benchmarks/bench_train.py --quick                  # ~1-2 min on 2 cores: tiny preset, 1 thread
    python benchmarks/bench_train.py [--corpus DIR] [--presets tiny small] [--threads 1 2] [--steps 40]
    python benchmarks/bench_train.py --quick --dataloader_num_workers 1   # data work beside the model

Reference, in the same run: a plain PyTorch loop (forward, backward, clip, AdamW, scheduler) over the same
model (same preset, tokenizer and languages), the same batches (the trainer's length-bucketed sampler,
same seed, features pre-computed once) and the same optimizer settings. mlpl's trainer
(`modeling_mlpl.training.train`) is then run on the same data, its throughput read from its log (first
logging window skipped: warm-up), and reported as a ratio to the reference:
  - stage-1-like: uncropped Common Voice utterances (features cached after their first use);
  - stage-4-like: the same labels + aligned long recordings cut into random 10 s crops (a crop is never
    the same twice: its features are sliced from its whole recording's log-mel frames, computed once and
    cached), as stage 4 of the recipe trains.
The stage-4-like run is also profiled: wall time per update split into data loading (audio decoding +
crop, log-mel features, collation), forward (encoder, CTC loss, LID head + loss), backward, clipping,
optimizer and logging, with timers around the trainer's own functions (patched for the run, restored
after; trainer.py is not changed). Results: benchmarks/results/train.md and .json.

Data: a small espeak-ng corpus (tiny preset languages, a few minutes each; generated under data/ if
missing). Run it on idle cores: with another process on a core, 2 threads collapse (docs/results.md, "The prototype").
On a GPU the timers measure launch, not execution, unless `--sync_cuda` is given (costs a sync each).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import get_scheduler  # noqa: E402

from modeling_mlpl.data.sampler import LengthBucketBatchSampler  # noqa: E402
from modeling_mlpl.training import (  # noqa: E402
    DataArguments,
    MLPLTrainingArguments,
    ModelArguments,
    read_log,
    resolve_data,
    train,
)
from modeling_mlpl.training.train_data import SpeechCollator, TaggedBatchSampler  # noqa: E402
from modeling_mlpl.training.trainer import (  # noqa: E402
    build_model_and_processor,
    build_optimizer,
    build_training_set,
    configure_threads,
    load_sources,
)

# Corpus of the benchmark: the tiny preset's languages (3 scripts), a few minutes of labels each and
# a few long recordings per target (stage-4-like crops). ~12 min of audio, seconds to synthesise.
BENCH_CORPUS = {"high_train_minutes": 3.0, "low_train_minutes": 2.0, "low_unlabelled_minutes": 4.0}
WARMUP_UPDATES = 5  # = the logging window: the first window of every run is skipped
PLAIN = "plain PyTorch loop (pre-computed features)"
STAGE1 = "mlpl trainer, stage-1-like (uncropped, feature cache)"
STAGE4 = "mlpl trainer, stage-4-like (labels + 10 s crops of long recordings)"
PLAIN4 = "plain PyTorch loop, stage-4-like batches (same crops, pre-computed features)"


# --------------------------------------------------------------------------------------------- data
def default_corpus(root: str | None = None) -> str:
    """The benchmark corpus root (with cv/ and voxpopuli/), generated once."""
    from modeling_mlpl.synthetic.corpus import PRESETS, generate_corpus

    root = root or os.path.join(REPO, "data", "synthetic-bench-train")
    if not os.path.exists(os.path.join(root, "manifest.json")):
        generate_corpus(root, PRESETS["tiny"].replace(**BENCH_CORPUS), seed=0)
    return root


def write_aligned_recordings(corpus_root: str, out: str) -> str | None:
    """The corpus's long recordings with their true transcripts as a pseudo-label dataset (PL_FEATURES)
    whose token times are spread evenly over each recording: enough for the crop code path and its cost,
    not an alignment anyone should learn from. None when the corpus has no long recordings."""
    from modeling_mlpl.data.voxpopuli import load_unlabelled_truth, load_voxpopuli_unlabelled
    from modeling_mlpl.pseudo_labeling.merge import records_to_dataset

    vp = os.path.join(corpus_root, "voxpopuli")
    if not os.path.isdir(os.path.join(vp, "unlabelled_data")):
        return None
    truth = load_unlabelled_truth(vp)
    records = []
    for row in load_voxpopuli_unlabelled(vp):
        text = truth.get(row["id"], "")
        if not text:
            continue
        times = np.linspace(0.0, row["duration"], len(text), endpoint=False).tolist()
        records.append({"id": row["id"], "audio": row["audio"]["path"], "offset": 0.0, "duration": row["duration"],
                        "language": row["language"], "text": text, "confidence": 1.0, "token_times": times})  # fmt: skip
    if not records:
        return None
    records_to_dataset(records).save_to_disk(out)
    return out


def training_args(out: str, steps: int, threads: int, batch_seconds: float, precision: str, workers: int = 0,
                  **extra) -> MLPLTrainingArguments:  # fmt: skip
    """The settings every run of the benchmark shares (the reference loop reads the same object)."""
    settings = dict(
        output_dir=out, overwrite_output_dir=True, max_steps=steps, max_batch_seconds=batch_seconds,
        optimizer="adamw", learning_rate=1e-3, warmup_steps=5, specaugment_start_step=-1, crop_steps=0,
        logging_steps=WARMUP_UPDATES, eval_steps=0, save_steps=10 * steps, num_threads=threads, tensorboard=False,
        mixed_precision=precision, dataloader_num_workers=workers,
    )  # fmt: skip
    return MLPLTrainingArguments(**{**settings, **extra})


def precomputed_batches(data: DataArguments, model_args: ModelArguments, args: MLPLTrainingArguments, work: str,
                        crop: bool = False):  # fmt: skip
    """The model and the first `args.max_steps` batches the trainer would draw (its sampler, seed and
    crop keys, epoch 0 wrapping into the next), collated once with features: the reference's input."""
    torch.manual_seed(args.seed)
    sources, names = load_sources(resolve_data(data).train, data, "train")
    languages = sorted({lang for ds in sources for lang in set(ds["language"])})
    texts = [t for ds in sources for t in ds["text"]]
    model, processor = build_model_and_processor(model_args, texts, languages, work)
    train_set = build_training_set(sources, names, processor.tokenizer, model.config.languages, None,
                                   args.crop_seconds, args.seed, processor.feature_extractor, 0.0)  # fmt: skip
    durations = train_set.cropped_durations if crop else train_set.durations
    sampler = LengthBucketBatchSampler(durations, args.max_batch_seconds, seed=args.seed, shuffle=True,
                                       max_batch_size=args.max_batch_size)  # fmt: skip
    collate = SpeechCollator(processor)
    batches, epoch = [], 0
    while len(batches) < args.max_steps:
        sampler.set_epoch(epoch)
        for items in TaggedBatchSampler(sampler, crop, args.seed, epoch, 0):
            batches.append(collate([train_set[item] for item in items]))
            if len(batches) == args.max_steps:
                break
        epoch += 1
    return model, batches


def plain_loop(model: torch.nn.Module, batches: list[dict], args: MLPLTrainingArguments) -> list[float]:
    """The reference: the textbook PyTorch training loop, nothing else (no logging, no checkpoints).
    Returns the audio-s/s of each window of `args.logging_steps` updates after the first (warm-up),
    windows as the trainer's log has them."""
    device = torch.device("cuda" if torch.cuda.is_available() and not args.use_cpu else "cpu")
    model = model.to(device).train()
    optimizer = build_optimizer(model, args)
    scheduler = get_scheduler(args.lr_scheduler_type, optimizer, num_warmup_steps=args.warmup_steps,
                              num_training_steps=args.max_steps)  # fmt: skip
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.mixed_precision)
    keys = ("input_features", "attention_mask", "labels", "language_labels")
    windows, audio, start = [], 0.0, time.perf_counter()
    for n, batch in enumerate(batches, start=1):
        inputs = {k: batch[k].to(device, non_blocking=True) for k in keys}
        autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
        with autocast:
            loss = model(**inputs).loss
        loss.backward()
        if args.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        audio += batch["audio_seconds"]
        if n % args.logging_steps == 0:
            _sync(device)
            now = time.perf_counter()
            windows.append(audio / (now - start))
            audio, start = 0.0, now
    return windows[1:]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# ------------------------------------------------------------------------------------------ profile
class StageTimers:
    """Wall time spent inside named functions of the trainer, per update after the warm-up.

    Functions are wrapped on their classes/modules for the duration of `patched()`. Stages marked
    "(part of ...)" run inside another one (e.g. features inside dataset access); `other` is the whole
    update minus the `EXCLUSIVE` stages, which never overlap."""

    def __init__(self, sync_cuda: bool = False):
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.active = False
        self.sync_cuda = sync_cuda and torch.cuda.is_available()
        self.update_start: float | None = None
        self.update_seconds: list[float] = []

    @staticmethod
    def targets() -> dict[str, tuple[object, str]]:
        """Stage name -> (class or module, attribute) to time."""
        import torch.nn.functional as F
        from accelerate import Accelerator
        from accelerate.optimizer import AcceleratedOptimizer

        from modeling_mlpl import modeling_mlpl as modeling
        from modeling_mlpl.feature_extraction_mlpl import MLPLFeatureExtractor
        from modeling_mlpl.training import train_data as data, trainer
        from modeling_mlpl.training.tracking import MetricsLog

        return {
            "data: dataset item (decode + crop + features)": (data.TrainingSet, "__getitem__"),
            "data: audio decode (+ crop) when not sliced from cached frames (part of dataset item)": (data.TrainingSet, "_load"),
            "data: log-mel features of such items (part of dataset item)": (MLPLFeatureExtractor, "__call__"),
            "data: crop sliced from its recording's cached frames (part of dataset item)": (data.TrainingSet, "_crop_from_frames"),
            "data: whole recording decode + log-mel, first use only (part of the slice)": (data.TrainingSet, "_whole_frames"),
            "data: collate + label encoding": (data.SpeechCollator, "__call__"),
            "forward (whole model + losses)": (modeling.MLPLForCTC, "forward"),
            "forward: encoder (part of forward)": (modeling.MLPLModel, "forward"),
            "forward: CTC loss (part of forward)": (modeling.MLPLForCTC, "ctc_loss"),
            "forward: LID loss, cross-entropy (part of forward)": (F, "cross_entropy"),
            "backward": (Accelerator, "backward"),
            "grad-norm clipping": (Accelerator, "clip_grad_norm_"),
            "optimizer step": (AcceleratedOptimizer, "step"),
            "logging: window sums (device tensors)": (trainer._Window, "add"),
            "logging: flush + metrics log": (trainer._Window, "flush"),
            "logging: metrics log write (part of flush)": (MetricsLog, "train"),
        }

    # exclusive stages: summing them never counts a second twice
    EXCLUSIVE = (
        "data: dataset item (decode + crop + features)", "data: collate + label encoding",
        "forward (whole model + losses)", "backward", "grad-norm clipping", "optimizer step",
        "logging: window sums (device tensors)", "logging: flush + metrics log",
    )  # fmt: skip

    def _wrap(self, name: str, fn):
        timers = self

        def timed(*args, **kwargs):
            if not timers.active:
                return fn(*args, **kwargs)
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                if timers.sync_cuda:
                    torch.cuda.synchronize()
                timers.seconds[name] += time.perf_counter() - start
                timers.calls[name] += 1

        return timed

    @contextlib.contextmanager
    def patched(self) -> Iterator["StageTimers"]:
        saved = []
        try:
            for name, (owner, attr) in self.targets().items():
                original = getattr(owner, attr)
                saved.append((owner, attr, original))
                setattr(owner, attr, self._wrap(name, original))
            yield self
        finally:
            for owner, attr, original in reversed(saved):
                setattr(owner, attr, original)

    def begin_run(self) -> None:
        self.active, self.update_start = False, None

    def step_callback(self, state) -> None:
        """Called by the trainer after every update: starts timing after the warm-up."""
        if self.sync_cuda:
            torch.cuda.synchronize()
        now = time.perf_counter()
        if self.active and self.update_start is not None:
            self.update_seconds.append(now - self.update_start)
        if state.step == WARMUP_UPDATES:
            self.active = True
        self.update_start = now

    def table(self) -> list[dict]:
        updates = len(self.update_seconds)
        total = float(np.sum(self.update_seconds))
        rows = [{"stage": "whole update (wall)", "ms_per_update": 1e3 * total / updates, "share": 1.0, "calls_per_update": 1.0}]
        for name in self.targets():
            if name in self.seconds:
                rows.append({"stage": name, "ms_per_update": 1e3 * self.seconds[name] / updates,
                             "share": self.seconds[name] / total, "calls_per_update": self.calls[name] / updates})  # fmt: skip
        rest = total - sum(self.seconds[n] for n in self.EXCLUSIVE)
        rows.append({"stage": "other (loop, sampler, scheduler, DataLoader)", "ms_per_update": 1e3 * rest / updates,
                     "share": rest / total, "calls_per_update": None})  # fmt: skip
        return rows


# --------------------------------------------------------------------------------------------- runs
def run_trainer(data: DataArguments, model_args: ModelArguments, args: MLPLTrainingArguments,
                timers: StageTimers | None = None) -> list[float]:  # fmt: skip
    """One run of mlpl's trainer; the audio-s/s of its logged windows after the first (warm-up)."""
    if timers is None:
        train(model_args, data, args)
    else:
        timers.begin_run()
        with timers.patched():
            train(model_args, data, args, step_callback=timers.step_callback)
    records = [r for r in read_log(args.output_dir) if r["type"] == "train"][1:]
    return [r["audio_seconds_per_second"] for r in records]


def run_config(corpus: str, preset: str, threads: int, steps: int, batch_seconds: float, precision: str,
               aligned: str | None, repeats: int, sync_cuda: bool = False, workers: int = 0
               ) -> tuple[list[dict], list[dict]]:  # fmt: skip
    """Stage-1-like and stage-4-like rows for one (preset, threads, precision), each with its plain-loop
    reference over the same batches, and the stage-4-like profile. The runs alternate `repeats` times, so that load from other processes
    on a shared machine falls on all of them alike; each row is the median over all their windows."""
    configure_threads(threads)
    cv_root = os.path.join(corpus, "cv")
    work = tempfile.mkdtemp(prefix="bench-train-")
    common = {"preset": preset, "threads": threads, "mixed_precision": precision, "updates": steps, "repeats": repeats,
              "dataloader_num_workers": workers}
    try:
        model_args = ModelArguments(preset=preset)
        data = DataArguments(train_data=[f"cv:{cv_root}@train"])
        args = training_args(os.path.join(work, "s1"), steps, threads, batch_seconds, precision, workers)
        model, batches = precomputed_batches(data, model_args, args, work)
        runs = {PLAIN: lambda: plain_loop(copy.deepcopy(model), batches, args),
                STAGE1: lambda: run_trainer(data, model_args, args)}  # fmt: skip
        reference_of = {PLAIN: PLAIN, STAGE1: PLAIN}
        timers = StageTimers(sync_cuda)
        if aligned is not None:
            data4 = DataArguments(train_data=[f"cv:{cv_root}@train", f"disk:{aligned}"])
            args4 = training_args(os.path.join(work, "s4"), steps, threads, batch_seconds, precision, workers,
                                  crop_steps=10 * steps)  # fmt: skip
            model4, batches4 = precomputed_batches(data4, model_args, args4, work, crop=True)
            runs[PLAIN4] = lambda: plain_loop(copy.deepcopy(model4), batches4, args4)
            runs[STAGE4] = lambda: run_trainer(data4, model_args, args4, timers)
            reference_of.update({PLAIN4: PLAIN4, STAGE4: PLAIN4})
        windows: dict[str, list[float]] = defaultdict(list)
        for _ in range(repeats):
            for name, run in runs.items():
                windows[name] += run()
        medians = {name: float(np.median(values)) for name, values in windows.items()}
        rows = []
        for name, values in windows.items():
            rows.append({**common, "run": name, "audio_seconds_per_second": medians[name],
                         "ratio_to_plain_loop": medians[name] / medians[reference_of[name]],
                         "reference": reference_of[name], "best_window": float(np.max(values)),
                         "windows": values})  # fmt: skip
        return rows, (timers.table() if timers.update_seconds else [])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def to_markdown(rows: list[dict], profiles: dict[str, list[dict]], meta: dict) -> str:
    lines = [
        "# Training throughput: mlpl's trainer against a plain PyTorch loop",
        "",
        f"Command: `{meta['command']}`  ",
        f"Data: {meta['corpus']}; batches of <= {meta['batch_seconds']} s padded audio; AdamW lr 1e-3, clip 0.1; "
        f"{meta['steps']} updates per run, {meta['repeats']} repeats; trainer loader workers: {meta['dataloader_num_workers']}. "
        f"Machine: {meta['machine']}.",
        "Ratio = audio-s/s of the run / audio-s/s of the plain loop over the same model, batches (same crops) and",
        "optimizer, in the same process; the plain loop's features are computed before it starts.",
        "",
        "The four runs alternate `repeats` times; audio-s/s is the median",
        f"over all their logging windows of {WARMUP_UPDATES} updates, the first window of each run skipped.",
        "",
        "| preset | threads | precision | run | audio-s / s (median) | best window | ratio to plain loop |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['preset']} | {r['threads']} | {r['mixed_precision']} | {r['run']} | "
                     f"{r['audio_seconds_per_second']:.1f} | {r['best_window']:.1f} | {r['ratio_to_plain_loop']:.2f} |")  # fmt: skip
    for key, profile in profiles.items():
        if not profile:
            continue
        lines += ["", f"## Profile of one stage-4-like update ({key})", "",
                  "Rows marked (part of ...) are included in that row; `other` = the whole update minus the rows "
                  "not so marked.", "",
                  "| stage | ms / update | share of the update | calls / update |", "|---|---|---|---|"]  # fmt: skip
        for p in profile:
            calls = "" if p["calls_per_update"] is None else f"{p['calls_per_update']:.1f}"
            lines.append(f"| {p['stage']} | {p['ms_per_update']:.1f} | {100 * p['share']:.1f} % | {calls} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny preset, 1 thread, 25 updates, 2 repeats (~1.5 min on 2 cores)")
    parser.add_argument("--corpus", default=None, help="synthetic corpus root with cv/ (+ voxpopuli/); default: generated")
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--mixed_precision", nargs="+", default=["no"], help="e.g. no bf16")
    parser.add_argument("--steps", type=int, default=40, help="updates per run")
    parser.add_argument("--repeats", type=int, default=3, help="alternating rounds of the runs (shared machines)")
    parser.add_argument("--batch_seconds", type=float, default=30.0)
    parser.add_argument("--sync_cuda", action="store_true", help="synchronise CUDA in the profile's timers")
    parser.add_argument("--dataloader_num_workers", type=int, default=0, help="the trainer runs' loader workers")
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "train"))
    args = parser.parse_args(argv)
    if args.quick:
        args.presets, args.threads, args.steps, args.repeats = ["tiny"], [1], 25, 2
    if any(t < 1 for t in args.threads) or args.steps < 3 * WARMUP_UPDATES or args.repeats < 1:
        parser.error(f"--threads and --repeats must be >= 1 and --steps >= {3 * WARMUP_UPDATES}")
    if args.corpus is not None and not os.path.isdir(os.path.join(args.corpus, "cv")):
        parser.error(f"--corpus {args.corpus} has no cv/ folder")
    corpus = args.corpus or default_corpus()
    aligned_dir = tempfile.mkdtemp(prefix="bench-train-aligned-")
    try:
        aligned = write_aligned_recordings(corpus, os.path.join(aligned_dir, "dataset"))
        rows, profiles = [], {}
        for preset in args.presets:
            for precision in args.mixed_precision:
                for threads in args.threads:
                    result, profile = run_config(corpus, preset, threads, args.steps, args.batch_seconds, precision,
                                                 aligned, args.repeats, args.sync_cuda, args.dataloader_num_workers)  # fmt: skip
                    for row in result:
                        print(json.dumps({k: v for k, v in row.items() if k != "windows"}), flush=True)
                    rows += result
                    profiles[f"{preset}, {threads} thread(s), precision {precision}"] = profile
    finally:
        shutil.rmtree(aligned_dir, ignore_errors=True)
    meta = {
        "command": "python benchmarks/bench_train.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "corpus": os.path.relpath(corpus, REPO) if corpus.startswith(REPO) else corpus,
        "steps": args.steps,
        "repeats": args.repeats,
        "dataloader_num_workers": args.dataloader_num_workers,
        "load_average_at_end": os.getloadavg()[0],
        "batch_seconds": args.batch_seconds,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
        + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""),
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump({"meta": meta, "results": rows, "profiles": profiles}, f, indent=2)
    with open(args.out + ".md", "w") as f:
        f.write(to_markdown(rows, profiles, meta))
    print(to_markdown(rows, profiles, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
