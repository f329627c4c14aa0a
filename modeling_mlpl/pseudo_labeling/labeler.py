"""Stage 3 of the recipe: label unlabelled audio with a teacher model, one shard per process.

    labeler = PseudoLabeler.from_pretrained("exp/finetune-de", PseudoLabelConfig(language="de"))
    stats = label_dataset(dataset, "exp/pl-de", labeler, rank=0, world_size=1, resume=True)

The paper greedy-decodes each language's VoxPopuli audio with that language's fine-tuned model.
The model is a :class:`~modeling_mlpl.pseudo_labeling.teachers.Teacher`: an mlpl checkpoint, any
transformers CTC model, MMS with adapters or Whisper (the checkpoint's config says which). This module
does what is the same for all of them: which language each recording gets (given, the dataset's, or
language identification: the teacher's own, or a separate `lid` model), the row schema, text
normalisation, and the sharded, resumable, length-bucketed job.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np
import torch

from ..audio import AudioDecodeError, audio_duration, load_segment
from ..data.ids import DuplicateIdError
from ..data.sampler import pack_batches
from ..evaluation.inference import load_model  # re-exported: modeling_mlpl.pseudo_labeling.load_model
from ..resumable import Accounting, ShardWriter, completed_ids, shard_path
from ..text import PL_TEXT_RULES, normalize_pl_text
from .alignment import carry_times, words_from_characters
from .shards import FAILURE_PREFIX, LABEL_PREFIX, shard_of
from .teachers.base import DecodeOptions, Teacher, TeacherError, load_teacher
from .teachers.mlpl import MLPLTeacher

logger = logging.getLogger(__name__)

__all__ = ["PseudoLabelConfig", "Item", "PseudoLabeler", "label_dataset", "rows_to_items", "plan_batches",
           "load_model"]  # fmt: skip

AUTO = "auto"


@dataclass
class PseudoLabelConfig:
    """How to label. language: a code the teacher knows, "auto" (language identification picks per
    recording) or None (take each row's `language` column). window_s/overlap_s: long-form windows
    (window_s=None: whole recordings, as the paper). max_batch_seconds: audio per batch (recordings
    are length-sorted, so batches have little padding). sort_buffer: rows sorted together (None:
    the whole shard; set it for streaming datasets). models_per_language (mlpl teacher): a path
    template with `{lang}` whose existing folders take over after LID. beam_width: LM beam (when an LM
    is given). text_normalization: the rule (modeling_mlpl.text.PL_TEXT_RULES) that turns the
    teacher's text (kept as `text_raw`) into the row's `text`; None: "none" for an mlpl teacher (its text
    is already in the student's conventions) and "student" for any other."""

    language: str | None = None
    window_s: float | None = 10.0
    overlap_s: float = 2.0
    max_batch_seconds: float = 60.0
    lid_top_k: int = 3
    models_per_language: str | None = None
    max_loaded_models: int = 4
    beam_width: int | None = None
    sort_buffer: int | None = None
    io_threads: int = 4
    autocast_dtype: str | None = None  # "bf16" / "fp16" on GPU
    fsync: bool = True
    text_normalization: str | None = None

    def decode_options(self) -> DecodeOptions:
        return DecodeOptions(window_s=self.window_s, overlap_s=self.overlap_s, max_batch_seconds=self.max_batch_seconds,
                             autocast_dtype=self.autocast_dtype)  # fmt: skip

    def mlpl_options(self, lm_decoder=None) -> dict:
        """The options only an mlpl teacher takes, where set (another teacher refuses them)."""
        options = {"lm_decoder": lm_decoder, "beam_width": self.beam_width if lm_decoder is not None else None,
                   "models_per_language": self.models_per_language}  # fmt: skip
        if self.models_per_language:
            options["max_loaded_models"] = self.max_loaded_models
        return {k: v for k, v in options.items() if v is not None}


@dataclass
class Item:
    """One recording to label (a row of the input dataset)."""

    id: str
    audio: Any  # path string, or a datasets Audio dict {"path", "bytes"}
    path: str | None
    offset: float = 0.0
    duration: float | None = None  # seconds; None: read from the header when needed
    language: str = ""


class PseudoLabeler:
    """Turns loaded audio into pseudo-label records with a teacher (no I/O of its own except loading models)."""

    def __init__(self, teacher, processor=None, config: PseudoLabelConfig | None = None, lm_decoder=None,
                 model_name: str = "base", transcripts: Mapping[str, str] | None = None, lid=None):  # fmt: skip
        """`teacher`: a :class:`Teacher`, or an MLPLForCTC with its `processor` (then `lm_decoder` and
        `model_name` build its mlpl teacher). `transcripts` (id -> known text): force-align these
        instead of decoding, so that known long-form transcripts (the synthetic corpus's truth: the
        oracle) get token times and can be cropped like PLs; every labelled id must have one.
        `lid`: a language identifier (``detect_languages(waveforms)``, e.g. :class:`.teachers.lid.AudioClassifierLID`)
        used instead of the teacher's own where a recording's language must be found."""
        self.config = config or PseudoLabelConfig()
        if not isinstance(teacher, Teacher):  # an mlpl model: the mlpl teacher around it
            teacher = MLPLTeacher(teacher, processor, self.config.decode_options(), name=model_name,
                                  **self.config.mlpl_options(lm_decoder))  # fmt: skip
        elif processor is not None or lm_decoder is not None:
            raise TypeError("a Teacher comes with its own processor and decoder: pass only the teacher")
        self.teacher = teacher
        self.lid = lid
        self.transcripts = transcripts
        lang = self.config.language
        if lang not in (None, AUTO):
            teacher.check_languages([lang])
        if transcripts is not None and not teacher.supports_forced_alignment:
            raise TeacherError(f"a {teacher.kind} teacher cannot force-align known transcripts")
        self.text_rule = self.config.text_normalization or ("none" if teacher.kind == "mlpl" else "student")
        if self.text_rule not in PL_TEXT_RULES:  # fails now, not at the first batch
            raise ValueError(f"unknown text normalization {self.text_rule!r}; one of {', '.join(PL_TEXT_RULES)}")

    @classmethod
    def from_pretrained(cls, model_dir: str, config: PseudoLabelConfig | None = None, lm_decoder=None,
                        device: torch.device | str | None = None, transcripts: Mapping[str, str] | None = None,
                        revision: str | None = None, lid=None, **kind_options) -> "PseudoLabeler":  # fmt: skip
        """The labeler of any checkpoint (its teacher kind read from its config, see
        :func:`~.teachers.load_teacher`); `kind_options` go to the teacher (mms: teacher_language)."""
        config = config or PseudoLabelConfig()
        teacher = load_teacher(model_dir, revision=revision, device=device, options=config.decode_options(),
                               **config.mlpl_options(lm_decoder), **kind_options)  # fmt: skip
        return cls(teacher, config=config, transcripts=transcripts, lid=lid)

    @property
    def device(self) -> torch.device:
        return self.teacher.device

    @property
    def padding_stats(self):
        return self.teacher.padding_stats

    def _best_supported(self, ranked: list[tuple[str, float]]) -> str:
        """The most likely language the teacher can label (the most likely one if it can label none)."""
        supported = self.teacher.languages
        for lang, _ in ranked:
            if supported is None or lang in supported:
                return lang
        return ranked[0][0]

    def _languages(self, items: list[Item], waveforms: list[np.ndarray]) -> tuple[list[str], list[str], list[list]]:
        """(language, where it came from, LID top-k) per recording."""
        cfg = self.config
        need_lid = cfg.language == AUTO or (not cfg.language and not all(item.language for item in items))
        ranked = None
        if need_lid and self.lid is not None:
            ranked = self.lid.detect_languages(waveforms)
        elif need_lid or self.teacher.free_language_identification:
            ranked = self.teacher.detect_languages(waveforms)
        languages, sources, top_k = [], [], []
        for i, item in enumerate(items):
            if cfg.language == AUTO:
                lang, source = self._best_supported(ranked[i]), "lid"
            elif cfg.language:
                lang, source = cfg.language, "given"
            elif item.language:
                lang, source = item.language, "dataset"
            else:  # nothing given: best guess, recorded
                lang, source = self._best_supported(ranked[i]), "lid"
            languages.append(lang)
            sources.append(source)
            top_k.append([] if ranked is None else
                         [{"language": code, "prob": round(float(p), 6)} for code, p in ranked[i][: cfg.lid_top_k]])  # fmt: skip
        return languages, sources, top_k

    def _normalized(self, result: dict, language: str) -> dict:
        """`text` by the configured normalisation, the teacher's own as `text_raw`; times follow the text."""
        raw = result["text"]
        text = normalize_pl_text(raw, self.text_rule, language)
        out = {"text": text, "text_raw": raw, **{k: v for k, v in result.items() if k != "text"}}
        if text != raw and result.get("token_times"):
            ends = [0.0] * len(raw)  # each character's word end, for the words of the new text
            position = 0
            for word in result.get("words") or []:
                at = raw.find(word["word"], position)
                if at >= 0:
                    ends[at : at + len(word["word"])] = [word["end"]] * len(word["word"])
                    position = at + len(word["word"])
            starts, ends = carry_times(raw, text, result["token_times"], ends)
            out["token_times"] = starts
            out["words"] = words_from_characters(text, starts, ends)
        return out

    def label(self, items: list[Item], waveforms: list[np.ndarray]) -> list[dict]:
        """Records for loaded, non-empty 16 kHz waveforms."""
        languages, sources, lid_top = self._languages(items, waveforms)
        extra = {}
        if self.transcripts is not None:
            missing = [item.id for item in items if item.id not in self.transcripts]
            if missing:
                raise KeyError(f"no transcript to align for {len(missing)} recording(s), e.g. {missing[0]!r}")
            extra["texts"] = [self.transcripts[item.id] for item in items]
        results = self.teacher.label(waveforms, languages, **extra)
        records = []
        for i, (item, result) in enumerate(zip(items, results)):
            records.append({
                "id": item.id,
                "audio": item.path,
                "offset": float(item.offset),
                "duration": round(len(waveforms[i]) / self.teacher.sampling_rate, 4),
                "language": languages[i],
                "language_source": sources[i],
                **self._normalized(result, languages[i]),
                "lid_top_k": lid_top[i],
                "teacher": self.teacher.identity,
            })  # fmt: skip
        return records


def _as_item(row: dict) -> Item:
    audio = row.get("audio")
    if audio is None:
        raise ValueError("the dataset needs an `audio` column (a path or a datasets Audio(decode=False) dict)")
    path = audio if isinstance(audio, str) else (audio.get("path") if isinstance(audio, dict) else None)
    uid = row.get("id") or path
    if not uid:
        raise ValueError("a row has neither an `id` nor an audio path to identify it")
    duration = row.get("duration")
    return Item(id=str(uid), audio=audio, path=path, offset=float(row.get("offset") or 0.0),
                duration=float(duration) if duration else None, language=row.get("language") or "")  # fmt: skip


def rows_to_items(rows: Iterable[dict]) -> Iterator[Item]:
    for row in rows:
        yield _as_item(row)


def _item_seconds(item: Item) -> float:
    return item.duration or 0.0


def plan_batches(items: list[Item], max_batch_seconds: float, window_s: float | None = None,
                 overlap_s: float = 0.0) -> list[list[Item]]:  # fmt: skip
    """Longest first; a batch holds recordings whose windowed audio (overlap counted) sums to at most
    `max_batch_seconds` (always at least one recording). Sorting keeps padding small."""

    def cost(item: Item) -> float:
        d = _item_seconds(item)
        if window_s is None or d <= window_s:
            return d
        stride = window_s - 2 * overlap_s
        return window_s * (1 + int(np.ceil((d - window_s) / stride)))

    order = sorted(range(len(items)), key=lambda i: _item_seconds(items[i]), reverse=True)
    costs = [cost(item) for item in items]
    return [[items[i] for i in batch] for batch in pack_batches(order, costs, max_batch_seconds, padded=False)]


def _load(item: Item, sampling_rate: int) -> np.ndarray | str:
    """The waveform, or an error message (the job goes on and counts it)."""
    try:
        # An item at offset 0 is a whole recording (its duration may come rounded from the dataset).
        audio = load_segment(item.audio, item.offset or None, item.duration or None, sampling_rate)
    except AudioDecodeError as err:
        return str(err)
    except Exception as err:  # an unexpected decoder error must not stop a 1000-hour job either
        return f"{type(err).__name__}: {err}"
    if audio.size == 0:
        return f"audio has no samples in [{item.offset}, +{item.duration}] s"
    return audio


@dataclass
class LabelStats(Accounting):
    """One process's run: its :class:`~modeling_mlpl.resumable.Accounting` (found: rows it met; done:
    labelled; already_done: by an earlier run; elsewhere: other processes' ids), plus time and audio."""

    audio_seconds: float = 0.0
    elapsed_s: float = 0.0
    batches: int = 0
    interrupted: bool = False
    failures: list = field(default_factory=list)


def _materialise(item: Item, directory: Path) -> None:
    """Audio embedded as bytes (e.g. a Parquet copy) gets a file under `directory`, so the merged
    labels can point at it like at any other recording."""
    audio = item.audio
    if not (isinstance(audio, dict) and audio.get("bytes")) or (item.path and os.path.exists(item.path)):
        return
    ext = os.path.splitext(item.path or "")[1] or ".wav"
    target = directory / (hashlib.blake2b(item.id.encode(), digest_size=10).hexdigest() + ext)
    if not target.exists():
        directory.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(target.suffix + ".tmp")
        tmp.write_bytes(audio["bytes"])
        os.replace(tmp, target)
    item.path = str(target)


def _shard_items(rows: Iterable[dict], rank: int, world_size: int, done: set[str], stats: LabelStats,
                 failures: list[dict], audio_dir: Path) -> Iterator[Item]:  # fmt: skip
    seen: set[str] = set()
    for item in rows_to_items(rows):
        stats.found += 1
        if shard_of(item.id, world_size) != rank:
            stats.elsewhere += 1
            continue
        if item.id in seen:  # a checked dataset cannot get here; a stream can only be checked as it goes
            raise DuplicateIdError(f"the input repeats id {item.id!r}: every recording needs its own id "
                                   "(ids key labels and resumes)")  # fmt: skip
        seen.add(item.id)
        if item.id in done:
            stats.already_done += 1
            continue
        if item.duration is None:  # unknown length: the header gives it cheaply (and catches bad files)
            try:
                item.duration = audio_duration(item.audio) - item.offset
            except AudioDecodeError as err:
                failures.append({"id": item.id, "audio": item.path, "error": str(err)})
                continue
        _materialise(item, audio_dir)
        yield item


def label_dataset(
    rows: Iterable[dict],
    output_dir: str | os.PathLike,
    labeler: PseudoLabeler,
    rank: int = 0,
    world_size: int = 1,
    resume: bool = False,
    progress: bool = False,
    max_batches: int | None = None,
    retry_failed: bool = False,
) -> LabelStats:
    """Label this process's share of `rows` (dicts with id, audio, [duration, offset, language]) into
    `output_dir/pl-rank{rank:05d}.jsonl`; unreadable audio goes to `failures-rank{rank:05d}.jsonl`.

    resume=True skips ids found in any shard of `output_dir`; without it, finding this process's
    own shards non-empty is an error (appending would duplicate labels). Other processes' shards are
    not checked here, since they may already be writing: the CLI checks them all before a barrier.
    `retry_failed` (with resume): ids that failed before are tried again (e.g. after their files were
    repaired); the merge keeps a label over an older failure. `max_batches` stops early (tests, dry runs).
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    own = [shard_path(output_dir, rank, LABEL_PREFIX), shard_path(output_dir, rank, FAILURE_PREFIX)]
    if not resume and any(p.exists() and p.stat().st_size for p in own):
        raise FileExistsError(f"{output_dir} already holds this process's shards: pass resume=True (--resume) "
                              "to continue that run, or choose a new output directory")  # fmt: skip
    done_kinds = (LABEL_PREFIX,) if retry_failed else (LABEL_PREFIX, FAILURE_PREFIX)
    done = completed_ids(output_dir, done_kinds) if resume else set()
    stats = LabelStats()
    start = time.perf_counter()
    sampling_rate = labeler.teacher.sampling_rate
    cfg = labeler.config
    pending_failures: list[dict] = []

    def chunks() -> Iterator[list[Item]]:
        buffer: list[Item] = []
        for item in _shard_items(rows, rank, world_size, done, stats, pending_failures,
                                 output_dir / "embedded_audio"):
            buffer.append(item)
            if cfg.sort_buffer and len(buffer) >= cfg.sort_buffer:
                yield buffer
                buffer = []
        if buffer:
            yield buffer

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(unit="s audio", desc=f"pseudo-labeling (rank {rank})", dynamic_ncols=True)
    seconds_done = 0.0  # the bar counts whole seconds: tqdm prints float counts with every decimal

    with ShardWriter(shard_path(output_dir, rank, LABEL_PREFIX), fsync=cfg.fsync) as writer, \
            ShardWriter(shard_path(output_dir, rank, FAILURE_PREFIX), fsync=cfg.fsync) as failure_writer, \
            ThreadPoolExecutor(max(1, cfg.io_threads)) as pool:  # fmt: skip

        def submit(batch: list[Item]):
            return batch, [pool.submit(_load, item, sampling_rate) for item in batch]

        for chunk in chunks():
            batches = plan_batches(chunk, cfg.max_batch_seconds, cfg.window_s, cfg.overlap_s)
            if bar is not None and cfg.sort_buffer is None:
                bar.total = round(sum(_item_seconds(i) for i in chunk))
            queued = submit(batches[0]) if batches else None
            for b in range(len(batches)):
                if max_batches is not None and stats.batches >= max_batches:
                    stats.interrupted = True
                    break
                batch, futures = queued
                queued = submit(batches[b + 1]) if b + 1 < len(batches) else None  # decode audio ahead
                # Header failures met while filling the buffer are written with the next batch.
                ok_items, waves, failures = [], [], list(pending_failures)
                pending_failures.clear()
                for item, future in zip(batch, futures):
                    result = future.result()
                    if isinstance(result, str):
                        logger.warning("skipping %s: %s", item.id, result)
                        failures.append({"id": item.id, "audio": item.path, "error": result})
                    else:
                        ok_items.append(item)
                        waves.append(result)
                records = labeler.label(ok_items, waves) if ok_items else []
                writer.write(records)
                failure_writer.write(failures)
                stats.failures.extend(failures)
                stats.failed += len(failures)
                stats.done += len(records)
                seconds = sum(len(w) for w in waves) / sampling_rate
                stats.audio_seconds += seconds
                stats.batches += 1
                if bar is not None:
                    seconds_done += sum(_item_seconds(i) for i in batch)
                    bar.update(round(seconds_done) - bar.n)
            if stats.interrupted:
                break
        if pending_failures and not stats.interrupted:
            failure_writer.write(pending_failures)
            stats.failures.extend(pending_failures)
            stats.failed += len(pending_failures)
    if bar is not None:
        bar.close()
    stats.elapsed_s = time.perf_counter() - start
    return stats
