"""CPU inference time and peak memory: MLPLForCTC vs transformers' Wav2Vec2ForCTC of the same size.

Both models get the same batch of 16 kHz audio and the same width, depth, heads and FFN size.
MLPL's time includes its log-mel feature extraction (Wav2Vec2 reads raw audio with its conv encoder),
and is also shown without it. Each measurement runs in its own process so peak RSS is per model.

    python benchmarks/bench_model.py [--presets small base] [--batch 4] [--seconds 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

RESULTS = os.path.join(os.path.dirname(__file__), "results")


def measure(kind: str, preset: str, batch: int, seconds: float, threads: int, repeats: int) -> dict:
    """Runs in a child process: build one model, time `repeats` forwards, report peak RSS."""
    import resource

    import numpy as np
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    from modeling_mlpl import MLPLConfig, MLPLFeatureExtractor, MLPLForCTC

    config = MLPLConfig.from_preset(preset, vocab_size=100)
    rng = np.random.default_rng(0)
    audio = [(0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32) for _ in range(batch)]
    if kind == "wav2vec2":
        model = Wav2Vec2ForCTC(
            Wav2Vec2Config(
                vocab_size=100,
                hidden_size=config.hidden_size,
                num_hidden_layers=config.num_hidden_layers,
                num_attention_heads=config.num_attention_heads,
                intermediate_size=config.intermediate_size,
            )
        ).eval()
        inputs = {"input_values": torch.from_numpy(np.stack(audio))}
        run = lambda: model(**inputs).logits  # noqa: E731
    else:
        model = MLPLForCTC(config).eval()
        extractor = MLPLFeatureExtractor()
        features = extractor(audio, sampling_rate=16000, return_tensors="pt")
        if kind == "mlpl":
            run = lambda: model(**extractor(audio, sampling_rate=16000, return_tensors="pt")).logits  # noqa: E731
        else:  # model only
            run = lambda: model(**features).logits  # noqa: E731
    times = []
    with torch.inference_mode():
        run()  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            frames = run().shape[1]
            times.append(time.perf_counter() - start)
    return {
        "model": kind,
        "preset": preset,
        "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
        "output_frames": frames,
        "seconds_median": statistics.median(times),
        "peak_rss_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["small", "base"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(*args.child, args.batch, args.seconds, args.threads, args.repeats)))
        return

    rows = []
    for preset in args.presets:
        for kind in ("wav2vec2", "mlpl", "mlpl-model-only"):
            cmd = [sys.executable, __file__, "--child", kind, preset, "--batch", str(args.batch),
                   "--seconds", str(args.seconds), "--threads", str(args.threads), "--repeats", str(args.repeats)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
    reference = {r["preset"]: r for r in rows if r["model"] == "wav2vec2"}
    for r in rows:
        r["time_vs_wav2vec2"] = r["seconds_median"] / reference[r["preset"]]["seconds_median"]

    header = (f"CPU forward, batch {args.batch} x {args.seconds:g} s audio, {args.threads} thread(s), "
              f"median of {args.repeats}; reference = Wav2Vec2ForCTC of the same width/depth/heads/FFN")
    lines = [header, "", "| preset | model | params (M) | output frames | time (s) | time vs wav2vec2 | peak RSS (MB) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['preset']} | {r['model']} | {r['params_M']:.1f} | {r['output_frames']} | "
                     f"{r['seconds_median']:.3f} | {r['time_vs_wav2vec2']:.2f}x | {r['peak_rss_MB']:.0f} |")
    table = "\n".join(lines)
    print(table)
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "model.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(RESULTS, "model.json"), "w") as f:
        json.dump({"settings": vars(args) | {"child": None}, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
