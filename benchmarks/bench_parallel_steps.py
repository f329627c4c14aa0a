#!/usr/bin/env python
"""Two recipe steps side by side with one thread each vs one after another with every thread.

The recipe's scheduler (`jobs: 2` on 2 cores) bets that two independent 1-thread steps finish sooner than
the same two steps run one after another with 2 threads each, because this tiny model does not scale to a
second thread. This measures the bet for the three kinds of step the recipe runs, each through its real
script: training (`train.py`), pseudo-labelling (`pseudo_label.py`) and evaluation with LM decoding
(`evaluate.py --lm-dir`). Reference: the sequential pair, each step with `--threads` threads, in the same
run. Ratio = sequential wall / side-by-side wall (> 1: the scheduler's way is faster).

    python benchmarks/bench_parallel_steps.py           # ~4 min on 2 cores, corpus generated once
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from modeling_mlpl.recipe.script_runner import run_script  # noqa: E402
from results_io import write_results  # noqa: E402

CORPUS_OPTIONS = {"high_train_minutes": 3.0, "low_train_minutes": 3.0, "low_unlabelled_minutes": 6.0}
TRAIN_OPTIONS = ["--preset", "tiny", "--optimizer", "adamw", "--learning_rate", "0.002", "--warmup_steps", "5",
                 "--max_batch_seconds", "30", "--eval_steps", "0", "--save_steps", "1000", "--logging_steps", "10",
                 "--tensorboard", "false"]  # fmt: skip


class Bench:
    def __init__(self, root: str, threads: int, steps: int):
        self.root, self.threads, self.steps = root, threads, steps
        self.corpus = os.path.join(root, "corpus")
        self.work = tempfile.mkdtemp(prefix="bench-parallel-")
        self.log = os.path.join(self.work, "runs.log")

    def script(self, name: str, *argv: str, threads: int) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
        code = run_script(os.path.join(REPO, "run_scripts", name), list(argv), env, self.log)
        if code != 0:
            raise SystemExit(f"{name} exited with {code}; log: {self.log}")

    # -- set-up (not timed): corpus, one trained model, an LM processor
    def prepare(self) -> None:
        from modeling_mlpl.synthetic.corpus import PRESETS, generate_corpus

        if not os.path.exists(os.path.join(self.corpus, "manifest.json")):
            generate_corpus(self.corpus, PRESETS["tiny"].replace(**CORPUS_OPTIONS), seed=0)
        self.model = os.path.join(self.root, "model")
        if not os.path.exists(os.path.join(self.model, "model.safetensors")):
            self.train(self.model, seed=0, threads=self.threads)
        self.lm = os.path.join(self.root, "lm")
        if not os.path.exists(os.path.join(self.lm, "language_model")):
            from transformers import AutoProcessor

            AutoProcessor.from_pretrained(self.model).save_pretrained(self.lm)
            texts = [a for lang in ("en", "el") for a in ("--text", f"{lang}={self.corpus}/text/{lang}.txt")]
            self.script("build_lm.py", *texts, "--out", os.path.join(self.root, "ngram"), "--processor-dir", self.lm,
                        "--order", "3", threads=self.threads)  # fmt: skip

    # -- the three kinds of step; `k` keeps two copies' outputs apart
    def train(self, out: str, seed: int, threads: int) -> None:
        self.script("train.py", *TRAIN_OPTIONS, "--train_data", f"cv:{self.corpus}/cv@train", "--eval_data",
                    f"cv:{self.corpus}/cv@dev", "--cv_languages", "en", "el",
                    "--max_steps", str(self.steps), "--seed", str(seed), "--num_threads", str(threads),
                    "--output_dir", out, threads=threads)  # fmt: skip

    def pseudo_label(self, out: str, seed: int, threads: int) -> None:
        self.script("pseudo_label.py", "--model", self.model, "--data", f"voxpopuli:{self.corpus}/voxpopuli",
                    "--language", "el", "--output_dir", out, "--threads", str(threads), "--min_chars", "0",
                    threads=threads)  # fmt: skip

    def evaluate(self, out: str, seed: int, threads: int) -> None:
        self.script("evaluate.py", "--model", self.model, "--data", f"cv:{self.corpus}/cv", "--split", "test",
                    "--languages", "en", "el", "--lm-dir", self.lm, "--out", out, threads=threads)  # fmt: skip

    def timed(self, kind: str, side_by_side: bool) -> float:
        run = getattr(self, kind)
        outs = [os.path.join(self.work, f"{kind}-{side_by_side}-{k}") for k in range(2)]
        start = time.perf_counter()
        if side_by_side:
            workers = [threading.Thread(target=run, args=(out, k + 1, 1)) for k, out in enumerate(outs)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
        else:
            for k, out in enumerate(outs):
                run(out, k + 1, self.threads)
        seconds = time.perf_counter() - start
        for out in outs:
            shutil.rmtree(out, ignore_errors=True)
        return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=os.path.join(REPO, "data", "synthetic-bench-parallel"))
    parser.add_argument("--threads", type=int, default=2, help="threads of each sequential step (the cores)")
    parser.add_argument("--steps", type=int, default=60, help="updates per training step")
    parser.add_argument("--kinds", nargs="+", default=["train", "pseudo_label", "evaluate"])
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results", "parallel_steps"))
    args = parser.parse_args()
    bench = Bench(args.root, args.threads, args.steps)
    bench.prepare()
    load_before = os.getloadavg()[0]
    rows = []
    for kind in args.kinds:
        bench.timed(kind, side_by_side=False)  # warm the page cache and the fork server for both ways
        sequential = bench.timed(kind, side_by_side=False)
        parallel = bench.timed(kind, side_by_side=True)
        rows.append({"step": kind, "sequential_s": sequential, "side_by_side_s": parallel,
                     "ratio": sequential / parallel})  # fmt: skip
        print(f"{kind}: {sequential:.1f} s one after another, {parallel:.1f} s side by side", flush=True)
    load_after = os.getloadavg()[0]
    lines = [
        "# Two steps side by side (1 thread each) vs one after another (all threads each)",
        "",
        f"Command: `python benchmarks/bench_parallel_steps.py --threads {args.threads} --steps {args.steps}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores; load average {load_before:.1f} -> {load_after:.1f}. "
        "Each row runs the same two steps (two training seeds, or two copies of one PL / evaluation job) both ways "
        "through the real script, after one untimed warm-up pair; tiny preset, synthetic corpus.",
        "",
        f"| step | one after another, {args.threads} threads each (reference) s | side by side, 1 thread each s "
        "| speed-up |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r['step']} | {r['sequential_s']:.1f} | {r['side_by_side_s']:.1f} | {r['ratio']:.2f}x |"
              for r in rows]  # fmt: skip
    write_results(args.out, "\n".join(lines) + "\n", {
        "rows": rows, "threads": args.threads, "steps": args.steps, "load": [load_before, load_after]})


if __name__ == "__main__":
    main()
