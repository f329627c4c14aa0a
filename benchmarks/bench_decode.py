#!/usr/bin/env python
"""CTC decoding speed: greedy vs beam search without LM vs beam search with a KenLM LM.

All decoders get the same logits. The logits are SYNTHETIC (no trained model needed): real
word-frequency sentences (wordfreq, English) "spoken" by a fake acoustic model that puts a peak
on the right character for 1-3 frames (30 ms each), with blanks between and a fraction of
characters confused with another one (see `modeling_mlpl.decoding.simulate_ctc_logits`). The LM
is a word 3-gram built with lmplz from other sentences of the same distribution. Speed depends on
how peaky real model outputs are; the error rates only show that the LM path works.

    python benchmarks/bench_decode.py [--utterances 60] [--lm-sentences 20000] [--widths 16 64]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from modeling_mlpl.decoding import LMDecoder, simulate_ctc_logits  # noqa: E402
from modeling_mlpl.lm import build_lm  # noqa: E402
from modeling_mlpl.metrics import cer, wer  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def sample_sentences(n: int, rng: np.random.Generator, language: str = "en", top: int = 20000) -> list[str]:
    """Sentences of 5-15 words drawn with real word frequencies (as the embedded corpus does)."""
    from wordfreq import top_n_list, word_frequency

    words = top_n_list(language, top)
    p = np.array([word_frequency(w, language) for w in words])
    p /= p.sum()
    lengths = rng.integers(5, 16, size=n)
    drawn = rng.choice(len(words), size=int(lengths.sum()), p=p)  # one draw: choice(p=) is O(vocab) per call
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    return [" ".join(words[i] for i in drawn[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def timed(fn, repeats: int) -> tuple[float, list[str]]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--utterances", type=int, default=60)
    p.add_argument("--lm-sentences", type=int, default=20000)
    p.add_argument("--order", type=int, default=3)
    p.add_argument("--widths", type=int, nargs=2, default=[16, 64], help="two LM beam widths")
    p.add_argument("--no-lm-width", type=int, default=16, help="beam width without LM")
    p.add_argument("--confusion-rate", type=float, default=0.1)
    p.add_argument("--repeats", type=int, default=2, help="median of this many runs")
    p.add_argument("--out", default=str(RESULTS / "decode"), help="writes OUT.md and OUT.json")
    args = p.parse_args(argv)
    logging.getLogger("pyctcdecode").setLevel(logging.ERROR)

    rng = np.random.default_rng(0)
    sentences = sample_sentences(args.utterances + args.lm_sentences, rng)
    test, lm_text = sentences[: args.utterances], sentences[args.utterances :]
    vocab = ["<pad>", "<unk>", "|"] + sorted({c for s in sentences for c in s if c != " "})
    logits = [simulate_ctc_logits(s, vocab, rng, confusion_rate=args.confusion_rate) for s in test]
    frames = [x.shape[0] for x in logits]

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        lm = build_lm(lm_text, Path(tmp) / "en", order=args.order, memory="200M")
        lm_build_s = time.perf_counter() - start
        decoder = LMDecoder.from_lm_dirs(vocab, {"en": lm.directory}, alpha=0.5, beta=1.0)
        # Load the LM and build both pyctcdecode decoders outside the timings.
        decoder.decode_batch(logits[:1])
        decoder.decode_batch(logits[:1], use_lm=False)
        lm_words = len(lm.unigrams.read_text().split())

        runs = [
            ("greedy", lambda: decoder.greedy_decode(logits)),
            (f"beam {args.no_lm_width}, no LM",
             lambda: decoder.decode_batch(logits, beam_width=args.no_lm_width, use_lm=False)),
        ] + [
            (f"beam {w}, {args.order}-gram LM", lambda w=w: decoder.decode_batch(logits, beam_width=w))
            for w in args.widths
        ]  # fmt: skip
        rows = []
        for name, fn in runs:
            seconds, texts = timed(fn, args.repeats)
            rows.append({"decoder": name, "ms_per_utt": 1000 * seconds / len(logits),
                         "wer": wer(test, texts), "cer": cer(test, texts)})  # fmt: skip
    greedy_ms = rows[0]["ms_per_utt"]
    for row in rows:
        row["vs_greedy"] = row["ms_per_utt"] / greedy_ms

    meta = {
        "utterances": len(logits), "mean_frames": float(np.mean(frames)), "vocab_size": len(vocab),
        "lm_sentences": len(lm_text), "lm_order": args.order, "lm_build_s": lm_build_s,
        "lm_unigrams": lm_words,
        "confusion_rate": args.confusion_rate, "repeats": args.repeats,
        "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "python": platform.python_version(),
        "logits": "synthetic (simulate_ctc_logits on wordfreq sentences), not a trained model",
    }  # fmt: skip
    lines = [
        f"CTC decoding, {meta['utterances']} utterances of synthetic logits "
        f"(mean {meta['mean_frames']:.0f} frames = {meta['mean_frames'] * 0.03:.1f} s at 30 ms/frame, "
        f"vocab {meta['vocab_size']}, {100 * args.confusion_rate:.0f} % of characters confused); "
        f"word {args.order}-gram LM from {len(lm_text)} sentences (built in {lm_build_s:.1f} s); "
        f"median of {args.repeats}, {meta['cpus']} CPUs (load average {meta['load_average_1min']:.1f} at the end). Logits are synthetic, not from a trained "
        "model: WER/CER only show that the LM path works.",
        "",
        "| decoder | ms / utterance | vs greedy | WER | CER |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['decoder']} | {r['ms_per_utt']:.2f} | {r['vs_greedy']:.0f}x | "
                     f"{100 * r['wer']:.1f} | {100 * r['cer']:.1f} |")  # fmt: skip
    table = "\n".join(lines) + "\n"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(table)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
