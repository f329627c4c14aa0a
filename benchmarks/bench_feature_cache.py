#!/usr/bin/env python
"""What the on-disk feature cache (modeling_mlpl/feature_cache.py) saves: the same short training run three
times, with no disk cache, with an empty one (cold: it computes and writes every utterance's frames) and with
the one the cold run filled (warm: the next run of the recipe on the same corpus), and what storing float32
frames changes.

    python benchmarks/bench_feature_cache.py                 # ~3-5 min on 2 shared cores (1 thread)
    python benchmarks/bench_feature_cache.py --accuracy_steps 0   # timings only

Per run: data time per update (the training set's items: decoding, log-mel features or cache reads, crops;
timed around `TrainingSet.__getitem__` with the loader in process) and wall time per update, for a
stage-1-like run (uncropped labelled utterances) and a stage-4-like one (the same labels + 10 s crops of
long aligned recordings, sliced from their whole recordings' frames). A run's in-memory caches start empty
every time, as in a new recipe step; the disk cache is what differs.

Accuracy of float32 frames (features are computed in float64, the cache stores float32): the largest
absolute difference between the normalised features of every training utterance computed directly and read
from the cache, and the dev greedy CER of the same tiny model trained `--accuracy_steps` updates (same seed)
with features each way. Results: benchmarks/results/feature_cache.md and .json.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

from bench_train import default_corpus, write_aligned_recordings  # noqa: E402
from results_io import write_results  # noqa: E402

from modeling_mlpl.feature_cache import FeatureCache  # noqa: E402
from modeling_mlpl.training import DataArguments, MLPLTrainingArguments, ModelArguments, train  # noqa: E402
from modeling_mlpl.training import train_data  # noqa: E402
from modeling_mlpl.training.trainer import build_model_and_processor, build_training_set, load_sources  # noqa: E402

RUNS = ("no disk cache", "cold cache (first run)", "warm cache (next run)")


class DataTimer:
    """Seconds spent in TrainingSet.__getitem__ while installed (the loader runs in process)."""

    def __init__(self):
        self.seconds, self.items = 0.0, 0
        self._original = train_data.TrainingSet.__getitem__

    def __enter__(self):
        original, timer = self._original, self

        def timed(dataset, item):
            start = time.perf_counter()
            try:
                return original(dataset, item)
            finally:
                timer.seconds += time.perf_counter() - start
                timer.items += 1

        train_data.TrainingSet.__getitem__ = timed
        return self

    def __exit__(self, *exc):
        train_data.TrainingSet.__getitem__ = self._original


def run_args(out: str, steps: int, cache_dir: str | None, crop: bool, **extra) -> MLPLTrainingArguments:
    settings = dict(
        output_dir=out, overwrite_output_dir=True, max_steps=steps, max_batch_seconds=30.0, optimizer="adamw",
        learning_rate=1e-3, warmup_steps=5, specaugment_start_step=-1, crop_steps=10 * steps if crop else 0,
        logging_steps=steps, eval_steps=0, save_steps=10 * steps, num_threads=1, tensorboard=False,
        feature_cache_dir=cache_dir)  # fmt: skip
    return MLPLTrainingArguments(**{**settings, **extra})


def timed_runs(corpus: str, aligned: str | None, steps: int, work: str) -> list[dict]:
    rows = []
    kinds = [("stage-1-like (uncropped labels)", False)] + ([("stage-4-like (labels + 10 s crops)", True)] if aligned else [])
    for kind, crop in kinds:
        data = DataArguments(cv_root=os.path.join(corpus, "cv"), cv_eval_split="",
                             train_datasets=[aligned] if crop else None)  # fmt: skip
        cache_dir = os.path.join(work, f"cache-{int(crop)}")
        for run in RUNS:
            directory = None if run == RUNS[0] else cache_dir
            with DataTimer() as timer:
                start = time.perf_counter()
                train(ModelArguments(preset="tiny"), data, run_args(os.path.join(work, "run"), steps, directory, crop))
                wall = time.perf_counter() - start
            rows.append({"kind": kind, "run": run, "updates": steps, "items": timer.items,
                         "data_ms_per_update": 1000 * timer.seconds / steps, "wall_s": wall,
                         "wall_ms_per_update": 1000 * wall / steps})  # fmt: skip
            print(rows[-1], flush=True)
    return rows


def feature_difference(corpus: str, work: str) -> dict:
    """Largest |direct - cached| over the normalised features of every labelled training utterance."""
    data = DataArguments(cv_root=os.path.join(corpus, "cv"))
    sources, names = load_sources(data, "train")
    texts = [t for ds in sources for t in ds["text"]]
    languages = sorted({lang for ds in sources for lang in set(ds["language"])})
    _, processor = build_model_and_processor(ModelArguments(preset="tiny"), texts, languages, work)
    sets = [build_training_set(sources, names, processor.tokenizer, languages, None, 10.0, 0, processor.feature_extractor,
                               0.0, cache) for cache in (None, FeatureCache(os.path.join(work, "cache-diff")))]  # fmt: skip
    worst, frames = 0.0, 0
    for index in range(len(sets[0])):
        a, b = (s[(index, False, ())] for s in sets)
        if a is None or b is None:
            continue
        worst = max(worst, float((a["features"] - b["features"]).abs().max()))
        frames += a["features"].shape[0]
    return {"utterances": len(sets[0]), "frames": frames, "max_abs_difference": worst}


def accuracy_runs(corpus: str, steps: int, work: str) -> list[dict]:
    """The same tiny model trained with features computed directly (float64) and from float32 frames."""
    data = DataArguments(cv_root=os.path.join(corpus, "cv"), max_eval_samples_per_language=50)
    rows = []
    for run, cache_dir in (("float64 features (no disk cache)", None), ("float32 cached frames", os.path.join(work, "cache-acc"))):
        model = ModelArguments(preset="tiny", layer_norm_first=True)
        args = run_args(os.path.join(work, "acc"), steps, cache_dir, crop=False, learning_rate=2e-3, warmup_steps=20)
        result = train(model, data, args)
        rows.append({"run": run, "updates": steps, "dev_greedy_cer": result.last_eval["mean_cer"],
                     "dev_greedy_wer": result.last_eval["mean_wer"]})  # fmt: skip
        print(rows[-1], flush=True)
    return rows


def to_markdown(timings: list[dict], difference: dict, accuracy: list[dict], meta: dict) -> str:
    lines = ["# Feature cache: the same short training run without, with a cold and with a warm disk cache", "",
             f"Command: `{meta['command']}`  ",
             f"Data: {meta['corpus']} (tiny synthetic preset); tiny model, 1 thread, batches of <= 30 s, "
             f"{meta['steps']} updates per run, loader in process. Machine: {meta['machine']}; load average "
             f"{meta['load_start']:.1f} at the start, {meta['load_end']:.1f} at the end.", "",
             "| run | disk cache | data ms / update | wall ms / update | items read |", "|---|---|---|---|---|"]  # fmt: skip
    for r in timings:
        lines.append(f"| {r['kind']} | {r['run']} | {r['data_ms_per_update']:.1f} | {r['wall_ms_per_update']:.0f} | {r['items']} |")
    lines += ["", "## float32 frames", "",
              f"Normalised features of {difference['utterances']} training utterances ({difference['frames']} frames), "
              f"computed directly (float64, then float32) and from the cache's float32 frames: max abs difference "
              f"{difference['max_abs_difference']:.2e}.", ""]  # fmt: skip
    if accuracy:
        lines += ["| tiny model, same seed, trained with | updates | dev greedy CER | dev greedy WER |", "|---|---|---|---|"]
        lines += [f"| {r['run']} | {r['updates']} | {r['dev_greedy_cer']:.4f} | {r['dev_greedy_wer']:.4f} |" for r in accuracy]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default=None, help="synthetic corpus root (default: the training benchmark's, generated)")
    parser.add_argument("--steps", type=int, default=20, help="updates per timed run (short: first-use features dominate)")
    parser.add_argument("--accuracy_steps", type=int, default=200, help="updates of each accuracy run (0 = skip)")
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "feature_cache"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    corpus = default_corpus(args.corpus)
    work = tempfile.mkdtemp(prefix="bench-feature-cache-")
    load_start = os.getloadavg()[0]
    try:
        aligned = write_aligned_recordings(corpus, os.path.join(work, "aligned"))
        timings = timed_runs(corpus, aligned, args.steps, work)
        difference = feature_difference(corpus, work)
        accuracy = accuracy_runs(corpus, args.accuracy_steps, work) if args.accuracy_steps else []
    finally:
        shutil.rmtree(work, ignore_errors=True)
    meta = {"command": "python benchmarks/bench_feature_cache.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "corpus": os.path.relpath(corpus, REPO) if corpus.startswith(REPO) else corpus, "steps": args.steps,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
            "load_start": load_start, "load_end": os.getloadavg()[0]}  # fmt: skip
    write_results(args.out, to_markdown(timings, difference, accuracy, meta),
                  {"meta": meta, "timings": timings, "feature_difference": difference, "accuracy": accuracy})
    return 0


if __name__ == "__main__":
    sys.exit(main())
