"""Pseudo-label unlabelled audio (stage 3 of the recipe), on one or many processes, resumably.

Examples:
  # one language, paper style (greedy CTC), 4 GPUs:
  accelerate launch --num_processes 4 run_scripts/pseudo_label.py \\
      --model exp/finetune-de --data voxpopuli:/data/voxpopuli --language de --output_dir exp/pl-de --merge
  # continue after a crash or pre-emption (ids already written are skipped):
  accelerate launch ... run_scripts/pseudo_label.py ... --resume
  # unknown languages: the LID head picks, each recording goes to its language's fine-tuned model:
  python run_scripts/pseudo_label.py --model exp/stage1 --data folder:/audio --language auto \\
      --models_per_language "exp/finetune-{lang}" --output_dir exp/pl-auto
  # re-filter the same raw labels without relabelling:
  python run_scripts/pseudo_label.py --merge_only --output_dir exp/pl-de --top_percent 75

Data (--data KIND:PATH, parsed by modeling_mlpl.data.open_dataset): voxpopuli:ROOT (or vp:ROOT;
unlabelled_data/<lang>/...), cv:ROOT[@SPLIT] (Common Voice layout; its text is ignored),
disk:DIR[:SPLIT] (a datasets dataset saved with save_to_disk, columns id, audio [, duration, offset,
language]), folder:DIR (every file below DIR that libsndfile reads), hub:NAME[@SPLIT]
(datasets.load_dataset). Ids must be unique: an input that repeats one is refused before any work.

Output: OUTPUT_DIR/pl-rankNNNNN.jsonl per process (one JSON line per recording, flushed per batch),
failures-rankNNNNN.jsonl (unreadable audio), pl_run.json (the model, data and decoding options the run
was started with: a --resume with other ones is refused, so one dataset never mixes two runs),
load_report.json (what the loader skipped), and with --merge/--merge_only OUTPUT_DIR/merged/
{dataset/, stats.json, stats.md, confidence_hist.png}. The run ends with an accounting line:
found = labelled + failed (unreadable) + skipped (by the loader) + already done (earlier runs).

Exit codes: 0 done; 2 usage or input error; 3 done, but more than --max_failure_fraction of the
recordings could not be read; 130 interrupted (rerun with --resume); 1 unexpected error.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path


from modeling_mlpl.cli import ArgumentParser, UserError, ensure_output_dir, positive_float
from modeling_mlpl.hub import HubError, add_hub_arguments, maybe_push_to_hub

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_FAILURES, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
DATA_KINDS = ("voxpopuli", "cv", "disk", "folder", "hub")  # as spelt in --help (data.specs.LABEL_INPUT_KINDS)

logger = logging.getLogger("pseudo_label")


def build_parser() -> ArgumentParser:
    p = ArgumentParser(description=__doc__)
    g = p.add_argument_group("what to label")
    g.add_argument("--model", help="model folder or Hub id (a fine-tuned MLPLForCTC with its processor)")
    g.add_argument("--data", help="KIND:PATH, KIND one of " + ", ".join(DATA_KINDS))
    g.add_argument("--split", default="train", help="split for cv:, disk: (DatasetDict) and hub: (default: train)")
    g.add_argument("--data_languages", default=None,
                   help="comma-separated languages to load from voxpopuli:/cv: (default: --language, or all)")
    g.add_argument("--streaming", action="store_true", help="read rows lazily (sorting then uses --sort_buffer)")
    g.add_argument("--limit", type=int, default=None, help="label only the first N rows (trial runs)")
    g.add_argument("--language", default=None,
                   help="language code of the audio, 'auto' (the LID head decides per recording) or unset "
                        "(use the dataset's language column)")  # fmt: skip
    g.add_argument("--models_per_language", default=None,
                   help="path template with {lang}, e.g. 'exp/finetune-{lang}': after LID with --model, each "
                        "recording is decoded by its language's model where that folder exists")  # fmt: skip
    g.add_argument("--output_dir", required=True, help="where the shards (and merged/) go")
    g.add_argument("--resume", action="store_true", help="continue a run: skip ids already in the shards")
    g.add_argument("--retry_failed", action="store_true",
                   help="with --resume: try again the ids recorded as unreadable (e.g. after repairing the files)")

    g = p.add_argument_group("decoding")
    g.add_argument("--lm_dir", default=None,
                   help="processor folder with language_model/ (run_scripts/build_lm.py): LM beam search "
                        "instead of greedy CTC (the paper uses greedy)")  # fmt: skip
    g.add_argument("--beam_width", type=int, default=None, help="LM beam width (default: the LM's config)")
    g.add_argument("--lm_workers", type=int, default=None,
                   help="processes for the LM beam search of each batch (default: the LM's config; beam search is "
                        "pure Python, so on CPU it, not the model, bounds LM-decoded PL speed)")  # fmt: skip
    g.add_argument("--window_s", type=float, default=10.0,
                   help="decode long audio in windows of at most this many seconds (0: whole recordings)")
    g.add_argument("--overlap_s", type=float, default=2.0, help="context each window adds on each side")
    g.add_argument("--max_batch_seconds", type=positive_float, default=60.0,
                   help="audio seconds per forward batch (windows, padding included)")
    g.add_argument("--align_truth", action="store_true",
                   help="synthetic corpus only (voxpopuli:ROOT with unlabelled_truth/): force-align each recording's "
                        "true transcript instead of decoding. Gives the oracle rows, with token times so that they "
                        "are cropped exactly like PLs")  # fmt: skip
    g.add_argument("--lid_top_k", type=int, default=3, help="LID top-k languages recorded per recording")
    g.add_argument("--sort_buffer", type=int, default=None,
                   help="rows sorted by length together (default: the whole shard; 5000 when streaming)")
    g.add_argument("--io_threads", type=int, default=4, help="threads decoding audio ahead of the model")
    g.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32", help="autocast dtype (GPU)")
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    g.add_argument("--no_fsync", action="store_true", help="flush but do not fsync per batch (faster, less safe)")
    g.add_argument("--num_shards", type=int, default=None,
                   help="split the work into N independent jobs (e.g. a SLURM array) instead of using accelerate")
    g.add_argument("--shard_index", type=int, default=None, help="this job's index in 0..num_shards-1")
    g.add_argument("--max_failure_fraction", type=float, default=0.5,
                   help="exit with code 3 when more than this fraction of recordings was unreadable")

    g = p.add_argument_group("merge and filters (applied at merge time; the raw shards are kept)")
    g.add_argument("--merge", action="store_true", help="merge all shards into a dataset when labeling ends")
    g.add_argument("--merge_only", action="store_true", help="only merge existing shards of --output_dir")
    g.add_argument("--merged_dir", default=None, help="merge output (default: OUTPUT_DIR/merged)")
    g.add_argument("--min_confidence", type=float, default=None, help="drop labels below this confidence")
    g.add_argument("--top_percent", type=float, default=None, help="keep the most confident P%% per language")
    g.add_argument("--min_chars", type=int, default=1, help="drop labels with fewer characters (0 keeps empty)")
    g.add_argument("--min_duration_s", type=float, default=0.0, help="drop shorter recordings")
    g.add_argument("--confidence_key", default="confidence", choices=["confidence", "path_score", "ctc_score"],
                   help="score used by --min_confidence and --top_percent")
    add_hub_arguments(p)  # --push_to_hub --hub_model_id ...: the merged dataset as a dataset repo
    p.add_argument("--log_level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def data_languages(args) -> list[str] | None:
    """Languages to read from voxpopuli:/cv: data: --data_languages, else --language (unless auto), else all."""
    if args.data_languages:
        return args.data_languages.split(",")
    return [args.language] if args.language and args.language != "auto" else None


def data_spec(args):
    """--data parsed (:func:`modeling_mlpl.data.parse_data_spec`); a bad one is a one-line usage error."""
    from modeling_mlpl.data.specs import LABEL_INPUT_KINDS, parse_data_spec

    return parse_data_spec(args.data or "", LABEL_INPUT_KINDS)


def load_rows(args):
    """The input dataset (rows with id, audio[, duration, offset, language]) and its loader report."""
    from modeling_mlpl import data as mlpl_data

    # Rows as saved (schema=False): a disk/hub input needs neither transcripts nor a language column.
    ds = mlpl_data.open_dataset(data_spec(args), split=args.split, languages=data_languages(args),
                                streaming=args.streaming, unlabelled=True, schema=False)  # fmt: skip
    features = getattr(ds, "features", None) or {}
    report = mlpl_data.get_load_report(ds)
    # Before any work: a repeated id would lose a recording. Without an id column, the audio paths are the ids.
    if features and "id" not in features and hasattr(ds, "data"):
        paths = ds.data.column("audio").combine_chunks()
        mlpl_data.check_unique_ids(paths.field("path").to_pylist() if hasattr(paths, "field") else paths.to_pylist(),
                                   f"--data {args.data} (no id column: the audio paths are the ids)")  # fmt: skip
    mlpl_data.check_unique_ids(ds, f"--data {args.data}")
    if args.limit is not None:
        ds = ds.take(args.limit) if args.streaming else ds.select(range(min(args.limit, len(ds))))
    return ds, report


def run_inputs(args) -> dict:
    """What the labels depend on, keyed by flag (recorded in OUTPUT_DIR/pl_run.json; a --resume must
    match). Left out: how the work is run (--threads, --io_threads, --sort_buffer, --num_shards, ...),
    --limit (a trial run may be resumed by the full one) and the merge filters (applied later)."""
    from modeling_mlpl.run_inputs import lm_identity, model_identity

    spec = data_spec(args) if args.data else None
    return {
        "--model": model_identity(args.model), "--data": spec.normalized() if spec else ":",
        "--split": args.split if spec and spec.kind in ("cv", "disk", "hub") else None,
        "--data_languages": data_languages(args),
        "--language": args.language, "--models_per_language": args.models_per_language,
        "--lm_dir": lm_identity(args.lm_dir), "--beam_width": args.beam_width, "--window_s": args.window_s,
        "--overlap_s": args.overlap_s, "--align_truth": args.align_truth, "--lid_top_k": args.lid_top_k,
        "--dtype": args.dtype,
    }  # fmt: skip


def write_load_report(out: Path, report) -> None:
    """OUTPUT_DIR/load_report.json: what the loader found and skipped (the merge's accounting reads it)."""
    from modeling_mlpl.pseudo_labeling.merge import LOAD_REPORT

    out.mkdir(parents=True, exist_ok=True)
    (out / LOAD_REPORT).write_text(json.dumps(report.to_dict(), indent=2) + "\n")


def run_accounting(per_rank: list[dict], n_rows: int | None, report, independent: bool):
    """Where every input went in this run, over all processes (`per_rank`: LabelStats dicts; rank 0's
    first). `independent`: a --num_shards job, which sees only its own counts."""
    from modeling_mlpl.data import Accounting

    own = per_rank[0]
    if n_rows is None:  # streamed: the main process met every row, its own or not
        n_rows = own["labelled"] + own["failed"] + own["skipped_done"] + own["not_mine"]
    return Accounting(found=n_rows + report.n_skipped, done=sum(s["labelled"] for s in per_rank),
                      failed=sum(s["failed"] for s in per_rank), skipped=report.n_skipped,
                      already_done=sum(s["skipped_done"] for s in per_rank),
                      elsewhere=own["not_mine"] if independent else 0)  # fmt: skip


def run_merge(args) -> dict:
    from modeling_mlpl.pseudo_labeling import MergeFilters, merge_with_stats

    filters = MergeFilters(min_confidence=args.min_confidence, top_percent=args.top_percent,
                           min_chars=args.min_chars, min_duration_s=args.min_duration_s,
                           confidence_key=args.confidence_key)  # fmt: skip
    merged_dir = Path(args.merged_dir or Path(args.output_dir) / "merged")
    dataset, stats = merge_with_stats(args.output_dir, merged_dir, filters)
    languages = sorted(stats["languages"])
    # The whole PL folder: raw shards (re-filterable) + merged/ (dataset, stats, histogram).
    maybe_push_to_hub(args.output_dir, args, kind="dataset", languages=languages, source_model=args.model)
    logger.info("merged: %d of %d labels kept (%.2f of %.2f h); %d failures; report %s",
                stats["kept"], stats["records"], stats["hours_kept"], stats["hours_in"], stats["failures"],
                merged_dir / "stats.md")  # fmt: skip
    logger.info("merged accounting (all runs): %s", stats["accounting_line"])
    return stats


def run_label(args) -> int:
    import torch
    from accelerate import PartialState

    from modeling_mlpl import data as mlpl_data
    from modeling_mlpl.decoding.lm_decoder import LMDecoder
    from modeling_mlpl.pseudo_labeling import PseudoLabelConfig, PseudoLabeler, label_dataset
    from modeling_mlpl.pseudo_labeling.shards import (FAILURE_PREFIX, RUN_FILE, read_rank_stats, shard_path,
                                                      write_rank_stats)
    from modeling_mlpl.run_inputs import check_run, write_run

    if args.threads:
        torch.set_num_threads(args.threads)
    if (args.num_shards is None) != (args.shard_index is None):
        raise UserError("--num_shards and --shard_index go together")
    if args.num_shards is not None:
        if not 0 <= args.shard_index < args.num_shards:
            raise UserError(f"--shard_index must be in 0..{args.num_shards - 1}")
        rank, world, device, is_main = args.shard_index, args.num_shards, None, args.shard_index == 0
        state = None
    else:
        state = PartialState(cpu=not torch.cuda.is_available())  # else CPU-only torchrun runs are not distributed
        rank, world, device, is_main = state.process_index, state.num_processes, state.device, state.is_main_process
    if not is_main:
        logging.getLogger().setLevel(logging.WARNING)
    if not args.model:
        raise UserError("--model is required (or use --merge_only)")
    if not (os.path.isdir(args.model) or "/" in args.model):
        raise UserError(f"--model {args.model}: no such folder")

    if args.retry_failed and not args.resume:
        raise UserError("--retry_failed continues an earlier run: add --resume")
    out = ensure_output_dir(args.output_dir)
    # Every process checks before the barrier, and nobody writes before it: no process can mistake
    # another's fresh shard for an earlier run. (Independent --num_shards jobs only check their own.)
    if not args.resume and state is not None and any(p.stat().st_size for p in out.glob("*-rank*.jsonl")):
        raise UserError(f"{out} already holds pseudo-label shards: add --resume to continue that run, "
                        "or choose a new --output_dir")  # fmt: skip
    inputs = run_inputs(args)
    if args.resume:  # every process checks before the barrier, so all of them stop together
        check_run(out / RUN_FILE, inputs, "start afresh with a new --output_dir")
    if state is not None:
        state.wait_for_everyone()
    own_shards = [shard_path(out, rank), shard_path(out, rank, FAILURE_PREFIX)]
    if is_main and (args.resume or not any(p.exists() and p.stat().st_size for p in own_shards)):
        write_run(out / RUN_FILE, inputs)  # (a fresh run into old shards is refused by label_dataset)
    rows, report = load_rows(args)
    n_rows = None if args.streaming else len(rows)
    if report is None:  # disk:/hub: nothing skipped at load; the report still says how many rows came in
        report = mlpl_data.LoadReport(source=args.data, loaded=n_rows or 0)
    if is_main:
        write_load_report(out, report)
    sort_buffer = args.sort_buffer or (5000 if args.streaming else None)
    config = PseudoLabelConfig(
        language=args.language, window_s=args.window_s or None, overlap_s=args.overlap_s,
        max_batch_seconds=args.max_batch_seconds, lid_top_k=args.lid_top_k,
        models_per_language=args.models_per_language, beam_width=args.beam_width, sort_buffer=sort_buffer,
        io_threads=args.io_threads, autocast_dtype=None if args.dtype == "fp32" else args.dtype,
        fsync=not args.no_fsync,
    )  # fmt: skip
    transcripts = None
    if args.align_truth:
        if args.lm_dir:
            raise UserError("--align_truth aligns known transcripts: it takes no --lm_dir")
        spec = data_spec(args)
        if spec.kind != "vp":
            raise UserError(f"--align_truth needs --data voxpopuli:ROOT (the synthetic corpus), got {args.data!r}")
        try:
            transcripts = mlpl_data.load_unlabelled_truth(spec.path, data_languages(args))
        except (FileNotFoundError, ValueError) as err:
            raise UserError(str(err)) from err
        if not args.streaming:
            missing = [uid for uid in rows["id"] if uid not in transcripts]
            if missing:
                raise UserError(f"--align_truth: {len(missing)} recording(s) have no true transcript, e.g. {missing[0]}")
    lm_overrides = {} if args.lm_workers is None else {"num_workers": args.lm_workers}
    lm = LMDecoder.from_pretrained(args.lm_dir, **lm_overrides) if args.lm_dir else None
    try:
        labeler = PseudoLabeler.from_pretrained(args.model, config, lm_decoder=lm, device=device,
                                                transcripts=transcripts)
    except OSError as err:
        raise UserError(f"cannot load model {args.model}: {str(err).splitlines()[0]}") from err
    stats = label_dataset(rows, args.output_dir, labeler, rank=rank, world_size=world, resume=args.resume,
                          progress=is_main, retry_failed=args.retry_failed)  # fmt: skip
    pad = labeler.padding_stats
    logger.info("rank %d: labelled %d (%.1f s audio, %.1f s/s), %d failures, %d already done, padding %.1f%%",
                rank, stats.labelled, stats.audio_seconds, stats.audio_seconds / max(stats.elapsed_s, 1e-9),
                stats.failed, stats.skipped_done, 100 * pad.padding_fraction)  # fmt: skip
    all_stats = [stats.to_dict()]
    if state is not None and world > 1:
        write_rank_stats(out, rank, stats.to_dict())
        state.wait_for_everyone()
        all_stats = read_rank_stats(out, world) if is_main else all_stats
    if is_main:
        accounting = run_accounting(all_stats, n_rows, report, independent=state is None and world > 1)
        if n_rows is None and not report.loaded:  # a streamed disk:/hub: input: its rows are counted now
            report.loaded = accounting.found
        write_load_report(out, report)  # complete now also for a streamed input
        logger.info("accounting: %s", accounting.line("labelled"))
    if args.merge and is_main:
        run_merge(args)
    attempted = stats.labelled + stats.failed
    if attempted and stats.failed / attempted > args.max_failure_fraction:
        logger.error("%d of %d recordings could not be read (see failures-rank%05d.jsonl)", stats.failed,
                     attempted, rank)  # fmt: skip
        return EXIT_FAILURES
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.merge_only:
            run_merge(args)
            return EXIT_OK
        return run_label(args)
    except (UserError, HubError, FileExistsError, FileNotFoundError, ValueError) as err:
        # Input and usage problems: one line, no traceback (use --log_level debug for one).
        logger.debug("details", exc_info=True)
        print(f"pseudo_label.py: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("pseudo_label.py: interrupted; rerun with --resume to continue", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
