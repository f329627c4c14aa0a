#!/usr/bin/env python
"""Pseudo-labeling throughput: the library's labeler vs a naive loop, on the same files, in one run.

naive:            files in dataset order, one at a time, whole recording in one forward, greedy decode
                  (what a first script does; also the paper's setting without windows).
unsorted batches: whole recordings batched in dataset order (no length sorting): shows the padding.
mlpl:             modeling_mlpl.pseudo_labeling.label_dataset: length-sorted batches of <= 10 s
                  windows, audio decoded ahead in threads, labels + timestamps + confidence written to
                  fsync'd JSONL shards (it does strictly more work per recording than the others).

Audio: VoxPopuli-like lengths (2-35 s, mean ~15 s) of synthetic tones, WAV files on disk; a random
model of the chosen preset (throughput does not depend on the weights). Results:
benchmarks/results/pseudo_label.{md,json}.
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
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import modeling_mlpl  # noqa: E402
from modeling_mlpl.audio import load_audio, write_audio  # noqa: E402
from modeling_mlpl.data import load_audio_folder  # noqa: E402
from modeling_mlpl.pseudo_labeling import PseudoLabelConfig, PseudoLabeler, label_dataset  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CHARS = "abcdefghijklmnopqrstuvwxyzäöüßéèàçñ,.!?'"


def make_checkpoint(directory: Path, preset: str) -> None:
    tokenizer = modeling_mlpl.MLPLTokenizer.build_from_texts([CHARS], save_directory=str(directory))
    config = modeling_mlpl.MLPLConfig.from_preset(preset, vocab_size=len(tokenizer), languages=["de", "fr", "pl"])
    torch.manual_seed(0)
    modeling_mlpl.MLPLForCTC(config).eval().save_pretrained(directory)
    modeling_mlpl.MLPLProcessor(modeling_mlpl.MLPLFeatureExtractor(), tokenizer).save_pretrained(directory)


def synthetic_recordings(directory: Path, durations, seed: int) -> None:
    """rec0000.wav, ... of the given durations: a wobbling tone + noise (benchmarks time, not accuracy)."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for i, d in enumerate(durations):
        t = np.arange(int(d * 16000)) / 16000
        f = rng.uniform(100, 600)
        wave = 0.2 * np.sin(2 * np.pi * f * t * (1 + 0.1 * np.sin(t))) + 0.01 * rng.standard_normal(t.shape)
        write_audio(directory / f"rec{i:04d}.wav", wave.astype(np.float32))


def make_audio(directory: Path, num_files: int, seed: int) -> list[float]:
    """VoxPopuli-like lengths: gamma(3, 5) s clipped to 2-35 s."""
    durations = np.clip(np.random.default_rng(seed).gamma(3.0, 5.0, num_files), 2.0, 35.0)
    synthetic_recordings(directory, durations, seed)
    return [float(d) for d in durations]


@torch.no_grad()
def naive(model, processor, paths: list[str], device) -> dict:
    texts, real = {}, 0
    start = time.perf_counter()
    for path in paths:
        audio = load_audio(path)
        inputs = processor.feature_extractor(audio, return_tensors="pt").to(device)
        logits = model(**inputs).logits
        texts[Path(path).stem] = processor.greedy_decode(logits.cpu())[0]
        real += len(audio)
    wall = time.perf_counter() - start
    return {"wall_s": wall, "audio_s": real / 16000, "padding_fraction": 0.0, "forward_calls": len(paths), "texts": texts}


@torch.no_grad()
def unsorted_batches(model, processor, paths: list[str], device, max_batch_seconds: float) -> dict:
    start = time.perf_counter()
    real = padded = calls = 0
    batch: list[np.ndarray] = []

    def run(batch):
        nonlocal padded, calls
        inputs = processor.feature_extractor(batch, return_tensors="pt").to(device)
        logits = model(**inputs).logits
        processor.greedy_decode(logits.cpu(), model.get_output_lengths(inputs["attention_mask"].sum(-1)).cpu())
        padded += max(len(a) for a in batch) * len(batch)
        calls += 1

    for path in paths:
        audio = load_audio(path)
        real += len(audio)
        if batch and (sum(len(a) for a in batch) + len(audio)) / 16000 > max_batch_seconds:
            run(batch)
            batch = []
        batch.append(audio)
    if batch:
        run(batch)
    wall = time.perf_counter() - start
    return {"wall_s": wall, "audio_s": real / 16000, "padding_fraction": 1 - real / padded, "forward_calls": calls}


def ours(checkpoint: str, root: Path, out: Path, device, max_batch_seconds: float) -> dict:
    labeler = PseudoLabeler.from_pretrained(checkpoint, PseudoLabelConfig(language="de", max_batch_seconds=max_batch_seconds),
                                            device=device)  # fmt: skip
    dataset = load_audio_folder(root, language="de")
    stats = label_dataset(dataset, out, labeler)
    texts = {}
    with open(out / "pl-rank00000.jsonl") as f:
        for line in f:
            r = json.loads(line)
            texts[r["id"]] = r["text"]
    pad = labeler.padding_stats
    return {"wall_s": stats.elapsed_s, "audio_s": stats.audio_seconds, "padding_fraction": pad.padding_fraction,
            "forward_calls": pad.forward_calls, "texts": texts}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="small", choices=list(modeling_mlpl.PRESETS))
    p.add_argument("--num_files", type=int, default=40)
    p.add_argument("--max_batch_seconds", type=float, default=60.0)
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 1)))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default=str(RESULTS / "pseudo_label"), help="results path without extension")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    work = Path(tempfile.mkdtemp(prefix="bench-pl-"))
    try:
        make_checkpoint(work / "model", args.preset)
        (work / "audio").mkdir()
        durations = make_audio(work / "audio", args.num_files, args.seed)
        paths = sorted(str(p) for p in (work / "audio").glob("*.wav"))
        model = modeling_mlpl.MLPLForCTC.from_pretrained(work / "model").eval().to(device)
        processor = modeling_mlpl.MLPLProcessor.from_pretrained(work / "model")
        naive(model, processor, paths[:2], device)  # warm-up (allocator, kernels)
        results = {
            "naive": naive(model, processor, paths, device),
            "unsorted batches": unsorted_batches(model, processor, paths, device, args.max_batch_seconds),
            "mlpl": ours(str(work / "model"), work / "audio", work / "pl", device, args.max_batch_seconds),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    short = [Path(p).stem for p, d in zip(paths, durations) if d <= 10.0]
    # Spaces and <unk> are ignored: the tokenizer keeps "<unk>" and cleans up spaces; the labeler keeps
    # exactly the emitted characters (their times are the training targets).
    import jiwer

    def chars(text: str) -> str:
        return "".join(text.replace("<unk>", "").split()) or "-"

    same = jiwer.cer([chars(results["naive"]["texts"][i]) for i in short],
                     [chars(results["mlpl"]["texts"][i]) for i in short]) if short else float("nan")  # fmt: skip
    for r in results.values():
        r.pop("texts", None)
        r["audio_s_per_s"] = r["audio_s"] / r["wall_s"]
        r["speedup_vs_naive"] = r["audio_s_per_s"] / (results["naive"]["audio_s"] / results["naive"]["wall_s"])
    meta = {"preset": args.preset, "num_files": args.num_files, "audio_hours": sum(durations) / 3600,
            "mean_duration_s": float(np.mean(durations)), "max_batch_seconds": args.max_batch_seconds,
            "threads": args.threads, "device": str(device),
            "device_name": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
            "cer_naive_vs_mlpl_on_recordings_le_10s": float(same), "torch": torch.__version__}  # fmt: skip
    lines = [
        "# Pseudo-labeling throughput",
        "",
        f"`python benchmarks/bench_pseudo_label.py --preset {args.preset} --num_files {args.num_files} "
        f"--threads {args.threads} --device {args.device}` ({meta['device_name']}, {args.threads} thread(s)). "
        f"{args.num_files} recordings, {sum(durations):.0f} s of audio (2-35 s, mean {meta['mean_duration_s']:.1f} s), "
        f"random `{args.preset}` model, batches of <= {args.max_batch_seconds:.0f} s.",
        "",
        "| method | audio s | wall s | audio s / s | vs naive | padding | forward calls |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        lines.append(f"| {name} | {r['audio_s']:.0f} | {r['wall_s']:.1f} | {r['audio_s_per_s']:.1f} | "
                     f"{r['speedup_vs_naive']:.2f}x | {100 * r['padding_fraction']:.1f} % | {r['forward_calls']} |")  # fmt: skip
    lines += ["", f"Sanity: CER (spaces ignored) between naive and mlpl labels of the recordings <= 10 s (one "
              f"window each, same model, so they must agree): {100 * same:.2f} %.", ""]
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output + ".md").write_text("\n".join(lines))
    Path(args.output + ".json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
