"""Test-set evaluation: a saved model (+ optional LMs) -> per-utterance predictions and CER/WER tables.

Every utterance's reference, greedy output and LM output is appended to ``predictions.jsonl`` as
soon as its batch is decoded (:class:`~modeling_mlpl.resumable.ShardWriter`: flushed and fsync'd per
batch), so a killed run resumes where it stopped: ids already written are skipped, and a last line
torn by the kill is removed and its utterance decoded again. Reports can be recomputed from that file
alone (:func:`report_from_predictions`) without re-running the model. Greedy and LM decoding share
one forward pass, so the two columns of the table differ only by the decoder.

Data specs (``KIND:PATH[@SPLIT]``): ``cv:DIR`` Common Voice layout, ``vp:DIR`` VoxPopuli
``transcribed_data``, ``librispeech:DIR`` (split names like ``test-clean``; default split
``test`` means test-clean and test-other), ``folder:DIR`` audio + ``.txt`` sidecars (language
from ``--languages``), ``disk:PATH`` a ``save_to_disk`` dataset (``disk:PATH[:SPLIT][@LANG]`` as in
training). Long recordings are decoded in overlapping windows (:mod:`modeling_mlpl.evaluation.long_form`).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from ..audio import AudioDecodeError, load_segment, row_segment
from ..data.specs import EVAL_KINDS, DataSpec
from ..decoding.lm_decoder import CONFIG_NAME, LM_SUBFOLDER, LMDecoder
from .inference import decode_rows, load_model
from .metrics import first_per_language, mean_over_groups, metrics_to_markdown, per_language_metrics
from ..resumable import Accounting, ShardWriter, check_run, lm_identity, model_identity, read_shard, write_run
from ..text import normalize_transcript

__all__ = [
    "EvalSet",
    "load_eval_sets",
    "load_model",
    "iter_log_probs",
    "compute_logits",
    "evaluate_model",
    "report_from_predictions",
]

logger = logging.getLogger(__name__)

PREDICTIONS_NAME = "predictions.jsonl"
RUN_NAME = "eval_run.json"  # what predictions.jsonl was started with (modeling_mlpl.resumable.bind_run)
PREDICTION_LABELS = {"prediction": "greedy", "prediction_lm": "LM"}
RECORD_KEYS = ("id", "set", "language", "group", "reference", "duration")  # + prediction(s), per line


@dataclass
class EvalSet:
    """One test set: ``name`` labels its rows in reports (e.g. ``cv``, ``librispeech/test-other``)."""

    name: str
    dataset: Any  # datasets.Dataset with id, audio, text, language, duration
    found: int | None = None  # rows the loader met (None: len(dataset))
    skipped: int = 0  # not evaluated: rejected by the loader, no transcript, not in --languages, over the cap


def load_eval_sets(
    specs: Sequence[str],
    split: str = "test",
    languages: Sequence[str] | None = None,
    max_per_language: int | None = None,
) -> list[EvalSet]:
    """Open test sets with the project's loaders (bad rows are skipped and counted by them)."""
    from .. import data

    sets: list[EvalSet] = []
    for spec in specs:
        parsed = data.parse_data_spec(spec, EVAL_KINDS)
        if parsed.kind == "folder" and (not languages or len(languages) != 1):
            raise ValueError("folder:DIR needs exactly one language (--languages LANG)")
        set_split = parsed.split or split
        both = parsed.kind == "librispeech" and set_split == "test"  # LibriSpeech has two test sets
        for part in ("test-clean", "test-other") if both else (set_split,):
            sets.append(EvalSet(_set_name(parsed, part), data.open_dataset(parsed, split=part, languages=languages)))
    names = [s.name for s in sets]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"two --data specs give the test set name {repeated[0]!r}: give each test set once")
    for eval_set in sets:
        data.check_unique_ids(eval_set.dataset, f"test set {eval_set.name}")
        report = data.get_load_report(eval_set.dataset)
        eval_set.found = report.found if report is not None else len(eval_set.dataset)
        ds = eval_set.dataset.filter(lambda t: bool(t and t.strip()), input_columns="text")
        if languages and eval_set.name.startswith(("librispeech", "disk")):
            ds = ds.filter(lambda lang: lang in set(languages), input_columns="language")
        if max_per_language is not None:
            ds = ds.select(first_per_language(ds["language"], max_per_language))
        eval_set.dataset = ds
        eval_set.skipped = eval_set.found - len(ds)
        if len(ds) == 0:
            logger.warning("test set %s has no transcribed utterances", eval_set.name)
    return sets


def _set_name(spec: DataSpec, split: str) -> str:
    """How a test set's rows are labelled in reports: ``cv``, ``librispeech/test-other``, ``disk/NAME``."""
    if spec.kind == "librispeech":
        return f"librispeech/{split}"
    return f"{spec.kind}/{Path(spec.path).name}" if spec.kind in ("folder", "disk") else spec.kind


def _rows(sets: Sequence[EvalSet]) -> Iterator[dict]:
    for eval_set in sets:
        ds = eval_set.dataset
        for i in range(len(ds)):
            row = ds[i]
            yield {
                "id": f"{eval_set.name}/{row['id']}",
                "set": eval_set.name,
                "language": row["language"],
                "group": f"{eval_set.name}/{row['language']}" if eval_set.name != "cv" else row["language"],
                "reference": normalize_transcript(row["text"]),
                "duration": row["duration"],
                "audio": row["audio"],
                **({"offset": row["offset"]} if row.get("offset") is not None else {}),  # a cut segment (disk:)
            }


def _readable(rows: Iterable[dict], failures: list[dict] | None = None) -> Iterator[tuple[dict, np.ndarray]]:
    """(row, waveform) of each row whose audio decodes; unreadable audio is logged, skipped and,
    with `failures`, appended to it."""
    for row in rows:
        try:
            wave = load_segment(row["audio"], *row_segment(row))
        except AudioDecodeError as err:
            logger.warning("skipping %s: %s", row["id"], err)
            if failures is not None:
                failures.append({"id": row["id"], "error": str(err)})
            continue
        yield row, wave


def iter_log_probs(
    model,
    processor,
    rows: Iterable[dict],
    window_s: float | None = 10.0,
    overlap_s: float = 2.0,
    max_batch_seconds: float = 60.0,
    chunk_size: int = 32,
    failures: list[dict] | None = None,
) -> Iterator[tuple[list[dict], list[np.ndarray]]]:
    """Yield (rows, (T_i, V) log-probs) per chunk (:func:`~modeling_mlpl.evaluation.inference.decode_rows`);
    unreadable audio is logged, skipped and, with `failures`, appended to it."""
    for chunk in decode_rows(model, processor, _readable(rows, failures), window_s=window_s, overlap_s=overlap_s,
                             max_batch_seconds=max_batch_seconds, chunk_size=chunk_size):  # fmt: skip
        yield chunk.rows, chunk.log_probs


def compute_logits(
    model_dir: str | os.PathLike, sets: Sequence[EvalSet], device: str = "cpu", **forward_kwargs: Any
) -> tuple[list[dict], list[np.ndarray]]:
    """All (rows, log-probs) of ``sets``: the input of alpha/beta tuning."""
    model, processor = load_model(model_dir, device)
    rows, logits = [], []
    for chunk_rows, chunk_logits in iter_log_probs(model, processor, _rows(sets), **forward_kwargs):
        rows += [{k: v for k, v in r.items() if k != "audio"} for r in chunk_rows]
        logits += chunk_logits
    return rows, logits


def evaluate_model(
    model_dir: str | os.PathLike,
    sets: Sequence[EvalSet],
    out_dir: str | os.PathLike,
    lm_dir: str | os.PathLike | None = None,
    use_lm: bool | None = None,
    beam_width: int | None = None,
    num_workers: int = 0,
    device: str = "cpu",
    save_logits_to: str | os.PathLike | None = None,
    progress: bool = True,
    lm_params: Mapping[str, Mapping[str, float]] | None = None,
    run_inputs: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    **forward_kwargs: Any,
) -> dict[str, Any]:
    """Decode ``sets`` greedily and (if an LM is found) with the LM; write predictions and reports.

    ``lm_dir``: a processor directory with ``language_model/`` (default: ``model_dir``'s, if any).
    ``lm_params``: {language: {"alpha": a, "beta": b}} replacing the saved fusion weights (the
    output of ``tune_lm.py --output``, so that each model is decoded with weights tuned for it).
    ``use_lm``: None = whenever an LM is found. Writes ``out_dir/predictions.jsonl``,
    ``metrics.json`` and ``metrics.md``; returns the metrics dict.

    ``out_dir/eval_run.json`` records the model (path + weights hash), test sets, LM and decoding
    options (plus the caller's `run_inputs`, e.g. the CLI's data specs); a run into an ``out_dir``
    whose predictions came from other ones raises :class:`~modeling_mlpl.resumable.RunMismatch`
    unless `overwrite` (which starts the predictions afresh).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lm_source = Path(lm_dir) if lm_dir is not None else Path(model_dir)
    decoder = None
    if lm_dir is not None and use_lm is not False and not LMDecoder.has_lm(lm_source):  # asked for: must be used
        where = "no such folder" if not lm_source.is_dir() else f"it holds no {LM_SUBFOLDER}/{CONFIG_NAME}"
        raise FileNotFoundError(f"--lm-dir {lm_dir}: {where}; build an LM with run_scripts/build_lm.py, "
                                "or leave --lm-dir out (greedy decoding)")  # fmt: skip
    if use_lm is not False:
        if LMDecoder.has_lm(lm_source):
            decoder = LMDecoder.from_pretrained(lm_source)
        elif use_lm:
            raise FileNotFoundError(f"no language_model/ in {lm_source}: build one with run_scripts/build_lm.py")
    model, processor = load_model(model_dir, device)
    if decoder is not None and decoder.config.vocab != list(processor.tokenizer.convert_ids_to_tokens(
            list(range(len(processor.tokenizer))))):  # fmt: skip
        raise ValueError(f"the LM decoder in {lm_source} was built for another vocabulary than {model_dir}'s")
    if decoder is not None:
        for lang, params in (lm_params or {}).items():
            if lang in decoder.languages:
                decoder.set_params(lang, alpha=float(params["alpha"]), beta=float(params["beta"]))

    predictions_path = out_dir / PREDICTIONS_NAME
    inputs = {
        "--model": model_identity(model_dir), **(run_inputs or {}), "test sets": [s.name for s in sets],
        "--lm-dir": lm_identity(lm_source) if decoder is not None else "none (greedy only)",
        "--lm-params": lm_params, "--beam-width": beam_width,
        **{f"--{k.replace('_', '-')}": v for k, v in sorted(forward_kwargs.items()) if k != "max_batch_seconds"},
    }  # fmt: skip
    if overwrite:
        predictions_path.unlink(missing_ok=True)
    elif predictions_path.exists():
        check_run(out_dir / RUN_NAME, inputs, "pass --overwrite (or choose a new --output_dir) to start afresh")
    write_run(out_dir / RUN_NAME, inputs)
    done: set[str] = set()
    if predictions_path.exists():  # a torn last line is not done: the writer removes it, and it is redone
        done = {record["id"] for record in read_shard(predictions_path)}
        logger.info("resuming: %d utterances already in %s", len(done), predictions_path)
    accounting = Accounting(found=sum(s.found if s.found is not None else len(s.dataset) for s in sets),
                            skipped=sum(s.skipped for s in sets))  # fmt: skip

    def todo_rows() -> Iterator[dict]:
        for row in _rows(sets):
            if row["id"] in done:
                accounting.already_done += 1
            else:
                yield row

    todo = todo_rows()
    failures: list[dict] = []
    total = sum(len(s.dataset) for s in sets) - len(done)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=max(total, 0), desc="evaluate", unit="utt")
    kept_logits: list[np.ndarray] = []
    kept_rows: list[dict] = []
    with ShardWriter(predictions_path) as out:
        for chunk in decode_rows(model, processor, _readable(todo, failures), **forward_kwargs):
            rows, log_probs = chunk.rows, chunk.log_probs
            accounting.done += len(rows)
            records = chunk.records(RECORD_KEYS)
            if decoder is not None:
                lm_texts = decoder.decode_batch(log_probs, [r["language"] for r in rows],
                                                beam_width=beam_width, num_workers=num_workers)  # fmt: skip
                for record, text in zip(records, lm_texts):
                    record["prediction_lm"] = text
            out.write(records)
            if save_logits_to is not None:
                kept_logits += log_probs
                kept_rows += rows
            if bar is not None:
                bar.update(len(rows))
    if bar is not None:
        bar.close()
    if save_logits_to is not None:
        from ..decoding.tuning import save_logits

        if done:
            logger.warning("resumed run: %s holds only the utterances decoded in this run", save_logits_to)
        save_logits(save_logits_to, kept_logits, [r["reference"] for r in kept_rows],
                    [r["language"] for r in kept_rows], [r["id"] for r in kept_rows])  # fmt: skip
    accounting.failed = len(failures)
    summary = report_from_predictions(predictions_path, out_dir)
    summary["accounting"] = accounting.to_dict("decoded")
    summary["accounting_line"] = accounting.line("decoded")
    return summary


def report_from_predictions(
    predictions_path: str | os.PathLike, out_dir: str | os.PathLike | None = None
) -> dict[str, Any]:
    """Per-group CER/WER (groups: language for CV, ``set/language`` otherwise) from a JSONL file.

    Writes ``metrics.json`` and ``metrics.md`` into ``out_dir`` when given.
    """
    rows = list(read_shard(predictions_path))  # (a last line torn by a kill is not a prediction)
    if not rows:
        raise ValueError(f"{predictions_path} has no predictions")
    keys = ["prediction"] + (["prediction_lm"] if all("prediction_lm" in r for r in rows) else [])
    table = per_language_metrics(rows, prediction_keys=keys, language_key="group")
    markdown = metrics_to_markdown(table, keys, PREDICTION_LABELS)
    groups = [g for g in table if g != "all"]
    summary = {
        "decoders": {k: PREDICTION_LABELS[k] for k in keys},
        "per_group": table,
        # Unweighted mean over groups, as the paper averages CER over languages.
        "mean_over_groups": {k: {m: mean_over_groups(table, k, m) for m in ("cer", "wer")} for k in keys},
        "n_utterances": len(rows),
    }
    means = " | ".join(
        f"{PREDICTION_LABELS[k]}: CER {100 * v['cer']:.1f} %, WER {100 * v['wer']:.1f} %"
        for k, v in summary["mean_over_groups"].items()
    )
    markdown += f"\nMean over {len(groups)} groups (unweighted) — {means}\n"
    if out_dir is not None:
        out_dir = Path(out_dir)
        (out_dir / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
        (out_dir / "metrics.md").write_text(markdown)
    summary["markdown"] = markdown
    return summary
