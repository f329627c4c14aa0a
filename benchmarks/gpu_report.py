#!/usr/bin/env python
"""Step times, throughput and an MFU estimate of one recipe run (benchmarks/gpu_run.sh writes it).

    python benchmarks/gpu_report.py --exp exp/gpu/seed0 --recipe_log OUT/recipe.log --out OUT \
        [--peak_tflops 989] [--wall_seconds 512]

Reads what the recipe leaves behind, nothing else:
  - `<exp>/.done/<step>`: seconds of every finished step (process start-up included);
  - `<exp>/models/<run>/log.jsonl`: the trainer's logging windows (audio-s/s, utterances, time);
  - `<exp>/models/<run>/config.json`: the model's size, for its FLOPs per audio second;
  - pseudo_label.py's "labelled N (X s audio, Y s/s)" lines, in the recipe's console log or, for steps
    that ran side by side, in `<exp>/logs/<step>.log`.
MFU: see MFU_METHOD.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys

import numpy as np

OUTPUT_FRAMES_PER_SECOND = 16000 / 480  # hop 160 samples x conv stride 3 = 30 ms per output frame
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0}  # dense bf16, vendor datasheets (SXM)
MFU_METHOD = (
    "MFU = training FLOPs per audio second x audio-s/s / the GPU's peak dense bf16 FLOP/s. Training FLOPs count "
    "the matrix products only (2 FLOPs per multiply-add; backward = 2x forward, so 3x the forward), for segments "
    "of the run's mean length (attention grows with length; the mean undercounts a little when lengths vary). "
    "Element-wise work, the feature extractor and the optimizer are not counted. audio-s/s is the trainer's own "
    "log (median over its logging windows, the first skipped)."
)
PL_LINE = re.compile(r"labelled (\d+) \(([\d.]+) s audio, ([\d.]+) s/s\)")


def forward_flops_per_frame(config: dict, frames: float) -> float:
    """Matrix-product FLOPs of one output frame's forward pass, in an utterance of `frames` output frames."""
    d, layers = config["hidden_size"], config["num_hidden_layers"]
    inner = config["num_attention_heads"] * config["attention_head_dim"]
    features = config.get("input_feat_per_channel", 80) * config.get("input_channels", 1)
    conv = 2 * features * config.get("conv_kernel", 7) * 2 * d  # Conv1d to 2d channels (GLU halves them)
    projections = 2 * 4 * d * inner  # query, key, value, output
    feed_forward = 2 * 2 * d * config["intermediate_size"]
    # q.k over all keys, probabilities.v, and q.E over the 2T-1 relative distances
    attention = 2 * frames * inner + 2 * frames * inner + 2 * (2 * frames - 1) * inner
    ctc_head = 2 * d * config["vocab_size"]  # the LID head runs once per utterance, not per frame: left out
    return conv + layers * (projections + feed_forward + attention) + ctc_head


def train_flops_per_audio_second(config: dict, segment_seconds: float) -> float:
    """Training (forward + backward = 3x forward) FLOPs per second of audio in segments of that length."""
    frames = max(1.0, segment_seconds * OUTPUT_FRAMES_PER_SECOND)
    return 3 * forward_flops_per_frame(config, frames) * OUTPUT_FRAMES_PER_SECOND


def step_seconds(exp: str) -> dict[str, float]:
    """Seconds of every finished step, in the order they finished."""
    rows = []
    for path in glob.glob(os.path.join(exp, ".done", "*")):
        with open(path) as f:
            marker = json.load(f)
        rows.append((os.path.getmtime(path), os.path.basename(path), float(marker["seconds"])))
    return {name: seconds for _, name, seconds in sorted(rows)}


def training_runs(exp: str, peak_flops: float | None) -> list[dict]:
    """Per training run: median audio-s/s over its logging windows (first skipped), mean segment length
    (audio / utterances of those windows), FLOPs per audio second and MFU."""
    out = []
    for log_path in sorted(glob.glob(os.path.join(exp, "models", "*", "log.jsonl"))):
        run = os.path.dirname(log_path)
        config_path = os.path.join(run, "config.json")
        if not os.path.exists(config_path):
            continue
        with open(config_path) as f:
            config = json.load(f)
        with open(log_path) as f:
            records = [r for r in map(json.loads, filter(str.strip, f)) if r.get("type") == "train"]
        if len(records) < 2:
            continue
        rates, audio, utterances = [], 0.0, 0
        for previous, record in zip(records, records[1:]):  # window k's time span: record k-1 -> k
            elapsed = record["time"] - previous["time"]
            rates.append(record["audio_seconds_per_second"])
            audio += record["audio_seconds_per_second"] * elapsed
            utterances += record["utterances"]
        segment = audio / max(utterances, 1)
        rate = float(np.median(rates))
        flops = train_flops_per_audio_second(config, segment)
        out.append({
            "run": os.path.basename(run),
            "parameters_M": _parameters(config) / 1e6,
            "updates": records[-1]["step"],
            "audio_seconds_per_second": rate,
            "mean_segment_seconds": segment,
            "train_gflops_per_audio_second": flops / 1e9,
            "achieved_tflops": flops * rate / 1e12,
            "mfu": flops * rate / peak_flops if peak_flops else None,
        })  # fmt: skip
    return out


def _parameters(config: dict) -> float:
    """Weights of the matrix products (what the FLOPs count), for the table."""
    d, layers = config["hidden_size"], config["num_hidden_layers"]
    inner = config["num_attention_heads"] * config["attention_head_dim"]
    per_layer = 4 * d * inner + 2 * d * config["intermediate_size"]
    return layers * per_layer + 80 * config.get("conv_kernel", 7) * 2 * d + d * config["vocab_size"]


def pl_throughput(exp: str, recipe_log: str | None) -> list[dict]:
    """pseudo_label.py's own throughput lines (model + decoding, process start-up excluded), from the
    recipe's console log and, when steps ran side by side, from their own logs (`<exp>/logs/<step>.log`)."""
    logs = [(None, recipe_log)] if recipe_log and os.path.exists(recipe_log) else []
    logs += [(os.path.basename(p)[: -len(".log")], p) for p in sorted(glob.glob(os.path.join(exp, "logs", "*.log")))]
    rows = []
    for step, path in logs:
        with open(path, errors="replace") as f:
            rows += [{"step": step, "recordings": int(m[1]), "audio_seconds": float(m[2]),
                      "audio_seconds_per_second": float(m[3])} for m in PL_LINE.finditer(f.read())]  # fmt: skip
    return rows


def peak_for(device_name: str) -> float | None:
    return next((tflops * 1e12 for key, tflops in PEAK_BF16_TFLOPS.items() if key in device_name), None)


def to_markdown(report: dict) -> str:
    lines = ["# Recipe run: step times, throughput, MFU", "", f"Device: {report['device']}; peak used for MFU: "
             + (f"{report['peak_tflops']:.0f} TFLOP/s dense bf16" if report["peak_tflops"] else "none (no GPU)"),
             f"Wall time of the recipe: {report['wall_seconds']:.0f} s" if report["wall_seconds"] else "", "",
             "| step | seconds |", "|---|---|"]  # fmt: skip
    lines += [f"| {name} | {seconds:.1f} |" for name, seconds in report["steps"].items()]
    lines.append(f"| **sum of finished steps** | **{sum(report['steps'].values()):.1f}** |")
    lines += ["", "Training (median over logging windows after the first):", "",
              "| run | params (M) | updates | audio-s / s | mean segment (s) | train GFLOP / audio-s | TFLOP/s | MFU |",
              "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in report["training"]:
        mfu = f"{100 * r['mfu']:.1f} %" if r["mfu"] is not None else "n/a"
        lines.append(f"| {r['run']} | {r['parameters_M']:.1f} | {r['updates']} | {r['audio_seconds_per_second']:.0f} | "
                     f"{r['mean_segment_seconds']:.1f} | {r['train_gflops_per_audio_second']:.2f} | "
                     f"{r['achieved_tflops']:.2f} | {mfu} |")  # fmt: skip
    if report["pseudo_labeling"]:
        lines += ["", "Pseudo-labeling (pseudo_label.py's own count, start-up excluded):", "",
                  "| step | recordings | audio (s) | audio-s / s |", "|---|---|---|---|"]  # fmt: skip
        lines += [f"| {p['step'] or '(console)'} | {p['recordings']} | {p['audio_seconds']:.0f} | "
                  f"{p['audio_seconds_per_second']:.0f} |" for p in report["pseudo_labeling"]]  # fmt: skip
    lines += ["", MFU_METHOD]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exp", required=True, help="the recipe's experiment folder of one seed (EXP/seed0)")
    parser.add_argument("--out", required=True, help="folder for run_report.md / .json")
    parser.add_argument("--recipe_log", default=None, help="the recipe's console output (for PL throughput)")
    parser.add_argument("--device", default=None, help="device name (default: torch.cuda's, else 'cpu')")
    parser.add_argument("--peak_tflops", type=float, default=None, help="peak dense bf16 TFLOP/s (default: by device)")
    parser.add_argument("--wall_seconds", type=float, default=None, help="the recipe's wall time, for the report")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.exp):  # e.g. the cap was reached before the recipe started: an empty report
        print(f"gpu_report.py: {args.exp} does not exist (no step finished)", file=sys.stderr)
    device = args.device
    if device is None:
        import torch

        device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    peak = args.peak_tflops * 1e12 if args.peak_tflops else peak_for(device)
    report = {
        "device": device,
        "peak_tflops": peak / 1e12 if peak else None,
        "wall_seconds": args.wall_seconds,
        "steps": step_seconds(args.exp),
        "training": training_runs(args.exp, peak),
        "pseudo_labeling": pl_throughput(args.exp, args.recipe_log),
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "run_report.json"), "w") as f:
        json.dump(report, f, indent=2)
    markdown = to_markdown(report)
    with open(os.path.join(args.out, "run_report.md"), "w") as f:
        f.write(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
