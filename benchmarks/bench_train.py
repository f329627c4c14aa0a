#!/usr/bin/env python
"""Training throughput (audio seconds per wall second) and padding fraction, per preset and thread count.

    python benchmarks/bench_train.py [--cv_root DIR] [--presets tiny small] [--threads 1 2] [--steps 25]

Runs the real training loop (run_scripts/train.py's `train`) for a few updates on Common Voice-layout
data (default: the embedded synthetic corpus, generated with the `tiny` preset if missing) and
reads the throughput from its log, skipping the first logging window (warm-up). Results go to
benchmarks/results/train.md and .json; ratios are relative to the first configuration.
Run it on idle cores: with another process on a core, 2 threads collapse (DEMO_NOTES.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from modeling_mlpl.training import DataArguments, MLPLTrainingArguments, ModelArguments, read_log, train  # noqa: E402


def default_corpus() -> str:
    root = os.path.join(REPO, "data", "synthetic-tiny")
    if not os.path.isdir(os.path.join(root, "cv")):
        from modeling_mlpl.data.synthetic import generate_corpus

        generate_corpus(root, "tiny")
    return os.path.join(root, "cv")


def run_config(cv_root: str, preset: str, threads: int, steps: int, batch_seconds: float, mixed_precision: str) -> dict:
    out = tempfile.mkdtemp(prefix="bench-train-")
    try:
        model = ModelArguments(preset=preset)
        data = DataArguments(cv_root=cv_root, cv_eval_split="")
        args = MLPLTrainingArguments(
            output_dir=out, overwrite_output_dir=True, max_steps=steps, max_batch_seconds=batch_seconds,
            optimizer="adamw", learning_rate=1e-3, warmup_steps=5, specaugment_start_step=-1, crop_steps=0,
            logging_steps=5, eval_steps=0, save_steps=10 * steps, num_threads=threads, tensorboard=False,
            mixed_precision=mixed_precision,
        )  # fmt: skip
        start = time.perf_counter()
        train(model, data, args)
        wall = time.perf_counter() - start
        records = [r for r in read_log(out) if r["type"] == "train"][1:]  # first window: warm-up
        return {
            "preset": preset,
            "threads": threads,
            "mixed_precision": mixed_precision,
            "updates": steps,
            "audio_seconds_per_second": float(np.mean([r["audio_seconds_per_second"] for r in records])),
            "padding_fraction": float(np.mean([r["padding_fraction"] for r in records])),
            "wall_seconds_incl_setup": wall,
        }
    finally:
        shutil.rmtree(out, ignore_errors=True)


def to_markdown(rows: list[dict], meta: dict) -> str:
    base = rows[0]["audio_seconds_per_second"]
    lines = [
        "# Training throughput",
        "",
        f"Command: `{meta['command']}`  ",
        f"Data: {meta['cv_root']}; batches of <= {meta['batch_seconds']} s padded audio; AdamW; "
        f"{meta['steps']} updates per run (first 5 skipped as warm-up). Machine: {meta['machine']}.",
        "",
        "| preset | threads | precision | audio-s / s | ratio | padding |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['preset']} | {r['threads']} | {r['mixed_precision']} | {r['audio_seconds_per_second']:.1f} | "
                     f"{r['audio_seconds_per_second'] / base:.2f} | {100 * r['padding_fraction']:.1f} % |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cv_root", default=None, help="Common Voice-layout data (default: embedded tiny corpus)")
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--mixed_precision", nargs="+", default=["no"], help="e.g. no bf16")
    parser.add_argument("--steps", type=int, default=25, help="updates per configuration")
    parser.add_argument("--batch_seconds", type=float, default=30.0)
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "train"))
    args = parser.parse_args(argv)
    if any(t < 1 for t in args.threads) or args.steps < 10:
        parser.error("--threads must be >= 1 and --steps >= 10")
    cv_root = args.cv_root or default_corpus()
    if not os.path.isdir(cv_root):
        parser.error(f"--cv_root {cv_root} is not a directory")
    rows = []
    for preset in args.presets:
        for precision in args.mixed_precision:
            for threads in args.threads:
                row = run_config(cv_root, preset, threads, args.steps, args.batch_seconds, precision)
                print(json.dumps(row), flush=True)
                rows.append(row)
    meta = {
        "command": "python benchmarks/bench_train.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "cv_root": cv_root,
        "steps": args.steps,
        "batch_seconds": args.batch_seconds,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump({"meta": meta, "results": rows}, f, indent=2)
    with open(args.out + ".md", "w") as f:
        f.write(to_markdown(rows, meta))
    print(to_markdown(rows, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
