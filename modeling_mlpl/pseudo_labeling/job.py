"""The pseudo-labeling job: one call that labels a dataset resumably, on one process or many.

    from modeling_mlpl.pseudo_labeling.job import LabelJobConfig, run_label_job
    result = run_label_job(LabelJobConfig(model="facebook/mms-1b-all", data="folder:/audio", language="pt",
                                          output_dir="exp/pl-pt", resume=True))
    print(result.accounting.line("labelled"))

What it does around :func:`~modeling_mlpl.pseudo_labeling.labeler.label_dataset`: the process set-up
(accelerate, or independent --num_shards jobs), the guards (nothing written before every process has
checked), the run binding (``pl_run.json``: the teacher, data and decoding options; a resume with other
ones is refused), the input (``--data`` parsed once), the known transcripts of ``align_truth``, and the
accounting over all processes. ``modeling_mlpl.commands.pseudo_label`` is its command line.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..evaluation.inference import is_hub_id

logger = logging.getLogger("pseudo_label")

__all__ = ["LabelJobError", "LabelJobConfig", "JobResult", "run_label_job"]


class LabelJobError(ValueError):
    """A problem with the job's inputs or options: reported in one line (the command exits with 2)."""


@dataclass
class LabelJobConfig:
    """What to label, with what, and how (the command's flags of the same names document each)."""

    model: str
    data: str
    output_dir: str
    revision: str | None = None
    split: str = "train"
    data_languages: list[str] | None = None  # default: [language] unless auto, else all
    streaming: bool = False
    limit: int | None = None
    language: str | None = None
    teacher_language: str | None = None
    lid_model: str | None = None
    models_per_language: str | None = None
    resume: bool = False
    retry_failed: bool = False
    lm_dir: str | None = None
    beam_width: int | None = None
    lm_workers: int | None = None
    window_s: float | None = 10.0
    overlap_s: float = 2.0
    max_batch_seconds: float = 60.0
    align_truth: bool = False
    lid_top_k: int = 3
    sort_buffer: int | None = None
    io_threads: int = 4
    dtype: str = "fp32"
    threads: int | None = None
    fsync: bool = True
    num_shards: int | None = None
    shard_index: int | None = None
    text_normalization: str | None = None  # modeling_mlpl.text.PL_TEXT_RULES; None: by teacher kind

    def __post_init__(self):
        from ..data.specs import LABEL_INPUT_KINDS, parse_data_spec

        # --data is parsed once, here: a bad one is a one-line error before anything else.
        self.spec = parse_data_spec(self.data or "", LABEL_INPUT_KINDS)
        if not self.data_languages and self.language and self.language != "auto":
            self.data_languages = [self.language]


@dataclass
class JobResult:
    """What this process did (`stats`) and, on the main process, where every input went (`accounting`)."""

    stats: object  # labeler.LabelStats (this process's Accounting + time and audio)
    rank: int
    world_size: int
    is_main: bool
    accounting: object | None = None  # resumable.Accounting over all processes (main process only)
    teacher: dict = field(default_factory=dict)

    @property
    def failure_fraction(self) -> float:
        attempted = self.stats.done + self.stats.failed
        return self.stats.failed / attempted if attempted else 0.0


def _load_rows(config: LabelJobConfig):
    """The input dataset (rows with id, audio[, duration, offset, language]) and its loader report."""
    from .. import data as mlpl_data

    # Rows as saved (schema=False): a disk/hub input needs neither transcripts nor a language column.
    ds = mlpl_data.open_dataset(config.spec, split=config.split, languages=config.data_languages,
                                streaming=config.streaming, unlabelled=True, schema=False)  # fmt: skip
    features = getattr(ds, "features", None) or {}
    report = mlpl_data.get_load_report(ds)
    # Before any work: a repeated id would lose a recording. Without an id column, the audio paths are the ids.
    if features and "id" not in features and hasattr(ds, "data"):
        paths = ds.data.column("audio").combine_chunks()
        mlpl_data.check_unique_ids(paths.field("path").to_pylist() if hasattr(paths, "field") else paths.to_pylist(),
                                   f"--data {config.data} (no id column: the audio paths are the ids)")  # fmt: skip
    mlpl_data.check_unique_ids(ds, f"--data {config.data}")
    if config.limit is not None:
        ds = ds.take(config.limit) if config.streaming else ds.select(range(min(config.limit, len(ds))))
    return ds, report


def run_inputs(config: LabelJobConfig, teacher, lid) -> dict:
    """What the labels depend on, keyed by flag (recorded in OUTPUT_DIR/pl_run.json; a --resume must
    match). Left out: how the work is run (--threads, --io_threads, --sort_buffer, --num_shards, ...),
    --limit (a trial run may be resumed by the full one) and the merge filters (applied later)."""
    from ..resumable import lm_identity, model_identity

    spec = config.spec
    return {
        "--model": model_identity(config.model), "--data": spec.normalized(),
        "--split": config.split if spec.kind in ("cv", "disk", "hub") else None,
        "--data_languages": config.data_languages,
        "--language": config.language, "--models_per_language": config.models_per_language,
        "--lm_dir": lm_identity(config.lm_dir), "--beam_width": config.beam_width, "--window_s": config.window_s,
        "--overlap_s": config.overlap_s, "--align_truth": config.align_truth, "--lid_top_k": config.lid_top_k,
        "--dtype": config.dtype,
        # The teacher by what it is (kind, path or Hub id + revision, weights) and how it decodes.
        "teacher": {**teacher.identity, "run_options": teacher.run_options(),
                    "teacher_language": config.teacher_language},
        "--lid_model": None if lid is None else lid.identity,
        "--text_normalization": config.text_normalization,
    }  # fmt: skip


def _write_load_report(out: Path, report) -> None:
    """OUTPUT_DIR/load_report.json: what the loader found and skipped (the merge's accounting reads it)."""
    from .merge import LOAD_REPORT

    out.mkdir(parents=True, exist_ok=True)
    (out / LOAD_REPORT).write_text(json.dumps(report.to_dict(), indent=2) + "\n")


def _accounting(per_rank: list[dict], report):
    """Where every input went in this run: the processes' own accountings (`per_rank`, rank 0's first; a
    --num_shards job has only its own) plus the rows the loader rejected before any process met them."""
    from ..resumable import Accounting

    run = Accounting.over_processes([Accounting.from_dict(counts) for counts in per_rank])
    run.found += report.n_skipped
    run.skipped += report.n_skipped
    return run


def _processes(config: LabelJobConfig):
    """(accelerate state or None, rank, world size, device, is_main)."""
    import torch
    from accelerate import PartialState

    if (config.num_shards is None) != (config.shard_index is None):
        raise LabelJobError("--num_shards and --shard_index go together")
    if config.num_shards is not None:
        if not 0 <= config.shard_index < config.num_shards:
            raise LabelJobError(f"--shard_index must be in 0..{config.num_shards - 1}")
        return None, config.shard_index, config.num_shards, None, config.shard_index == 0
    state = PartialState(cpu=not torch.cuda.is_available())  # else CPU-only torchrun runs are not distributed
    return state, state.process_index, state.num_processes, state.device, state.is_main_process


def _transcripts(config: LabelJobConfig, rows) -> dict | None:
    """--align_truth: the synthetic corpus's true transcripts, every input id having one."""
    from .. import data as mlpl_data

    if not config.align_truth:
        return None
    if config.lm_dir:
        raise LabelJobError("--align_truth aligns known transcripts: it takes no --lm_dir")
    if config.spec.kind != "vp":
        raise LabelJobError(f"--align_truth needs --data voxpopuli:ROOT (the synthetic corpus), got {config.data!r}")
    try:
        transcripts = mlpl_data.load_unlabelled_truth(config.spec.path, config.data_languages)
    except (FileNotFoundError, ValueError) as err:
        raise LabelJobError(str(err)) from err
    if not config.streaming:
        missing = [uid for uid in rows["id"] if uid not in transcripts]
        if missing:
            raise LabelJobError(f"--align_truth: {len(missing)} recording(s) have no true transcript, e.g. {missing[0]}")
    return transcripts


def _languages_to_check(config: LabelJobConfig, rows) -> list[str]:
    """The languages known before labelling: --language, else the dataset's language column (not streamed)."""
    if config.language and config.language != "auto":
        return [config.language]
    if config.language is None and not config.streaming and "language" in (getattr(rows, "column_names", None) or []):
        return sorted({lang for lang in rows["language"] if lang})
    return []


def run_label_job(config: LabelJobConfig) -> JobResult:
    """Label `config.data` into `config.output_dir` (this process's share; see the module docstring)."""
    import torch

    from .. import data as mlpl_data
    from ..resumable import check_run, read_rank_stats, shard_path, write_rank_stats, write_run
    from .labeler import PseudoLabelConfig, PseudoLabeler, label_dataset
    from .shards import FAILURE_PREFIX, LABEL_PREFIX, RUN_FILE
    from .teachers.base import TeacherError, load_teacher

    if config.threads:
        torch.set_num_threads(config.threads)
    state, rank, world, device, is_main = _processes(config)
    if not is_main:
        logging.getLogger().setLevel(logging.WARNING)
    if not config.model:
        raise LabelJobError("--model is required (or use --merge_only)")
    if not (os.path.isdir(config.model) or is_hub_id(config.model)):
        raise LabelJobError(f"--model {config.model}: no such folder (nor a Hub id, which has an owner/)")
    if config.retry_failed and not config.resume:
        raise LabelJobError("--retry_failed continues an earlier run: add --resume")
    out = Path(config.output_dir)
    # Every process checks before the barrier, and nobody writes before it: no process can mistake
    # another's fresh shard for an earlier run. (Independent --num_shards jobs only check their own.)
    if not config.resume and state is not None and any(p.stat().st_size for p in out.glob("*-rank*.jsonl")):
        raise LabelJobError(f"{out} already holds pseudo-label shards: add --resume to continue that run, "
                            "or choose a new --output_dir")  # fmt: skip

    label_config = PseudoLabelConfig(
        language=config.language, window_s=config.window_s or None, overlap_s=config.overlap_s,
        max_batch_seconds=config.max_batch_seconds, lid_top_k=config.lid_top_k,
        models_per_language=config.models_per_language, beam_width=config.beam_width,
        sort_buffer=config.sort_buffer or (5000 if config.streaming else None), io_threads=config.io_threads,
        autocast_dtype=None if config.dtype == "fp32" else config.dtype, fsync=config.fsync,
        text_normalization=config.text_normalization,
    )  # fmt: skip
    # The teacher first: a checkpoint of no supported kind, a language without an adapter, an option the
    # teacher does not take are refused here, before anything is written.
    lm = None
    if config.lm_dir:
        from ..decoding.lm_decoder import LMDecoder

        lm = LMDecoder.from_pretrained(config.lm_dir, **({} if config.lm_workers is None else
                                                         {"num_workers": config.lm_workers}))  # fmt: skip
    kind_options = {"teacher_language": config.teacher_language} if config.teacher_language else {}
    try:
        teacher = load_teacher(config.model, revision=config.revision, device=device,
                               options=label_config.decode_options(), **label_config.mlpl_options(lm),
                               **kind_options)  # fmt: skip
    except TeacherError as err:
        raise LabelJobError(str(err)) from err
    except OSError as err:
        raise LabelJobError(f"cannot load model {config.model}: {str(err).splitlines()[0]}") from err
    lid = None
    if config.lid_model:
        from .teachers.lid import AudioClassifierLID

        lid = AudioClassifierLID.from_pretrained(config.lid_model, device=device)
    if config.align_truth and not teacher.supports_forced_alignment:
        raise LabelJobError(f"--align_truth needs an mlpl teacher; {config.model} is a {teacher.kind} teacher")

    inputs = run_inputs(config, teacher, lid)
    if config.resume:  # every process checks before the barrier, so all of them stop together
        check_run(out / RUN_FILE, inputs, "start afresh with a new --output_dir")
    rows, report = _load_rows(config)
    teacher.check_languages(_languages_to_check(config, rows))
    transcripts = _transcripts(config, rows)
    labeler = PseudoLabeler(teacher, config=label_config, transcripts=transcripts, lid=lid)
    if state is not None:
        state.wait_for_everyone()
    own_shards = [shard_path(out, rank, LABEL_PREFIX), shard_path(out, rank, FAILURE_PREFIX)]
    if is_main and (config.resume or not any(p.exists() and p.stat().st_size for p in own_shards)):
        write_run(out / RUN_FILE, inputs)  # (a fresh run into old shards is refused by label_dataset)
    n_rows = None if config.streaming else len(rows)
    if report is None:  # disk:/hub: nothing skipped at load; the report still says how many rows came in
        report = mlpl_data.LoadReport(source=config.data, loaded=n_rows or 0)
    if is_main:
        _write_load_report(out, report)

    stats = label_dataset(rows, out, labeler, rank=rank, world_size=world, resume=config.resume,
                          progress=is_main, retry_failed=config.retry_failed)  # fmt: skip
    pad = labeler.padding_stats
    logger.info("rank %d: labelled %d (%.1f s audio, %.1f s/s), %d failures, %d already done%s", rank,
                stats.done, stats.audio_seconds, stats.audio_seconds / max(stats.elapsed_s, 1e-9), stats.failed,
                stats.already_done, "" if pad is None else f", padding {100 * pad.padding_fraction:.1f}%")  # fmt: skip
    all_stats = [stats.to_dict()]
    if state is not None and world > 1:
        write_rank_stats(out, rank, stats.to_dict())
        state.wait_for_everyone()
        all_stats = read_rank_stats(out, world) if is_main else all_stats
    result = JobResult(stats=stats, rank=rank, world_size=world, is_main=is_main, teacher=teacher.identity)
    if is_main:
        result.accounting = _accounting(all_stats, report)
        if n_rows is None and not report.loaded:  # a streamed disk:/hub: input: its rows are counted now
            report.loaded = result.accounting.found
        _write_load_report(out, report)  # complete now also for a streamed input
        logger.info("accounting: %s", result.accounting.line("labelled"))
    return result
