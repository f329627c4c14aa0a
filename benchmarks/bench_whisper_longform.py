#!/usr/bin/env python
"""Whisper long-form: sequential (the teacher's way) vs chunked windows decoded as a batch, one run.

sequential: `WhisperTeacher.label` -> transformers' long-form `generate` (openai/whisper's algorithm):
            each 30 s window is decoded with timestamps and the next one starts at the last complete
            segment's end; recordings are batched together (an attention mask says where each ends).
chunked:    transformers' pipeline with `chunk_length_s=30`: fixed 30 s windows overlapping by the
            pipeline's default stride (5 s each side), decoded `--batch_size` windows at a time and
            stitched by a longest-common-token-sequence merge.

Same model (a tiny random Whisper from tests/helpers_whisper.py: throughput does not depend on the
weights), same audio, same thread count, greedy, timestamps on, and each window may write at most the
same number of tokens (the model's `max_target_positions`; random weights use them all), so the
decoded output per window is equal and the difference is the number of windows and the batching.
Results: benchmarks/results/whisper_longform.{md,json}.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from helpers_pl import varying_audio  # noqa: E402
from helpers_whisper import build_tiny_whisper  # noqa: E402
from results_io import write_results  # noqa: E402

from modeling_mlpl.pseudo_labeling.teachers.whisper import WhisperTeacher  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def count_windows(model) -> dict:
    """Counts the model's encoder calls (one per decoded window) while installed."""
    counter = {"windows": 0}

    def hook(module, args, kwargs, output):
        counter["windows"] += int(output.last_hidden_state.shape[0])

    model.model.encoder.register_forward_hook(hook, with_kwargs=True)
    return counter


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_files", type=int, default=4, help="recordings to label")
    parser.add_argument("--seconds", type=float, default=120.0, help="length of each recording")
    parser.add_argument("--batch_size", type=int, default=8, help="windows per batch for the chunked way")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (both ways)")
    parser.add_argument("--out", default=str(RESULTS / "whisper_longform"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from transformers import pipeline

    waves = [varying_audio(args.seconds, seed=i) for i in range(args.num_files)]
    audio_s = args.num_files * args.seconds
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_tiny_whisper(Path(tmp) / "whisper")
        teacher = WhisperTeacher(folder, word_times=False, batch_size_s=args.num_files * args.seconds)
        asr = pipeline("automatic-speech-recognition", model=folder, chunk_length_s=30, batch_size=args.batch_size)
        teacher.label(waves[:1], ["en"])  # warm-up (first-call allocations) for both
        asr(waves[0][: 16000 * 5].copy(), generate_kwargs={"language": "en", "task": "transcribe", "num_beams": 1})

        windows = count_windows(teacher.model)
        start, cpu = time.perf_counter(), time.process_time()
        labels = teacher.label(waves, ["en"] * len(waves))
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        tokens = sum(len(teacher.tokenizer(r["text"], add_special_tokens=False).input_ids) for r in labels)
        probe = sum(math.ceil(len(w) / (16000 * 30)) for w in waves)  # the no-speech probe's fixed windows
        rows.append(("sequential (teacher)", wall, cpu, windows["windows"] - probe, tokens))

        windows = count_windows(asr.model)
        start, cpu = time.perf_counter(), time.process_time()
        outs = asr([w.copy() for w in waves], return_timestamps=True,
                   generate_kwargs={"language": "en", "task": "transcribe", "num_beams": 1})  # fmt: skip
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        tokens = sum(len(teacher.tokenizer(o["text"], add_special_tokens=False).input_ids) for o in outs)
        rows.append((f"chunked (pipeline, batch {args.batch_size})", wall, cpu, windows["windows"], tokens))

    lines = [
        "# Whisper long-form: sequential vs chunked",
        "",
        f"`python benchmarks/bench_whisper_longform.py --num_files {args.num_files} --seconds {args.seconds:g} "
        f"--batch_size {args.batch_size} --threads {args.threads}` ({platform.processor() or platform.machine()}, "
        f"{args.threads} thread(s), one run). {args.num_files} recordings x {args.seconds:g} s = {audio_s:g} s "
        "of audio; tiny random Whisper (d_model 32, one layer each side, <= 40 tokens per window), greedy, timestamps on.",
        "",
        "| way | wall s | audio s / s | CPU s | audio s / CPU s | windows decoded | CPU s / window | text tokens out |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, wall, cpu, n_windows, tokens in rows:
        lines.append(f"| {name} | {wall:.1f} | {audio_s / wall:.1f} | {cpu:.1f} | {audio_s / cpu:.1f} "
                     f"| {n_windows} "
                     f"| {cpu / max(n_windows, 1):.3f} | {tokens} |")
    lines += [
        "",
        "Windows decoded: encoder calls of the decoding itself. The teacher also runs its no-speech probe (one",
        "encoder pass and one decoder step per fixed 30 s window); that cost is inside its times.",
        "Random weights place timestamps arbitrarily, so the two ways decode different numbers of windows; each",
        "window writes up to the same token limit, so CPU s / window is the cost at equal output per window.",
        "Wall time on a shared machine includes waiting for a core; CPU s (this process, one thread) does not.",
        "",
    ]
    data = {"audio_s": audio_s, "threads": args.threads, "num_files": args.num_files, "seconds": args.seconds,
            "rows": [{"way": n, "wall_s": w, "cpu_s": c, "audio_s_per_s": audio_s / w, "windows": k, "tokens": t}
                     for n, w, c, k, t in rows]}  # fmt: skip
    write_results(args.out, "\n".join(lines), data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
