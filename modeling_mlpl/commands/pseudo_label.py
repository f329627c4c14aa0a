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
  # another teacher: MMS with its Portuguese adapter, or any transformers CTC model (docs/teachers.md):
  python run_scripts/pseudo_label.py --model facebook/mms-1b-all --data folder:/audio --language pt \
      --output_dir exp/pl-mms-pt
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

import logging
import sys
from pathlib import Path


from modeling_mlpl.command_line import ArgumentParser, UserError, ensure_output_dir, positive_float
from modeling_mlpl.hub import HubError, add_hub_arguments, maybe_push_to_hub
from modeling_mlpl.data.specs import LABEL_INPUT_KINDS, accepted_forms
from modeling_mlpl.text import PL_TEXT_RULES

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_FAILURES, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

logger = logging.getLogger("pseudo_label")


def build_parser() -> ArgumentParser:
    p = ArgumentParser(description=__doc__)
    g = p.add_argument_group("what to label")
    g.add_argument("--model",
                   help="the teacher: a model folder or Hub id. Its config.json says which kind: an mlpl checkpoint, "
                        "any transformers CTC model (wav2vec2, HuBERT, WavLM, ...: AutoModelForCTC with its "
                        "processor), MMS with per-language adapters (e.g. facebook/mms-1b-all), or Whisper; "
                        "another kind is refused (see docs/teachers.md)")  # fmt: skip
    g.add_argument("--revision", default=None, help="Hub branch, tag or commit of --model (recorded in pl_run.json)")
    g.add_argument("--teacher_language", default=None,
                   help="MMS: the adapter to use, 'por' for every recording or 'pt=por,nl=nld' per language "
                        "(default: our code mapped to ISO 639-3 by modeling_mlpl.data.languages.ISO639_3)")  # fmt: skip
    g.add_argument("--lid_model", default=None,
                   help="with --language auto: an audio-classification LID model (folder or Hub id, e.g. "
                        "facebook/mms-lid-126) that picks each recording's language, instead of the teacher's "
                        "own (mlpl LID head, Whisper)")  # fmt: skip
    g.add_argument("--text_rule", default=None, choices=sorted(PL_TEXT_RULES),
                   help="how the teacher's text becomes the row's `text` (the teacher's own is kept as `text_raw`; "
                        "docs/teachers_text.md): default 'none' for an mlpl teacher, 'student' for any other "
                        "(annotations removed; case, punctuation and digits kept); 'lower_nopunct' is MMS's convention")  # fmt: skip
    g.add_argument("--data", help="KIND:PATH, " + accepted_forms(LABEL_INPUT_KINDS))
    g.add_argument("--split", default="train", help="split for cv:, disk: (DatasetDict) and hub: (default: train)")
    g.add_argument("--data_languages", default=None,
                   help="comma-separated languages to load from voxpopuli:/cv: (default: --language, or all)")
    g.add_argument("--streaming", action="store_true", help="read rows lazily (sorting then uses --sort_buffer)")
    g.add_argument("--limit", type=int, default=None, help="label only the first N rows (trial runs)")
    g.add_argument("--language", default=None,
                   help="language code of the audio, 'auto' (language identification decides per recording: "
                        "--lid_model, else the teacher's own) or unset "
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
    # Teacher text and label-free filters (docs/teachers_text.md); each filter drops only rows carrying its score.
    def threshold(value: str) -> float | None:  # a number, or 'none': the filter is off
        return None if value.lower() == "none" else float(value)

    g.add_argument("--student_vocab_from", default=None, metavar="MODEL_DIR",
                   help="the student's model or processor folder: rows with characters its tokenizer cannot write "
                        "are dropped and the characters counted per language (stats.json unwritable_chars)")
    g.add_argument("--max_compression_ratio", type=threshold, default=2.4,
                   help="drop rows whose gzip compression ratio is higher (seq2seq teachers; Whisper's 2.4; none: off)")
    g.add_argument("--min_avg_logprob", type=threshold, default=-1.0,
                   help="drop rows whose average token log-probability is lower (Whisper's -1.0; none: off)")
    g.add_argument("--max_no_speech_prob", type=threshold, default=0.6,
                   help="Whisper's silence rule: drop rows with no_speech_prob above this and avg_logprob below -1 "
                        "(0.6; none: off)")
    g.add_argument("--max_repeated_ngram", type=int, default=None,
                   help="drop rows whose most repeated word n-gram occurs more often than this (a decoder loop; off)")
    g.add_argument("--repeated_ngram_size", type=int, default=3, help="n of --max_repeated_ngram (default 3)")
    g.add_argument("--max_chars_per_second", type=float, default=None,
                   help="drop rows with more characters per second of audio (an implausible speaking rate; off)")
    add_hub_arguments(p)  # --push_to_hub --hub_model_id ...: the merged dataset as a dataset repo
    p.add_argument("--log_level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def run_merge(args) -> dict:
    from modeling_mlpl.pseudo_labeling import MergeFilters, merge_with_stats
    from modeling_mlpl.pseudo_labeling.merge import load_student_vocab

    filters = MergeFilters(min_confidence=args.min_confidence, top_percent=args.top_percent,
                           min_chars=args.min_chars, min_duration_s=args.min_duration_s,
                           confidence_key=args.confidence_key,
                           student_vocab=load_student_vocab(args.student_vocab_from) if args.student_vocab_from else None,
                           max_compression_ratio=args.max_compression_ratio, min_avg_logprob=args.min_avg_logprob,
                           max_no_speech_prob=args.max_no_speech_prob, max_repeated_ngram=args.max_repeated_ngram,
                           repeated_ngram_size=args.repeated_ngram_size,
                           max_chars_per_second=args.max_chars_per_second)  # fmt: skip
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


def job_config(args):
    """The flags as a :class:`~modeling_mlpl.pseudo_labeling.job.LabelJobConfig` (parses --data)."""
    from modeling_mlpl.pseudo_labeling.job import LabelJobConfig

    return LabelJobConfig(
        model=args.model, data=args.data, output_dir=args.output_dir, revision=args.revision, split=args.split,
        data_languages=args.data_languages.split(",") if args.data_languages else None, streaming=args.streaming,
        limit=args.limit, language=args.language, teacher_language=args.teacher_language, lid_model=args.lid_model,
        text_normalization=args.text_rule,
        models_per_language=args.models_per_language, resume=args.resume, retry_failed=args.retry_failed,
        lm_dir=args.lm_dir, beam_width=args.beam_width, lm_workers=args.lm_workers, window_s=args.window_s,
        overlap_s=args.overlap_s, max_batch_seconds=args.max_batch_seconds, align_truth=args.align_truth,
        lid_top_k=args.lid_top_k, sort_buffer=args.sort_buffer, io_threads=args.io_threads, dtype=args.dtype,
        threads=args.threads, fsync=not args.no_fsync, num_shards=args.num_shards, shard_index=args.shard_index,
    )  # fmt: skip


def run_label(args) -> int:
    from modeling_mlpl.pseudo_labeling.job import run_label_job

    ensure_output_dir(args.output_dir)  # before the model loads: a run never fails to write at its end
    result = run_label_job(job_config(args))
    if args.merge and result.is_main:
        run_merge(args)
    if result.failure_fraction > args.max_failure_fraction:
        logger.error("%d of %d recordings could not be read (see failures-rank%05d.jsonl)", result.stats.failed,
                     result.stats.done + result.stats.failed, result.rank)  # fmt: skip
        return EXIT_FAILURES
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # weight-loading bars: stderr keeps the job's own bar and one-line errors
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
