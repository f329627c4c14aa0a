#!/usr/bin/env python
"""Padding waste of LengthBucketBatchSampler vs naive random batching (same padded-seconds budget).

    python benchmarks/bench_batching.py [--corpus data/synthetic] [--max-batch-seconds 35]

Distributions: a Common Voice-like one (log-normal, median 4.5 s, 1-10 s, 100k clips), a
VoxPopuli-like long-form one (uniform 15-40 s, with a 60 s budget), and, with --corpus, the
durations of a generated/real corpus read through the loaders. Writes
benchmarks/results/batching.md and batching.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from modeling_mlpl.data.sampler import LengthBucketBatchSampler, padding_fraction, random_batches

RESULTS = Path(__file__).resolve().parent / "results"


def measure(name: str, durations: np.ndarray, budget: float, world: int = 1) -> dict:
    naive = [padding_fraction(random_batches(durations, budget, seed=s), durations) for s in range(3)]
    start = time.perf_counter()
    sampler = LengthBucketBatchSampler(durations, budget, num_replicas=world, seed=0)
    ours = [sampler.padding_fraction(epoch) for epoch in range(3)]
    seconds = (time.perf_counter() - start) / 3
    return {
        "distribution": name,
        "utterances": int(len(durations)),
        "hours": round(float(durations.sum()) / 3600, 2),
        "budget_s": budget,
        "ranks": world,
        "batches_per_rank": len(sampler),
        "naive_padding": float(np.mean(naive)),
        "bucketed_padding": float(np.mean(ours)),
        "ratio": float(np.mean(naive) / max(np.mean(ours), 1e-12)),
        "plan_seconds_per_epoch": round(seconds, 3),
    }


def corpus_durations(root: Path) -> dict[str, np.ndarray]:
    from modeling_mlpl.data import load_common_voice, load_voxpopuli_unlabelled

    out = {"corpus CV train": np.asarray(load_common_voice(root / "cv", split="train")["duration"])}
    if (root / "voxpopuli" / "unlabelled_data").is_dir():
        out["corpus VP unlabelled"] = np.asarray(load_voxpopuli_unlabelled(root / "voxpopuli")["duration"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=None, help="corpus root with cv/ (and voxpopuli/)")
    parser.add_argument("--max-batch-seconds", type=float, default=35.0, help="budget for short utterances (paper: ~35 s/GPU)")
    parser.add_argument("--n", type=int, default=100_000, help="utterances in the CV-like distribution")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    cv = np.clip(rng.lognormal(np.log(4.5), 0.35, args.n), 1.0, 10.0)
    vp = rng.uniform(15.0, 40.0, args.n // 10)
    rows = [
        measure("CV-like (lognormal 1-10 s)", cv, args.max_batch_seconds),
        measure("CV-like, 8 ranks", cv, args.max_batch_seconds, world=8),
        measure("VP-like (15-40 s)", vp, 60.0),
    ]
    if args.corpus is not None:
        for name, d in corpus_durations(args.corpus).items():
            rows.append(measure(name, d, args.max_batch_seconds if "CV" in name else 60.0))
    header = "| distribution | utts | hours | budget s | ranks | batches/rank | naive padding | bucketed padding | naive/bucketed |"
    lines = [header, "|" + "---|" * 9]
    for r in rows:
        lines.append(
            f"| {r['distribution']} | {r['utterances']} | {r['hours']} | {r['budget_s']:.0f} | {r['ranks']} | {r['batches_per_rank']} "
            f"| {100 * r['naive_padding']:.1f} % | {100 * r['bucketed_padding']:.2f} % | {r['ratio']:.1f}x |"
        )
    table = "\n".join(lines)
    print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    note = (
        "# Batching: padding waste\n\nPadding = 1 - real seconds / (batch size x longest utterance), mean of 3 epochs "
        "(bucketed, jitter 0.02) or 3 shuffles (naive: shuffle, then fill to the same padded-seconds budget).\n"
        f"Command: `python benchmarks/bench_batching.py{' --corpus ' + str(args.corpus) if args.corpus else ''}`; "
        f"machine: {platform.processor() or platform.machine()}.\n\n"
    )
    (RESULTS / "batching.md").write_text(note + table + "\n", encoding="utf-8")
    (RESULTS / "batching.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
