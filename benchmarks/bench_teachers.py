#!/usr/bin/env python
"""Labeling throughput of external teachers: our labeler vs transformers' ASR pipeline, same model, same files.

ours:      modeling_mlpl.pseudo_labeling (load_teacher + PseudoLabeler + label_dataset): audio decoded ahead in
           threads, recordings cut into <= 10 s windows (2 s context each side), windows sorted by length and
           packed into batches of <= --max_batch_seconds, one forward per batch; rows with text, times and
           scores written to fsync'd JSONL shards (strictly more work per recording than the pipeline).
           Whisper: recordings length-sorted and decoded --max_batch_seconds of padded audio per `generate`.
pipeline:  transformers.pipeline("automatic-speech-recognition", model, batch_size=--pipeline_batch_size) over
           the recordings in folder order (read with soundfile inside the timed loop, as ours reads them);
           CTC: chunk_length_s=10, stride_length_s=2 (the same windows; a recording <= 10 s is one chunk).
mlpl:      our labeler with an mlpl model of the same transformer shape ("small" preset): the path the paper's
           teacher takes, for the "per FLOP" comparison.

Models are random (throughput does not depend on the weights): a Wav2Vec2ForCTC of realistic shape (conv front
end of 7 layers x 128 channels, 6 transformer layers, hidden 256) and, when the Whisper teacher exists on this
branch (teachers/whisper.py), a WhisperForConditionalGeneration (2 + 2 layers, d_model 256; generation capped
at --whisper_max_new_tokens for both runners, since random weights never stop on their own). FLOPs per audio
second are counted with torch.utils.flop_counter on a 10 s forward. The runners alternate (ours, pipeline,
pipeline, ours, ...) over --rounds rounds and each keeps its best round: other processes share the CPU, and the
least disturbed round is the closest to each runner's own speed. Results: benchmarks/results/teachers.{md,json}.
"""

from __future__ import annotations

import argparse
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_pseudo_label import make_checkpoint, synthetic_recordings  # noqa: E402
from results_io import write_results  # noqa: E402

from modeling_mlpl.audio import load_audio  # noqa: E402
from modeling_mlpl.data import load_audio_folder  # noqa: E402
from modeling_mlpl.pseudo_labeling import PseudoLabelConfig, PseudoLabeler, label_dataset  # noqa: E402
from modeling_mlpl.pseudo_labeling.teachers import DecodeOptions, load_teacher  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SR = 16000
LETTERS = "abcdefghijklmnopqrstuvwxyz'"
GOALS = {"ctc": 2.0, "whisper": 1.5}  # ours / pipeline


def build_wav2vec2(folder: Path) -> None:
    """A random Wav2Vec2ForCTC of a realistic shape with its processor (attention mask: padded batches are exact)."""
    import json

    from transformers import Wav2Vec2Config, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC, Wav2Vec2Processor

    folder.mkdir(parents=True)
    vocab = {t: i for i, t in enumerate(["<pad>", "<s>", "</s>", "<unk>", "|", *LETTERS])}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    config = Wav2Vec2Config(vocab_size=len(vocab), pad_token_id=0, hidden_size=256, num_hidden_layers=6,
                            num_attention_heads=4, intermediate_size=1024, conv_dim=(128,) * 7,
                            feat_extract_norm="layer", do_stable_layer_norm=True, num_conv_pos_embeddings=64,
                            num_conv_pos_embedding_groups=16, mask_time_prob=0.0)  # fmt: skip
    torch.manual_seed(0)
    Wav2Vec2ForCTC(config).eval().save_pretrained(folder)
    tokenizer = Wav2Vec2CTCTokenizer(str(folder / "vocab.json"), word_delimiter_token="|")
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SR, padding_value=0.0, do_normalize=True,
                                         return_attention_mask=True)  # fmt: skip
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)


def whisper_available() -> bool:
    try:
        import modeling_mlpl.pseudo_labeling.teachers.whisper  # noqa: F401
    except ImportError:
        return False
    return True


def build_whisper(folder: Path, max_new_tokens: int) -> None:
    """A random Whisper of 2 + 2 layers, d_model 256, with the tests' tiny multilingual tokenizer and generation
    config (its language tokens). Random weights never stop on their own: generation is capped at
    `max_new_tokens` in the saved generation config, which both runners read."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from helpers_whisper import build_tiny_whisper
    from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration

    build_tiny_whisper(folder)
    config = WhisperConfig.from_pretrained(folder)
    config.update(dict(d_model=256, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                       decoder_attention_heads=4, encoder_ffn_dim=1024, decoder_ffn_dim=1024, max_target_positions=448))
    generation = GenerationConfig.from_pretrained(folder)
    generation.max_new_tokens = max_new_tokens
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = generation
    model.save_pretrained(folder)


class ForwardCounter:
    """Real vs padded input of every forward of `module` (a pre-hook: counts what the runner fed the model)."""

    def __init__(self, module: torch.nn.Module, key: str):
        self.key, self.calls, self.real, self.padded = key, 0, 0, 0
        self.handle = module.register_forward_pre_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs):
        x = kwargs.get(self.key, args[0] if args else None)
        mask = kwargs.get("attention_mask")
        self.calls += 1
        self.padded += x.shape[0] * x.shape[-1]
        self.real += int(mask.sum()) if mask is not None and mask.dim() == 2 and mask.shape[-1] == x.shape[-1] else x.shape[0] * x.shape[-1]

    def reset(self) -> None:
        self.calls = self.real = self.padded = 0


def flops_per_audio_second(model: torch.nn.Module, feature_extractor, seconds: float = 10.0) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    audio = np.random.default_rng(0).standard_normal(int(seconds * SR)).astype(np.float32) * 0.1
    inputs = feature_extractor(audio, sampling_rate=SR, return_tensors="pt")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(**{k: v for k, v in inputs.items() if k in ("input_values", "attention_mask", "input_features")})
    return counter.get_total_flops() / seconds


def forward_split(folder: Path, seconds: float = 14.0, batch: int = 4) -> dict:
    """Where a CTC teacher's forward goes: the conv feature encoder's share of one padded batch of `batch`
    windows of `seconds` (the labeler's 10 s + 2 x 2 s context): the work both runners do per sample."""
    teacher = load_teacher(str(folder))
    model, x = teacher.model, torch.randn(batch, int(seconds * SR))
    times = {}
    with torch.no_grad():
        for name, fn in (("feature_encoder_s", lambda: model.base_model.feature_extractor(x)),
                         ("forward_s", lambda: model(x))):  # fmt: skip
            fn()
            start = time.perf_counter()
            fn()
            times[name] = time.perf_counter() - start
    times["feature_encoder_share"] = times["feature_encoder_s"] / times["forward_s"]
    return times


def run_ours(folder: str, audio_dir: Path, out: Path, max_batch_seconds: float, language: str | None) -> dict:
    """Our labeler end to end over the folder (teacher loaded before the clock starts)."""
    teacher = load_teacher(folder, options=DecodeOptions(window_s=10.0, overlap_s=2.0, max_batch_seconds=max_batch_seconds))
    labeler = PseudoLabeler(teacher, config=PseudoLabelConfig(language=language, max_batch_seconds=max_batch_seconds))
    # Whisper pads every window to 30 s: its encoder's inputs say how much; the others count their own padding.
    counter = ForwardCounter(teacher.model.model.encoder, "input_features") if teacher.kind == "whisper" else None
    dataset = load_audio_folder(audio_dir, language=language or "")
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    stats = label_dataset(dataset, out, labeler, progress=False)
    wall = time.perf_counter() - start
    if counter is not None:
        counter.handle.remove()
        padding = _padding(counter, stats.audio_seconds)
    else:
        pad = teacher.padding_stats
        padding = {"forward_calls": pad.forward_calls, "padding_fraction": pad.padding_fraction}
    return {"wall_s": wall, "audio_s": stats.audio_seconds, "rows": stats.done, **padding}


def _model(teacher) -> torch.nn.Module:
    return teacher.base.model if teacher.kind == "mlpl" else teacher.model


def _padding(counter: ForwardCounter, audio_s: float) -> dict:
    if counter.key == "input_features":  # Whisper's encoder always reads 30 s windows: padding = beyond the audio
        padded_s = counter.padded / 100.0  # mel frames at 100 per second
        return {"forward_calls": counter.calls, "padding_fraction": max(0.0, 1 - audio_s / padded_s) if padded_s else 0.0}
    return {"forward_calls": counter.calls, "padding_fraction": 1 - counter.real / counter.padded if counter.padded else 0.0}


def run_pipeline(folder: str, paths: list[str], batch_size: int, chunked: bool, language: str | None,
                 max_new_tokens: int | None) -> dict:  # fmt: skip
    from transformers import pipeline

    kwargs = {"chunk_length_s": 10.0, "stride_length_s": 2.0} if chunked else {}
    asr = pipeline("automatic-speech-recognition", model=folder, device="cpu", batch_size=batch_size, **kwargs)
    is_whisper = asr.model.config.model_type == "whisper"
    counter = ForwardCounter(asr.model.model.encoder, "input_features") if is_whisper else ForwardCounter(asr.model, "input_values")
    # Whisper: timestamps on, as our teacher decodes (openai's transcribe default; gives segments).
    generate_kwargs = {"language": language, "task": "transcribe", "max_new_tokens": max_new_tokens} if is_whisper else None
    kwargs = {"generate_kwargs": generate_kwargs, "return_timestamps": True} if is_whisper else {}
    audio_s = 0.0

    def inputs():
        nonlocal audio_s
        for path in paths:
            wave = load_audio(path)
            audio_s += len(wave) / SR
            yield {"raw": wave, "sampling_rate": SR}

    start = time.perf_counter()
    rows = sum(1 for _ in asr(inputs(), **kwargs))
    wall = time.perf_counter() - start
    counter.handle.remove()
    return {"wall_s": wall, "audio_s": audio_s, "rows": rows, **_padding(counter, audio_s)}


def compare(name: str, runners: dict, rounds: int) -> dict:
    """Alternate the runners `rounds` times (ABBA...) and keep each one's fastest round."""
    best: dict[str, dict] = {}
    order = list(runners)
    for r in range(rounds):
        for runner in (order if r % 2 == 0 else order[::-1]):
            load = os.getloadavg()[0]
            result = {**runners[runner](), "load_1min": load}
            result["audio_s_per_s"] = result["audio_s"] / result["wall_s"]
            print(f"{name} {runner} round {r}: {result['audio_s_per_s']:.2f} audio-s/s (load {load:.1f})", flush=True)
            result["rounds_audio_s_per_s"] = best.get(runner, {}).get("rounds_audio_s_per_s", []) + [result["audio_s_per_s"]]
            if runner not in best or result["audio_s_per_s"] > best[runner]["audio_s_per_s"]:
                best[runner] = result
            else:
                best[runner]["rounds_audio_s_per_s"] = result["rounds_audio_s_per_s"]
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num_files", type=int, default=40)
    p.add_argument("--min_s", type=float, default=2.0)
    p.add_argument("--max_s", type=float, default=25.0)
    p.add_argument("--max_batch_seconds", type=float, default=60.0, help="ours: padded audio per forward")
    p.add_argument("--pipeline_batch_size", type=int, default=8, help="pipeline: items (chunks) per forward")
    p.add_argument("--whisper_batch_seconds", type=float, default=240.0,
                   help="ours, Whisper: padded audio per generate (8 recordings of 30 s, the pipeline's batch)")
    p.add_argument("--whisper_max_new_tokens", type=int, default=24)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch threads of every runner (torch.set_num_threads)")
    p.add_argument("--skip", nargs="*", default=[], choices=["ctc", "whisper", "mlpl"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default=str(RESULTS / "teachers"), help="results path without extension")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="bench-teachers-"))
    results: dict[str, dict] = {}
    models: dict[str, dict] = {}
    try:
        audio_dir = work / "audio"
        durations = np.random.default_rng(args.seed).uniform(args.min_s, args.max_s, args.num_files)
        synthetic_recordings(audio_dir, durations, args.seed)
        paths = sorted(str(p) for p in audio_dir.glob("*.wav"))
        # (the pipeline walks the folder in sorted order, as load_audio_folder lists it: same files, same order)

        if "ctc" not in args.skip:
            folder = work / "wav2vec2"
            build_wav2vec2(folder)
            models["ctc"] = _model_facts(folder)
            models["ctc"]["forward_split"] = forward_split(folder)
            results["ctc"] = compare("ctc", {
                "ours": lambda: run_ours(str(folder), audio_dir, work / "pl-ctc", args.max_batch_seconds, "en"),
                "pipeline": lambda: run_pipeline(str(folder), paths, args.pipeline_batch_size, True, None, None),
            }, args.rounds)  # fmt: skip
        if "mlpl" not in args.skip:
            folder = work / "mlpl"
            make_checkpoint(folder, "small")
            models["mlpl"] = _model_facts(folder)
            results["mlpl"] = compare("mlpl", {
                "ours": lambda: run_ours(str(folder), audio_dir, work / "pl-mlpl", args.max_batch_seconds, "de"),
            }, args.rounds)  # fmt: skip
        if "whisper" not in args.skip and whisper_available():
            folder = work / "whisper"
            build_whisper(folder, args.whisper_max_new_tokens)
            models["whisper"] = _model_facts(folder)
            results["whisper"] = compare("whisper", {
                "ours": lambda: run_ours(str(folder), audio_dir, work / "pl-whisper", args.whisper_batch_seconds, "en"),
                "pipeline": lambda: run_pipeline(str(folder), paths, args.pipeline_batch_size, False, "en",
                                                 args.whisper_max_new_tokens),
            }, args.rounds)  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_end = os.getloadavg()
    render(args, durations, results, models, load_start, load_end)


def _model_facts(folder: Path) -> dict:
    """Parameters and forward GFLOPs per audio second of the checkpoint in `folder` (loaded once, aside)."""
    teacher = load_teacher(str(folder))
    model = _model(teacher)
    facts = {"kind": teacher.kind, "parameters": sum(p.numel() for p in model.parameters())}
    if teacher.kind != "whisper":  # Whisper's cost is mostly generation steps: its FLOPs depend on the text
        extractor = teacher.base.processor.feature_extractor if teacher.kind == "mlpl" else teacher.feature_extractor
        facts["gflops_per_audio_s"] = flops_per_audio_second(model, extractor) / 1e9
    return facts


def render(args, durations, results: dict, models: dict, load_start, load_end) -> None:
    long = int(np.sum(durations > 10.0))
    lines = [
        "# Teachers: our labeler vs transformers' ASR pipeline",
        "",
        f"`python benchmarks/bench_teachers.py --threads {args.threads} --rounds {args.rounds}` "
        f"({platform.processor() or 'cpu'}, torch {torch.__version__}, torch.set_num_threads({args.threads}) for "
        f"every runner). {args.num_files} synthetic recordings, {durations.sum():.0f} s of audio, "
        f"{args.min_s:.0f}-{args.max_s:.0f} s (mean {durations.mean():.1f} s, {long} longer than 10 s). Ours: "
        f"<= 10 s windows (2 s context), batches of <= {args.max_batch_seconds:.0f} s padded audio (Whisper: "
        f"{args.whisper_batch_seconds:.0f} s); pipeline: batch_size {args.pipeline_batch_size}, CTC with "
        "chunk_length_s 10, stride_length_s 2. Random weights of the shapes below. Each runner's best of "
        f"{args.rounds} alternating rounds. Load average (1/5/15 min) at start "
        f"{'/'.join(f'{x:.1f}' for x in load_start)}, at end {'/'.join(f'{x:.1f}' for x in load_end)} on "
        f"{os.cpu_count()} cores shared with other jobs: absolute numbers are pessimistic, ratios are the result.",
        "",
        "| teacher | params (M) | GFLOP / audio s | runner | audio s / s | rounds | ours / pipeline | goal | padding | forward calls | GFLOP/s |",
        "|---|---:|---:|---|---:|---|---:|---|---:|---:|---:|",
    ]  # fmt: skip
    for teacher, per_runner in results.items():
        facts = models[teacher]
        gflops = facts.get("gflops_per_audio_s")
        for runner, r in per_runner.items():
            ratio, goal = "", ""
            if runner == "ours" and "pipeline" in per_runner:
                x = r["audio_s_per_s"] / per_runner["pipeline"]["audio_s_per_s"]
                r["ratio_vs_pipeline"] = x
                ratio = f"{x:.2f}x"
                goal = f">= {GOALS[teacher]}x: {'met' if x >= GOALS[teacher] else 'MISSED'}"
            rate = f"{gflops * r['audio_s_per_s']:.1f}" if gflops else "–"
            lines.append(f"| {teacher} | {facts['parameters'] / 1e6:.1f} | {f'{gflops:.2f}' if gflops else '–'} | "
                         f"{runner} | {r['audio_s_per_s']:.2f} | "
                         f"{', '.join(f'{x:.2f}' for x in r['rounds_audio_s_per_s'])} | {ratio} | {goal} | "
                         f"{100 * r['padding_fraction']:.1f} % | {r['forward_calls']} | {rate} |")  # fmt: skip
    lines.append("")
    split = models.get("ctc", {}).get("forward_split")
    ctc = results.get("ctc", {})
    if split and "pipeline" in ctc and ctc["ours"].get("ratio_vs_pipeline", 0) < GOALS["ctc"]:
        lines += [f"What limits the CTC ratio: the model's forward, which both runners run on the same samples. "
                  f"Its conv feature encoder alone takes {100 * split['feature_encoder_share']:.0f} % of a forward "
                  f"of 4 x 14 s windows ({split['forward_s']:.2f} s; torch.profiler: mkldnn convolutions and the "
                  "layout copies around the conv layer norms lead, then the transformer's matmuls; our labeler's own "
                  "work, CTC scores and text, is ~2 %). What the labeler can save is samples: padding "
                  f"({100 * ctc['ours']['padding_fraction']:.0f} % vs {100 * ctc['pipeline']['padding_fraction']:.0f} %) "
                  "and window context (14 s computed per 10 s kept, vs the pipeline's 10 s per 6 s); 2x needs less "
                  "computed audio per second kept (longer windows: --window_s 20 computes 24 s per 20 s) or a "
                  "cheaper model. The same conv "
                  "front end, memory-bound at 1600-3200 frames/s, is why this teacher does fewer GFLOP/s than the "
                  "mlpl model (log-mel features, then the transformer): the labeler's path is shared.", ""]
    if "whisper" not in results:
        lines += ["Whisper: not measured (the Whisper teacher, teachers/whisper.py, is not on this branch).", ""]
    write_results(args.output, "\n".join(lines),
                  {"args": vars(args), "durations_s": [float(d) for d in durations], "models": models,
                   "results": results, "load_start": list(load_start), "load_end": list(load_end)})  # fmt: skip


if __name__ == "__main__":
    main()
