#!/usr/bin/env python
"""Peak memory of turning one recording's CTC log-probs into a pseudo-label, against its length.

``label_from_log_probs`` scores every label with log p(label | x) over all CTC alignments, and
LM-decoded labels are also force-aligned (Viterbi) for their character times. Both run over the
whole recording, on a trellis of frames x (2 x label length + 1) states: quadratic in the length.

* REFERENCE: the algorithms before the fix, kept here only to measure them: torch's CTC loss
  (it stores the whole float32 forward table for its backward pass) and a Viterbi that copies the
  (T, S) emissions to float64 and keeps (T, S) int8 back-pointers.
* BOUNDED: ``modeling_mlpl.pseudo_labeling.alignment`` now: an O(S) streaming forward and a
  checkpointed Viterbi (score vectors every K ~ sqrt(8T) frames, one segment's back-pointers).

Each (length, mode, algorithm) runs in its own process (simulated log-probs: ~3 frames per
character, 30 ms frames, benchmarks/simulated_logits.py); the peak is the process's ru_maxrss
(what ``/usr/bin/time -f %M`` reports; ~0.45 GB of it is Python + torch + numpy before the call). REFERENCE rows whose estimated tables pass ``--reference-max-gb``
are not run (shared machine) and show the estimate instead.

    python benchmarks/bench_pl_memory.py [--seconds 60 300 600 1800] [--out benchmarks/results/pl_memory]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from unittest import mock

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_io import write_results  # noqa: E402
from simulated_logits import simulate_ctc_logits  # noqa: E402

from modeling_mlpl.pseudo_labeling import alignment  # noqa: E402

FRAME_SECONDS = 0.03
VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|"] + list("abcdefghijklmnopqrstuvwxyz'")
MODES = ("greedy", "lm_text")


def reference_forced_align(log_probs, tokens, blank=0):
    """The Viterbi alignment before the fix (whole (T, S) float64 emissions and int8 back-pointers)."""
    log_probs = np.asarray(log_probs, dtype=np.float64)
    T = log_probs.shape[0]
    states, skip = alignment._ctc_states(tokens, blank)
    S = len(states)
    emit = log_probs[:, states]  # (T, S) float64: the copy that dominated
    score = np.full(S, -np.inf)
    score[:2] = emit[0, :2]
    back = np.zeros((T, S), dtype=np.int8)
    for t in range(1, T):
        score, back[t] = alignment._viterbi_step(score, skip, emit[t])
    s = S - 1 if score[S - 1] >= score[S - 2] else S - 2
    path = np.empty(T, dtype=np.int64)
    for t in range(T - 1, -1, -1):
        path[t] = s
        s -= int(back[t, s])
    spans = []
    for t, s in enumerate(path.tolist()):
        if s % 2 == 1:
            if len(spans) == s // 2:
                spans.append(alignment.Span(int(states[s]), t, t))
            else:
                spans[s // 2] = alignment.Span(int(states[s]), spans[s // 2].first, t)
    return spans


def simulated_recording(seconds: float, seed: int = 0) -> tuple[np.ndarray, str]:
    """(T, V) float32 log-probs of ``seconds`` of fake speech, and the text it "said"."""
    rng = np.random.default_rng(seed)
    letters = list("abcdefghijklmnopqrstuvwxyz")
    words = ["".join(rng.choice(letters, size=rng.integers(2, 8))) for _ in range(int(seconds * 4))]
    logits = simulate_ctc_logits(" ".join(words), VOCAB, rng)
    frames = int(round(seconds / FRAME_SECONDS))
    while len(logits) < frames:  # too little text: cut at the length, never pad with silence
        words += words
        logits = simulate_ctc_logits(" ".join(words), VOCAB, rng)
    logits = logits[:frames]
    log_probs = (logits - np.logaddexp.reduce(logits, -1, keepdims=True)).astype(np.float32)
    return log_probs, " ".join(words)


def child(inputs: str, mode: str, algorithm: str) -> dict:
    """One measurement, in this (fresh) process, of the log-probs the parent saved to ``inputs``
    (simulating them here would set the process's peak before the call)."""
    saved = np.load(inputs)
    log_probs, seconds = saved["log_probs"], float(saved["seconds"])
    id2token = dict(enumerate(VOCAB))
    token2id = {t: i for i, t in id2token.items()}
    lm_text = str(saved["lm_text"]) if mode == "lm_text" else None
    patches = []
    if algorithm == "reference":
        patches = [mock.patch.object(alignment, "DENSE_CELLS", 1 << 62),
                   mock.patch.object(alignment, "forced_align", reference_forced_align)]  # fmt: skip
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    for patch in patches:
        patch.start()
    label, scores = alignment.label_from_log_probs(log_probs, id2token, token2id, FRAME_SECONDS, text=lm_text)
    seconds_taken = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "seconds": seconds, "mode": mode, "algorithm": algorithm, "frames": int(log_probs.shape[0]),
        "label_chars": len(label.text), "process_peak_mb": round(peak / 1024, 1),
        "peak_growth_mb": round(max(peak - base, 0) / 1024, 1),
        "time_s": round(seconds_taken, 2), "ctc_score": round(scores["ctc_score"], 6),
        "text_crc": zlib.crc32(label.text.encode()), "times_sum": round(sum(label.token_times), 3),
    }  # fmt: skip


def estimated_reference_gb(seconds: float, mode: str) -> float:
    """The reference's (T, S) tables: float32 forward table (+ float64 emissions and int8 back-pointers)."""
    frames = seconds / FRAME_SECONDS
    states = 2 * frames / 3 + 1  # ~3 frames per character in the simulation
    per_cell = 4 + (9 if mode == "lm_text" else 0)
    return frames * states * per_cell / 1e9


def run(seconds: list[float], modes: list[str], reference_max_gb: float, workdir: str) -> list[dict]:
    rows = []
    id2token = dict(enumerate(VOCAB))
    token2id = {t: i for i, t in id2token.items()}
    for s in seconds:
        log_probs, _ = simulated_recording(s)
        # LM text: the greedy label's own text (what an LM decode of these log-probs is close to).
        lm_text = alignment.label_from_log_probs(log_probs, id2token, token2id, FRAME_SECONDS)[0].text
        inputs = str(Path(workdir, f"{s:g}.npz"))
        np.savez(inputs, log_probs=log_probs, seconds=s, lm_text=lm_text)
        for mode in modes:
            for algorithm in ("reference", "bounded"):
                estimate = estimated_reference_gb(s, mode)
                if algorithm == "reference" and estimate > reference_max_gb:
                    rows.append({"seconds": s, "mode": mode, "algorithm": algorithm, "skipped": True,
                                 "estimated_gb": round(estimate, 1)})  # fmt: skip
                    continue
                cmd = [sys.executable, __file__, "--child", inputs, mode, algorithm]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                rows.append(json.loads(out.strip().splitlines()[-1]))
                print(rows[-1], file=sys.stderr)
    return rows


def render(rows: list[dict]) -> str:
    lines = [
        "| recording | mode | frames | reference peak | bounded peak | reference time | bounded time | same label |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    by_key = {(r["seconds"], r["mode"], r["algorithm"]): r for r in rows}
    for s, mode in dict.fromkeys((r["seconds"], r["mode"]) for r in rows):
        ref, new = by_key[(s, mode, "reference")], by_key[(s, mode, "bounded")]
        if ref.get("skipped"):
            ref_peak, ref_time, same = f"not run (~{ref['estimated_gb']} GB est.)", "-", "-"
        else:
            ref_peak, ref_time = f"{ref['process_peak_mb']} MB", f"{ref['time_s']} s"
            same = "yes" if all(ref[k] == new[k] for k in ("text_crc", "times_sum")) else "NO"
            same += f" (ctc_score {ref['ctc_score']} vs {new['ctc_score']})"
        lines.append(f"| {s:g} s | {mode} | {new['frames']} | {ref_peak} | {new['process_peak_mb']} MB | {ref_time} | "
                     f"{new['time_s']} s | {same} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, nargs="+", default=[60, 300, 600, 1800], help="recording lengths")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES),
                        help="greedy: the paper's PLs (scored only); lm_text: LM text, force-aligned and scored")
    parser.add_argument("--reference-max-gb", type=float, default=4.0,
                        help="skip REFERENCE runs whose (T, S) tables are estimated above this")  # fmt: skip
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "pl_memory"))
    parser.add_argument("--child", nargs=3, metavar=("NPZ", "MODE", "ALGORITHM"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return 0
    with tempfile.TemporaryDirectory() as workdir:
        rows = run(args.seconds, args.modes, args.reference_max_gb, workdir)
    header = (f"Peak memory of label_from_log_probs over one recording (benchmarks/bench_pl_memory.py; "
              f"{platform.processor() or platform.machine()}, 1 thread). Peak = the process's ru_maxrss (imports included).\n\n")  # fmt: skip
    write_results(args.out, header + render(rows), {"rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
