"""Training data: sources on disk -> one filtered, weighted index -> batches of model inputs.

Sources are Common Voice folders (via :func:`modeling_mlpl.data.common_voice.load_common_voice`)
and `datasets` folders saved with ``save_to_disk`` (pseudo-label sets, or any dataset with audio and
text), each named by a data spec and opened by :func:`modeling_mlpl.data.open_dataset`.
Pseudo-label rows carry ``offset``/``duration`` (a segment of a long recording) and ``token_times``
(the PL's CTC alignment), which random cropping uses (:mod:`modeling_mlpl.augment`).

Rows a CTC model cannot learn from (characters outside the vocabulary, labels longer than the output
frames, empty text) are dropped and counted per source; unreadable audio met during training is
skipped and counted by the collator. Nothing is dropped silently.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from datasets import Dataset

from ..audio import SAMPLING_RATE, AudioDecodeError, load_segment, row_segment
from ..augment import random_crop
from ..feature_extraction_mlpl import (
    HOP_LENGTH,
    N_MELS,
    MLPLFeatureExtractor,
    log_mel_spectrogram,
    normalize_per_utterance,
    num_feature_frames,
)
from ..text import filter_transcripts, normalize_transcript

logger = logging.getLogger(__name__)


@dataclass
class SourceStats:
    """What one training source contributed and what was dropped (reported at start-up)."""

    name: str
    rows: int = 0
    kept: int = 0
    weight: float = 1.0
    dropped: dict[str, int] = field(default_factory=dict)
    oov_characters: str = ""
    seconds: float = 0.0

    def line(self) -> str:
        drops = ", ".join(f"{k} {v}" for k, v in sorted(self.dropped.items()) if v) or "none"
        oov = f" (oov chars {self.oov_characters!r})" if self.oov_characters else ""
        return (f"{self.name}: {self.kept}/{self.rows} utterances kept ({self.seconds / 3600:.2f} h), weight "
                f"{self.weight:g}; dropped: {drops}{oov}")


def filter_rows(ds: Dataset, vocabulary: Sequence[str], languages: Sequence[str]) -> tuple[list[int], dict, str]:
    """Indices of `ds` rows usable for CTC training, drop counts by reason, and the OOV characters.

    Reasons: empty_text, oov_characters, too_short_for_ctc (from :func:`modeling_mlpl.text.filter_transcripts`),
    unreadable_audio (no duration), unknown_language (not an LID class of the model).
    """
    texts = [normalize_transcript(t) for t in ds["text"]]
    rows = []
    dropped = {"unreadable_audio": 0, "unknown_language": 0}
    known = set(languages)
    for i, (text, language, duration) in enumerate(zip(texts, ds["language"], ds["duration"])):
        if duration is None or not np.isfinite(duration):
            dropped["unreadable_audio"] += 1
        elif language not in known:
            dropped["unknown_language"] += 1
        else:
            rows.append({"i": i, "text": text, "duration": duration})
    result = filter_transcripts(rows, vocabulary=vocabulary)
    dropped.update(result.counts)
    oov = "".join(c for c, _ in result.oov_characters.most_common(20))
    return [r["i"] for r in result.kept], dropped, oov


def expand_by_weight(indices: Sequence[int], weight: float, rng: np.random.Generator) -> list[int]:
    """floor(weight) copies of every index plus a fixed random share (weight - floor) of them."""
    whole, frac = int(np.floor(weight)), weight - np.floor(weight)
    out = list(indices) * whole
    if frac > 0 and len(indices):
        pick = rng.choice(len(indices), size=int(round(frac * len(indices))), replace=False)
        out += [indices[j] for j in sorted(pick)]
    return out


class TrainingSet(torch.utils.data.Dataset):
    """All training sources behind one index; item = (index, crop) -> decoded example or None.

    `durations` (what the length-bucketing sampler packs) are the full segment lengths;
    `cropped_durations` are those seen while cropping is on (long aligned segments -> crop length).
    """

    def __init__(self, sources: list[Dataset], entries: list[tuple[int, int]], lang2id: dict[str, int],
                 crop_seconds: float, seed: int, stats: list[SourceStats], feature_extractor=None,
                 feature_cache_gb: float = 0.0):  # fmt: skip
        self.feature_extractor = feature_extractor
        # Log-mel features cost more CPU than the tiny model's forward + backward (float64 FFT), and
        # an uncropped utterance always gives the same features: keep them, up to a memory budget.
        # A crop is never the same twice, but its frames are a slice of its whole recording's (frames
        # do not overlap the crop's edges: no centring, pre-emphasis inside each frame): keep the
        # whole recordings' un-normalised frames in the same budget (see `_crop_from_frames`).
        self.cache: dict[int, dict] = {}
        self.frames: dict[tuple[int, int], tuple[torch.Tensor, int]] = {}  # (source, row) -> (log-mel, samples)
        self.unreadable: set[tuple[int, int]] = set()
        self.cache_budget = int(feature_cache_gb * 2**30)
        self.cache_bytes = 0
        self.sources = sources
        self.entries = entries  # (source, row) per index
        self.lang2id = lang2id
        self.crop_seconds = crop_seconds
        self.seed = seed
        self.stats = stats
        # Whole columns are read once: row access would decode every column of every row.
        durations = [np.asarray(src["duration"], dtype=np.float64) for src in sources]
        aligned = ["token_times" in src.column_names for src in sources]
        self.durations = np.array([durations[s][r] for s, r in entries], dtype=np.float64)
        croppable = np.array([aligned[s] for s, _ in entries], dtype=bool)
        self.cropped_durations = np.where(croppable, np.minimum(self.durations, crop_seconds), self.durations)

    def __len__(self) -> int:
        return len(self.entries)

    def texts(self) -> list[str]:
        columns = [src["text"] for src in self.sources]
        return [normalize_transcript(columns[s][r]) for s, r in self.entries]

    def __getitem__(self, item: tuple[int, bool, tuple[int, ...]]) -> dict | None:
        """`item` = (index, crop?, rng key); None when the audio cannot be decoded (counted by the collator)."""
        index, crop, key = item
        cacheable = not crop or self.cropped_durations[index] == self.durations[index]
        if cacheable and index in self.cache:
            return self.cache[index]
        if not cacheable and isinstance(self.feature_extractor, MLPLFeatureExtractor):  # its frames: see __init__
            example = self._crop_from_frames(index, key)
            if example is not None:
                return example
        example = self._load(index, crop, key)
        if example is not None and self.feature_extractor is not None:
            features = self.feature_extractor(example.pop("audio"), sampling_rate=SAMPLING_RATE, return_tensors="pt")
            example["features"] = features["input_features"][0]  # (T, 80)
            size = example["features"].numel() * 4
            if cacheable and self.cache_bytes + size <= self.cache_budget:
                self.cache[index] = example
                self.cache_bytes += size
        return example

    def _load(self, index: int, crop: bool, key: tuple[int, ...]) -> dict | None:
        source, row_index = self.entries[index]
        row = self.sources[source][row_index]
        return load_example(row, normalize_transcript(row["text"]), row.get("token_times"), self.lang2id[row["language"]],
                            self.crop_seconds if crop else None, key)  # fmt: skip

    def _crop_from_frames(self, index: int, key: tuple[int, ...]) -> dict | None:
        """The crop of item (index, crop, key) as features sliced from its whole recording's cached log-mel
        frames: no decoding and no FFT per crop. The window and its text are those of :func:`load_example`
        (same key, same crop); its start is rounded to a 10 ms frame. None when the recording's frames do
        not fit the cache budget or its audio is unreadable (the caller then decodes the crop itself)."""
        source, row_index = self.entries[index]
        row = self.sources[source][row_index]
        whole = self._whole_frames((source, row_index), row, float(self.durations[index]))
        if whole is None:
            return None
        frames, samples = whole
        base = float(row.get("offset") or 0.0)
        offset, duration, text = crop_window(row, normalize_transcript(row["text"]), row.get("token_times"),
                                             self.crop_seconds, key)  # fmt: skip
        first = min(int(round((offset - base) * SAMPLING_RATE / HOP_LENGTH)), frames.shape[0] - 1)
        crop_samples = samples - first * HOP_LENGTH
        if duration is not None:
            crop_samples = min(int(round(duration * SAMPLING_RATE)), crop_samples)
        count = max(1, min(num_feature_frames(crop_samples), frames.shape[0] - first))
        features = normalize_per_utterance(frames[None, first : first + count].double(), torch.tensor([count]))[0]
        return {"id": row["id"], "features": features.float(), "text": text,
                "language_id": self.lang2id[row["language"]], "seconds": crop_samples / SAMPLING_RATE}  # fmt: skip

    def _whole_frames(self, key: tuple[int, int], row: dict, duration_s: float) -> tuple[torch.Tensor, int] | None:
        """(un-normalised log-mel frames (T, 80) float32, audio samples) of a whole segment, computed once
        and kept while the cache budget allows; None when over budget or unreadable."""
        if key in self.frames:
            return self.frames[key]
        size = int(duration_s * SAMPLING_RATE / HOP_LENGTH + 1) * N_MELS * 4
        if key in self.unreadable or self.cache_bytes + size > self.cache_budget:
            return None
        example = load_example(row, "", None, 0, None, ())
        if example is None or num_feature_frames(example["audio"].size) == 0:
            self.unreadable.add(key)  # unreadable or shorter than a frame: the caller's path reports it
            return None
        audio = torch.from_numpy(example["audio"])
        frames = log_mel_spectrogram(audio[None])[0].float()
        self.frames[key] = (frames, audio.numel())
        self.cache_bytes += frames.numel() * 4
        return self.frames[key]


def load_example(row: dict, text: str, token_times: Sequence[float] | None, language_id: int,
                 crop_seconds: float | None, key: Sequence[int]) -> dict | None:  # fmt: skip
    """One training example of a dataset row with transcript `text` (aligned by `token_times`, if any):
    a random `crop_seconds` window of it when that applies (see :func:`random_crop`, drawn from `key`),
    else the whole segment. None when the audio cannot be decoded or is empty (the collator counts it).
    Labelled rows and the slimIPL cache's pseudo-labels (text and times not stored in the row) share it."""
    offset, read_duration, text = crop_window(row, text, token_times, crop_seconds, key)
    try:
        audio = load_segment(row["audio"], offset, read_duration)
    except AudioDecodeError as err:
        logger.warning("skipping unreadable audio %s: %s", row["id"], err)
        return None
    if audio.size == 0:
        logger.warning("skipping empty audio %s", row["id"])
        return None
    return {"id": row["id"], "audio": audio, "text": text, "language_id": language_id, "seconds": audio.size / SAMPLING_RATE}


def crop_window(row: dict, text: str, token_times: Sequence[float] | None, crop_seconds: float | None,
                key: Sequence[int]) -> tuple[float, float | None, str]:  # fmt: skip
    """(offset s in the file, duration s or None = to the end, transcript) of what :func:`load_example`
    reads of `row`: the random crop drawn from `key` when one applies, else the whole segment."""
    offset, duration = row_segment(row)
    if crop_seconds is not None:
        window = random_crop(text, token_times, float(row["duration"]), crop_seconds, np.random.default_rng(key))
        if window is not None:
            return (offset or 0.0) + window.start_s, window.duration_s, window.text
    return offset or 0.0, duration, text


class TaggedBatchSampler:
    """Wraps a batch sampler so each index carries the crop flag and a per-item RNG key.

    The key depends only on (seed, epoch, batch number, position): a resumed run crops exactly as
    the uninterrupted one, whatever RNG state other code left behind.
    """

    def __init__(self, batch_sampler, crop: bool, seed: int, epoch: int, first_batch: int):
        self.batch_sampler, self.crop, self.seed, self.epoch, self.first_batch = batch_sampler, crop, seed, epoch, first_batch

    def set_position(self, epoch: int, first_batch: int) -> None:
        """Where the next iteration starts (the trainer keeps one loader, and this sampler, for all epochs)."""
        self.epoch, self.first_batch = epoch, first_batch

    def __iter__(self):
        for n, batch in enumerate(self.batch_sampler, start=self.first_batch):
            yield [(i, self.crop, (self.seed, self.epoch, n, pos)) for pos, i in enumerate(batch)]

    def __len__(self) -> int:
        return len(self.batch_sampler)


class SpeechCollator:
    """Examples -> model inputs. Unreadable examples (None) are dropped and counted in `n_skipped`."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, examples: list[dict | None]) -> dict:
        good = [e for e in examples if e is not None]
        batch: dict[str, Any] = {"n_skipped": len(examples) - len(good), "ids": [e["id"] for e in good]}
        if not good:
            return batch
        if "features" in good[0]:  # computed per utterance by the dataset (see TrainingSet)
            lengths_f = torch.tensor([e["features"].shape[0] for e in good])
            features = {
                "input_features": torch.nn.utils.rnn.pad_sequence([e["features"] for e in good], batch_first=True),
                "attention_mask": (torch.arange(int(lengths_f.max()))[None, :] < lengths_f[:, None]).long(),
            }
            seconds = torch.tensor([e["seconds"] for e in good], dtype=torch.float64)
        else:
            features = self.processor.feature_extractor([e["audio"] for e in good], sampling_rate=SAMPLING_RATE,
                                                        return_tensors="pt")  # fmt: skip
            seconds = torch.tensor([e["audio"].size for e in good], dtype=torch.float64) / SAMPLING_RATE
        labels = self.processor.encode_labels([e["text"] for e in good])  # (B, L), -100 padded
        if labels.shape[1] == 0:  # every crop was silence: keep a (B, 1) all-ignored label tensor
            labels = torch.full((len(good), 1), -100, dtype=torch.long)
        batch.update(
            input_features=features["input_features"],
            attention_mask=features["attention_mask"],
            labels=labels,
            language_labels=torch.tensor([e["language_id"] for e in good], dtype=torch.long),
            audio_seconds=float(seconds.sum()),
            padded_seconds=float(seconds.max() * len(good)),
        )
        return batch


def make_loader(dataset: TrainingSet, batch_sampler: TaggedBatchSampler, processor, num_workers: int,
                pin_memory: bool = False):  # fmt: skip
    """DataLoader over pre-made batches. Its own generator keeps it from drawing on the global torch RNG
    (which would make a resumed run's dropout differ from an uninterrupted one). With workers, features
    are computed and unreadable audio counted (`n_skipped`) in the workers; `pin_memory` on CUDA lets the
    copies to the GPU overlap the update."""
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=batch_sampler,
        collate_fn=SpeechCollator(processor),
        num_workers=num_workers,
        persistent_workers=num_workers > 0,  # workers (and their feature caches) outlive an epoch
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(0),
    )


__all__ = [
    "filter_rows",
    "expand_by_weight",
    "SourceStats",
    "TrainingSet",
    "load_example",
    "crop_window",
    "TaggedBatchSampler",
    "SpeechCollator",
    "make_loader",
]
