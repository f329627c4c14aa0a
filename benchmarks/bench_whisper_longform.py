#!/usr/bin/env python
"""Whisper long-form: sequential (the teacher's way) vs chunked windows decoded as a batch, one run.

sequential: `WhisperTeacher.label` -> transformers' long-form `generate` (openai/whisper's algorithm):
            each 30 s window is decoded with timestamps and the next one starts at the last complete
            segment's end; recordings are batched together (an attention mask says where each ends).
chunked:    transformers' pipeline with `chunk_length_s=30`: fixed 30 s windows overlapping by the
            pipeline's default stride (5 s each side), decoded `--batch_size` windows at a time and
            stitched by a longest-common-token-sequence merge.

Same model (a tiny random Whisper from tests/helpers_whisper.py: throughput does not depend on the
weights), same audio, same thread count, greedy, timestamps on. Equal output: random weights would
place timestamps anywhere (and a window without a closing timestamp is decoded again), so both ways
decode under one `ForcedWindow` logits processor that makes every window write the same
`<|0.00|>` + N text tokens + `<|29.98|>` + `<|endoftext|>`, the shape of a real window of speech.
What differs is only the number of windows (sequential: one per 30 s; chunked: one per 20 s with the
default stride) and how they are batched. Results: benchmarks/results/whisper_longform.{md,json}.
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


class ForcedWindow:
    """A logits processor that makes every window's output `<|0.00|>`, `n_text` fixed text tokens,
    `<|29.98|>`, `<|endoftext|>` (a single timestamp ending: the window is done, nothing re-decoded)."""

    def __init__(self, tokenizer, n_text: int):
        ids = tokenizer.convert_tokens_to_ids
        self.transcribe = ids("<|transcribe|>")
        text = tokenizer("the cat sat on the mat", add_special_tokens=False).input_ids
        self.script = ([ids("<|0.00|>")] + [text[i % len(text)] for i in range(n_text)]
                       + [ids("<|29.98|>"), tokenizer.eos_token_id])  # fmt: skip

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        forced = torch.full_like(scores, -float("inf"))
        for b, row in enumerate(input_ids.tolist()):
            step = len(row) - 1 - max(i for i, t in enumerate(row) if t == self.transcribe)
            forced[b, self.script[min(step, len(self.script) - 1)]] = 0.0
        return forced


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
    parser.add_argument("--text_tokens", type=int, default=20, help="text tokens each window writes")
    parser.add_argument("--out", default=str(RESULTS / "whisper_longform"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from transformers import LogitsProcessorList, pipeline

    waves = [varying_audio(args.seconds, seed=i) for i in range(args.num_files)]
    audio_s = args.num_files * args.seconds
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_tiny_whisper(Path(tmp) / "whisper")
        teacher = WhisperTeacher(folder, word_times=False, batch_size_s=args.num_files * args.seconds)
        asr = pipeline("automatic-speech-recognition", model=folder, chunk_length_s=30, batch_size=args.batch_size)
        forced = LogitsProcessorList([ForcedWindow(teacher.tokenizer, args.text_tokens)])
        teacher.generate_kwargs = {"logits_processor": forced}
        kwargs = {"language": "en", "task": "transcribe", "num_beams": 1, "logits_processor": forced}
        teacher.label(waves[:1], ["en"])  # warm-up (first-call allocations) for both
        asr(waves[0][: 16000 * 5].copy(), generate_kwargs=kwargs)

        windows = count_windows(teacher.model)
        start, cpu = time.perf_counter(), time.process_time()
        labels = teacher.label(waves, ["en"] * len(waves))
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        tokens = sum(len(teacher.tokenizer(r["text"], add_special_tokens=False).input_ids) for r in labels)
        probe = sum(math.ceil(len(w) / (16000 * 30)) for w in waves)  # the no-speech step's fixed slices
        rows.append(("sequential (teacher)", wall, cpu, windows["windows"] - probe, tokens))

        windows = count_windows(asr.model)
        start, cpu = time.perf_counter(), time.process_time()
        outs = asr([w.copy() for w in waves], return_timestamps=True, generate_kwargs=kwargs)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        tokens = sum(len(teacher.tokenizer(o["text"], add_special_tokens=False).input_ids) for o in outs)
        rows.append((f"chunked (pipeline, batch {args.batch_size})", wall, cpu, windows["windows"], tokens))

    lines = [
        "# Whisper long-form: sequential vs chunked",
        "",
        f"`python benchmarks/bench_whisper_longform.py --num_files {args.num_files} --seconds {args.seconds:g} "
        f"--batch_size {args.batch_size} --threads {args.threads}` ({platform.processor() or platform.machine()}, "
        f"{args.threads} thread(s), one run). {args.num_files} recordings x {args.seconds:g} s = {audio_s:g} s "
        f"of audio; tiny random Whisper (d_model 32, one layer each side), greedy, timestamps on, every window "
        f"forced to write the same {args.text_tokens} text tokens (equal output per window).",
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
        "Windows decoded: encoder calls of the decoding itself. The teacher also runs its no-speech step (one",
        "encoder pass and one decoder step per fixed 30 s slice of a long recording's features); that cost is",
        "inside its times. Text tokens out: what each way's text holds after its own stitching.",
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
