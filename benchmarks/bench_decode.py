#!/usr/bin/env python
"""CTC decoding speed and accuracy: greedy vs beam search, pyctcdecode vs flashlight, same beam.

Two kinds of logits, each decoded by every decoder in the same run (so the ratios compare like
with like on a shared machine):

* REAL: dev-set logits of a trained model (``--logits FILE.npz``, as
  ``modeling_mlpl.decoding.tuning.save_logits`` writes them; repeatable) decoded with the LMs and tuned
  alpha/beta of ``--processor_dir`` (its ``language_model/``). This is the number that matters.
* SIMULATED: wordfreq sentences "spoken" by a fake acoustic model (benchmarks/simulated_logits.py:
  1-3 frames per character, some characters confused) and a word 3-gram LM built from other
  sentences of the same distribution. Skipped with ``--simulated 0``.

Per row: ms per utterance (median of ``--repeats``), WER/CER against the references, the speed
ratio of flashlight vs pyctcdecode at that beam, and how many reference words outside the LM's
vocabulary (OOV) each decoder got right (the lexicon decoder can only spell them through its
``<unk>`` path).

    python benchmarks/bench_decode.py --processor_dir exp/demo/seed0/lm/processor \\
        --logits exp/demo/seed0/lm/dev-stage2-pt.npz --logits ... [--widths 16 32]
"""

from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from decode_gap import section_of  # noqa: E402
from simulated_logits import simulate_ctc_logits  # noqa: E402

from modeling_mlpl.command_line import ArgumentParser  # noqa: E402
from modeling_mlpl.decoding.lm_decoder import LMDecoder  # noqa: E402
from modeling_mlpl.decoding.ngram_lm import build_lm  # noqa: E402
from modeling_mlpl.decoding.tuning import load_logits  # noqa: E402
from modeling_mlpl.evaluation.metrics import cer, wer  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
BACKENDS = ("pyctcdecode", "flashlight")


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


def oov_hits(references: list[str], predictions: list[str], lexicon: set[str]) -> tuple[int, int]:
    """(reference words outside ``lexicon``, how many of them the prediction of their utterance has)."""
    total = hits = 0
    for ref, hyp in zip(references, predictions):
        have = Counter(hyp.split())
        for word in ref.split():
            if word not in lexicon:
                total += 1
                if have[word] > 0:
                    hits += 1
                    have[word] -= 1
    return total, hits


def compare(name: str, logits: list[np.ndarray], refs: list[str], decoders: dict[str, LMDecoder],
            language: str | None, widths: list[int], repeats: int, lexicon: set[str]) -> list[dict]:  # fmt: skip
    """Rows for one set of logits: greedy, then each backend at each beam width (with the LM)."""
    first = decoders[BACKENDS[0]]
    for decoder in decoders.values():  # build searches and load LMs outside the timings
        decoder.decode_batch(logits[:1], language, beam_width=widths[0])
    runs = [("greedy", None, None, lambda: first.greedy_decode(logits))]
    for width in widths:
        for backend, decoder in decoders.items():
            runs.append((backend, backend, width,
                         lambda d=decoder, w=width: d.decode_batch(logits, language, beam_width=w)))  # fmt: skip
    rows = []
    for label, backend, width, fn in runs:
        seconds, texts = timed(fn, repeats)
        total, hits = oov_hits(refs, texts, lexicon)
        rows.append({"logits": name, "language": language, "decoder": label, "backend": backend, "beam": width,
                     "utterances": len(logits), "ms_per_utt": 1000 * seconds / len(logits),
                     "wer": wer(refs, texts), "cer": cer(refs, texts), "oov_words": total, "oov_correct": hits})  # fmt: skip
    for row in rows:
        if row["backend"] == "flashlight":
            base = next(r for r in rows if r["backend"] == "pyctcdecode" and r["beam"] == row["beam"])
            row["speedup_vs_pyctcdecode"] = base["ms_per_utt"] / row["ms_per_utt"]
            row["cer_minus_pyctcdecode"] = row["cer"] - base["cer"]
    return rows


def real_rows(args) -> tuple[list[dict], dict]:
    decoders = {b: LMDecoder.from_pretrained(args.processor_dir, backend=b) for b in BACKENDS}
    rows = []
    for path in args.logits:
        logits, refs, langs, _ = load_logits(path)
        by_lang: dict[str | None, list[int]] = {}
        for i, lang in enumerate(langs):
            by_lang.setdefault(lang, []).append(i)
        for lang, idx in by_lang.items():
            idx = idx[: args.max_utterances] if args.max_utterances else idx
            cfg = decoders[BACKENDS[0]].config.languages.get(lang)
            lexicon = set()
            if cfg is not None and cfg.unigrams_file:
                lexicon = set(decoders[BACKENDS[0]]._path(cfg.unigrams_file).read_text(encoding="utf-8").split())
            rows += compare(Path(path).name, [logits[i] for i in idx], [refs[i] for i in idx], decoders, lang,
                            args.widths, args.repeats, lexicon)  # fmt: skip
            logging.info("%s %s done", path, lang)
    meta = {"processor_dir": str(args.processor_dir),
            "alpha_beta": {k: [v.alpha, v.beta] for k, v in decoders[BACKENDS[0]].config.languages.items()},
            "flashlight": {"beam_threshold": decoders["flashlight"].config.beam_threshold,
                           "token_beam": decoders["flashlight"].config.token_beam}}  # fmt: skip
    return rows, meta


def simulated_rows(args) -> tuple[list[dict], dict]:
    rng = np.random.default_rng(0)
    sentences = sample_sentences(args.simulated + args.lm_sentences, rng)
    test, lm_text = sentences[: args.simulated], sentences[args.simulated :]
    vocab = ["<pad>", "<unk>", "|"] + sorted({c for s in sentences for c in s if c != " "})
    logits = [simulate_ctc_logits(s, vocab, rng, confusion_rate=args.confusion_rate) for s in test]
    with tempfile.TemporaryDirectory() as tmp:
        lm = build_lm(lm_text, Path(tmp) / "en", order=args.order, memory="200M")
        decoders = {b: LMDecoder.from_lm_dirs(vocab, {"en": lm.directory}, alpha=0.5, beta=1.0, backend=b)
                    for b in BACKENDS}  # fmt: skip
        lexicon = set(lm.unigrams.read_text(encoding="utf-8").split())
        rows = compare("simulated", logits, test, decoders, "en", args.widths, args.repeats, lexicon)
    meta = {"utterances": len(logits), "mean_frames": float(np.mean([x.shape[0] for x in logits])),
            "vocab_size": len(vocab), "lm_sentences": len(lm_text), "lm_order": args.order,
            "confusion_rate": args.confusion_rate, "alpha_beta": [0.5, 1.0]}  # fmt: skip
    return rows, meta


def table(rows: list[dict]) -> list[str]:
    lines = ["| logits | lang | decoder | beam | utts | ms / utt | flashlight speed-up | WER | CER | OOV right |",
             "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        speed = f"{r['speedup_vs_pyctcdecode']:.1f}x" if "speedup_vs_pyctcdecode" in r else ""
        oov = f"{r['oov_correct']}/{r['oov_words']}" if r["oov_words"] else "-"
        lines.append(f"| {r['logits']} | {r['language']} | {r['decoder']} | {r['beam'] or ''} | {r['utterances']} | "
                     f"{r['ms_per_utt']:.2f} | {speed} | {100 * r['wer']:.1f} | {100 * r['cer']:.2f} | {oov} |")  # fmt: skip
    return lines


def summary(rows: list[dict]) -> list[dict]:
    """Per beam width over the real rows: total time ratio and utterance-weighted CER of each backend."""
    out = []
    for width in sorted({r["beam"] for r in rows if r["beam"]}):
        agg = {}
        for backend in BACKENDS:
            sel = [r for r in rows if r["backend"] == backend and r["beam"] == width]
            n = sum(r["utterances"] for r in sel)
            agg[backend] = {"ms_per_utt": sum(r["ms_per_utt"] * r["utterances"] for r in sel) / n,
                            "cer": sum(r["cer"] * r["utterances"] for r in sel) / n}  # fmt: skip
        out.append({"beam": width, **{f"{b}_{k}": v for b in BACKENDS for k, v in agg[b].items()},
                    "speedup": agg["pyctcdecode"]["ms_per_utt"] / agg["flashlight"]["ms_per_utt"]})  # fmt: skip
    return out


def main(argv=None) -> int:
    p = ArgumentParser(description=__doc__)
    p.add_argument("--logits", action="append", default=[], help="real dev logits .npz (repeatable)")
    p.add_argument("--processor_dir", help="processor folder with language_model/ (needed with --logits)")
    p.add_argument("--max_utterances", type=int, default=None, help="per language and file cap")
    p.add_argument("--simulated", type=int, default=60, help="simulated utterances (0: none)")
    p.add_argument("--lm_sentences", type=int, default=20000)
    p.add_argument("--order", type=int, default=3)
    p.add_argument("--widths", type=int, nargs="+", default=[16, 32], help="beam widths (both backends each)")
    p.add_argument("--confusion_rate", type=float, default=0.1)
    p.add_argument("--repeats", type=int, default=1, help="median of this many runs")
    p.add_argument("--out", default=str(RESULTS / "decode"), help="writes OUT.md and OUT.json")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("pyctcdecode").setLevel(logging.ERROR)
    if args.logits and not args.processor_dir:
        print("bench_decode.py: error: --logits needs --processor_dir (the LMs to decode with)", file=sys.stderr)
        return 2

    meta: dict = {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                  "python": platform.python_version(), "repeats": args.repeats, "widths": args.widths}  # fmt: skip
    rows: list[dict] = []
    start = time.perf_counter()
    if args.logits:
        real, meta["real"] = real_rows(args)
        rows += real
        meta["real_summary"] = summary(real)
    if args.simulated:
        simulated, meta["simulated"] = simulated_rows(args)
        rows += simulated
    meta["load_average_1min"] = os.getloadavg()[0]
    meta["wall_s"] = time.perf_counter() - start

    lines = [
        "CTC decoding: greedy, and beam search with the word n-gram LM through pyctcdecode (pure Python) and "
        "flashlight-text (compiled `LexiconDecoder`), same logits, same beam width, same alpha/beta, one run. "
        f"Median of {args.repeats}; {meta['cpus']} CPUs, load average {meta['load_average_1min']:.1f} at the end. "
        "'flashlight speed-up' = pyctcdecode ms / flashlight ms at that beam; 'OOV right' = reference words outside "
        "the LM vocabulary that the decoder output has.",
        "",
    ]
    if meta.get("real_summary"):
        lines += ["Real dev logits (all languages, utterance-weighted):", "",
                  "| beam | pyctcdecode ms/utt | flashlight ms/utt | speed-up | pyctcdecode CER | flashlight CER |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for s in meta["real_summary"]:
            lines.append(f"| {s['beam']} | {s['pyctcdecode_ms_per_utt']:.2f} | {s['flashlight_ms_per_utt']:.2f} | "
                         f"{s['speedup']:.1f}x | {100 * s['pyctcdecode_cer']:.2f} | {100 * s['flashlight_cer']:.2f} |")  # fmt: skip
        lines.append("")
    lines += table(rows)
    if args.simulated:
        lines += ["", "Simulated logits are not from a trained model: their error rates only show that the LM path works."]
    text = "\n".join(lines) + "\n"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    old = out.with_suffix(".md").read_text(encoding="utf-8") if out.with_suffix(".md").is_file() else ""
    if section_of(old):  # decode_gap.py's ablation lives in the same file: keep it
        text += "\n" + section_of(old)
    out.with_suffix(".md").write_text(text)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
