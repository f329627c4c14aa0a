"""Stage 3 of the recipe: label unlabelled audio with a (fine-tuned) model, one shard per process.

    labeler = PseudoLabeler.from_pretrained("exp/finetune-de", PseudoLabelConfig(language="de"))
    stats = label_dataset(dataset, "exp/pl-de", labeler, rank=0, world_size=1, resume=True)

The paper greedy-decodes each language's VoxPopuli audio with that language's fine-tuned model.
Beyond it: `language="auto"` lets the LID head pick the language per recording, and
`models_per_language="dir/{lang}"` then re-decodes each recording with its language's model;
an `LMDecoder` gives LM beam-search labels instead of greedy ones.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import OrderedDict
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
from ..evaluation.long_form import LongFormDecoder
from ..resumable import Accounting, ShardWriter, completed_ids, shard_path
from .alignment import Label, label_from_log_probs
from .shards import FAILURE_PREFIX, LABEL_PREFIX, shard_of

logger = logging.getLogger(__name__)

__all__ = ["PseudoLabelConfig", "Item", "PseudoLabeler", "label_dataset", "rows_to_items", "plan_batches",
           "load_model"]  # fmt: skip

AUTO = "auto"


@dataclass
class PseudoLabelConfig:
    """How to label. language: a code of the model's `config.languages`, "auto" (LID head picks per
    recording) or None (take each row's `language` column). window_s/overlap_s: long-form windows
    (window_s=None: whole recordings, as the paper). max_batch_seconds: audio per batch (recordings
    are length-sorted, so batches have little padding). sort_buffer: rows sorted together (None:
    the whole shard; set it for streaming datasets). models_per_language: a path template with
    `{lang}` whose existing folders take over after LID. beam_width: LM beam (when an LM is given)."""

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


@dataclass
class Item:
    """One recording to label (a row of the input dataset)."""

    id: str
    audio: Any  # path string, or a datasets Audio dict {"path", "bytes"}
    path: str | None
    offset: float = 0.0
    duration: float | None = None  # seconds; None: read from the header when needed
    language: str = ""


_DTYPES = {None: None, "fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class _Decoder:
    """A model with its windowed decoder and vocabulary tables."""

    def __init__(self, name: str, model, processor, config: PseudoLabelConfig):
        self.name = name
        self.model = model
        self.processor = processor
        self.long_form = LongFormDecoder(
            model, processor.feature_extractor, window_s=config.window_s, overlap_s=config.overlap_s,
            max_batch_seconds=config.max_batch_seconds, autocast_dtype=_DTYPES[config.autocast_dtype],
        )  # fmt: skip
        tokenizer = processor.tokenizer
        self.token2id = dict(tokenizer.get_vocab())
        self.id2token = {i: t for t, i in self.token2id.items()}
        for i in range(model.config.vocab_size):  # ids the model has but the vocabulary lacks
            self.id2token.setdefault(i, tokenizer.unk_token)
        self.blank = int(model.config.pad_token_id or 0)
        self.frame_seconds = model.config.inputs_to_logits_ratio / processor.feature_extractor.sampling_rate


class PseudoLabeler:
    """Turns loaded audio into pseudo-label records (no I/O of its own except loading models)."""

    def __init__(self, model, processor, config: PseudoLabelConfig | None = None, lm_decoder=None,
                 model_name: str = "base", transcripts: Mapping[str, str] | None = None):  # fmt: skip
        """`transcripts` (id -> known text): force-align these instead of decoding, so that known
        long-form transcripts (the synthetic corpus's truth: the oracle) get token times and can be
        cropped like PLs. Every labelled id must have one."""
        self.config = config or PseudoLabelConfig()
        self.base = _Decoder(model_name, model, processor, self.config)
        self.languages = list(model.config.languages)
        self.lm_decoder = lm_decoder
        self.transcripts = transcripts
        self._routed: OrderedDict[str, _Decoder] = OrderedDict()
        self._missing_models: set[str] = set()
        lang = self.config.language
        if lang not in (None, AUTO) and lang not in self.languages:
            raise ValueError(f"unknown language {lang!r}: this model knows {', '.join(self.languages)}")
        if self.config.models_per_language and "{lang}" not in self.config.models_per_language:
            raise ValueError("models_per_language must contain '{lang}', e.g. exp/finetune-{lang}")

    @classmethod
    def from_pretrained(cls, model_dir: str, config: PseudoLabelConfig | None = None, lm_decoder=None,
                        device: torch.device | str | None = None,
                        transcripts: Mapping[str, str] | None = None) -> "PseudoLabeler":  # fmt: skip
        model, processor = load_model(model_dir, device)
        return cls(model, processor, config, lm_decoder, model_name=str(model_dir), transcripts=transcripts)

    @property
    def device(self) -> torch.device:
        return self.base.long_form.device

    @property
    def padding_stats(self):
        return self.base.long_form.stats

    def _decoder_for(self, language: str) -> _Decoder:
        """The language's fine-tuned model when `models_per_language` has one, else the base model."""
        template = self.config.models_per_language
        if not template or language in self._missing_models:
            return self.base
        if language in self._routed:
            self._routed.move_to_end(language)
            return self._routed[language]
        path = template.format(lang=language)
        if not os.path.isdir(path):
            logger.warning("no model for language %r at %s: its recordings use the base model", language, path)
            self._missing_models.add(language)
            return self.base
        if len(self._routed) >= self.config.max_loaded_models:
            self._routed.popitem(last=False)  # least recently used
        model, processor = load_model(path, self.device)
        self._routed[language] = _Decoder(path, model, processor, self.config)
        return self._routed[language]

    def _language_of(self, item: Item, lid_log_probs: np.ndarray) -> tuple[str, str]:
        """(language, where it came from)."""
        if self.config.language == AUTO:
            return self.languages[int(lid_log_probs.argmax())], "lid"
        if self.config.language:
            return self.config.language, "given"
        if item.language:
            return item.language, "dataset"
        return self.languages[int(lid_log_probs.argmax())], "lid"  # nothing given: best guess, recorded

    def label(self, items: list[Item], waveforms: list[np.ndarray]) -> list[dict]:
        """Records for loaded, non-empty 16 kHz waveforms."""
        base_out = self.base.long_form(waveforms)
        k = min(self.config.lid_top_k, len(self.languages))
        languages, sources, lid_top = [], [], []
        for item, lid in zip(items, base_out.lid_log_probs):
            lang, source = self._language_of(item, lid)
            languages.append(lang)
            sources.append(source)
            top = np.argsort(-lid, kind="stable")[:k]
            lid_top.append([{"language": self.languages[i], "prob": round(float(np.exp(lid[i])), 6)} for i in top])

        # Route to per-language models; the base output is reused where no other model applies.
        decoders = [self._decoder_for(lang) for lang in languages]
        log_probs: list[np.ndarray] = list(base_out.log_probs)
        for decoder in {id(d): d for d in decoders if d is not self.base}.values():
            idx = [i for i, d in enumerate(decoders) if d is decoder]
            out = decoder.long_form([waveforms[i] for i in idx])
            for i, lp in zip(idx, out.log_probs):
                log_probs[i] = lp

        texts: list[str | None] = [None] * len(items)
        method = "greedy"
        if self.transcripts is not None:
            missing = [item.id for item in items if item.id not in self.transcripts]
            if missing:
                raise KeyError(f"no transcript to align for {len(missing)} recording(s), e.g. {missing[0]!r}")
            texts, method = [self.transcripts[item.id] for item in items], "transcript"
        elif self.lm_decoder is not None:
            texts, method = self.lm_decoder.decode_batch(log_probs, languages, beam_width=self.config.beam_width), "lm"

        records = []
        for i, item in enumerate(items):
            decoder = decoders[i]
            try:
                label, scores = label_from_log_probs(log_probs[i], decoder.id2token, decoder.token2id,
                                                     decoder.frame_seconds, text=texts[i], blank=decoder.blank)
                item_method = method
            except ValueError as err:
                label, scores = label_from_log_probs(log_probs[i], decoder.id2token, decoder.token2id,
                                                     decoder.frame_seconds, blank=decoder.blank)
                if method == "transcript":  # a known text is kept, without times (never cropped)
                    logger.warning("%s: %s; transcript kept without token times", item.id, err)
                    label, item_method = Label(text=texts[i], token_times=[], token_ids=[]), "transcript_unaligned"
                else:  # LM text the acoustic frames cannot hold: keep the greedy label
                    logger.warning("%s: %s; using the greedy label", item.id, err)
                    item_method = "greedy_fallback"
            records.append({
                "id": item.id,
                "audio": item.path,
                "offset": float(item.offset),
                "duration": round(len(waveforms[i]) / self.base.long_form.sampling_rate, 4),
                "language": languages[i],
                "language_source": sources[i],
                "text": label.text,
                "token_times": label.token_times,
                "words": label.words,
                "confidence": round(scores["confidence"], 6),
                "path_score": round(scores["path_score"], 6),
                "ctc_score": round(scores["ctc_score"], 6),
                "num_frames": scores["num_frames"],
                "lid_top_k": lid_top[i],
                "model": decoder.name,
                "decoder": item_method,
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
    sampling_rate = labeler.base.long_form.sampling_rate
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
