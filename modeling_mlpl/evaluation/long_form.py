"""Decode recordings of any length in <= `window_s` windows with overlap, stitched by frame time.

Why: the paper's model is trained on ~5 s Common Voice clips; on 30 s VoxPopuli recordings it
degrades or emits nothing (docs/paper.md, "Cropping warm-up"), and attention cost grows with T^2. So
every recording is cut into windows of at most `window_s` seconds that overlap by `overlap_s` on
each side; each window keeps only its centre, where the encoder saw `overlap_s` of context on both
sides, and the kept regions tile the recording exactly.

Frame bookkeeping: one output frame = `config.inputs_to_logits_ratio` = 480 samples (30 ms). Windows
start on multiples of 480 samples, so local output frame j of a window starting at global frame a
is global frame a + j exactly (feature hop 160 x conv stride 3, symmetric conv padding). A window
covering frames [a, b) reads samples [480 a, 480 b) (the last one up to the end of the audio), which
gives exactly b - a output frames.

Features are normalised with the statistics of the whole recording (default), computed from the
windows' own frames, so a window sees exactly the features the unchunked recording would have; a
short last window would otherwise be normalised with a few noisy frames. `normalization="window"`
normalises each window on its own (as a standalone clip).

Windows of many recordings are pooled, sorted by length and run in batches of at most
`max_batch_seconds` padded audio, so a batch of long recordings is as dense as a batch of short ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from ..configuration_mlpl import FRAME_LENGTH, SAMPLES_PER_OUTPUT_FRAME, SAMPLING_RATE
from ..data.sampler import pack_batches
from ..feature_extraction_mlpl import log_mel_spectrogram, num_feature_frames

__all__ = ["Window", "plan_windows", "window_geometry", "num_output_frames", "LongFormDecoder", "LongFormOutput"]


@dataclass(frozen=True)
class Window:
    """One window of one recording, in global output frames. `[keep_start, keep_end)` tiles the recording."""

    recording: int
    start: int  # first output frame the window covers
    end: int  # exclusive
    keep_start: int
    keep_end: int


def num_output_frames(model, num_samples: int) -> int:
    """Output frames the model gives for `num_samples` of audio (clips < 25 ms are padded to one frame)."""
    return int(model.get_output_lengths(num_feature_frames(max(num_samples, FRAME_LENGTH))))


def window_geometry(window_s: float, overlap_s: float, samples_per_frame: int = SAMPLES_PER_OUTPUT_FRAME,
                    sampling_rate: int = SAMPLING_RATE) -> tuple[int, int]:  # fmt: skip
    """(window, overlap) in output frames. The window is floored so that it never exceeds `window_s`."""
    window = int(math.floor(window_s * sampling_rate / samples_per_frame))
    overlap = int(round(overlap_s * sampling_rate / samples_per_frame))
    if overlap < 0 or window - 2 * overlap < 1:
        raise ValueError(
            f"window_s={window_s} must exceed 2 * overlap_s={overlap_s} (each window keeps its centre)"
        )
    return window, overlap


def plan_windows(num_frames: int, window: int, overlap: int, recording: int = 0) -> list[Window]:
    """Windows of `window` frames every `window - 2*overlap` frames covering [0, num_frames).

    Window k covers [kS, kS + W) and keeps [kS + O, (k+1)S + O) (S = stride, O = overlap); the first
    keeps from 0 and the last to the end. Every kept frame therefore has >= O frames of context on
    both sides, except near the ends of the recording, where there is no more audio anyway.
    """
    if num_frames <= window:
        return [Window(recording, 0, num_frames, 0, num_frames)]
    stride = window - 2 * overlap
    count = 1 + math.ceil((num_frames - window) / stride)
    windows = []
    for k in range(count):
        start = k * stride
        end = min(start + window, num_frames)
        keep_start = 0 if k == 0 else start + overlap
        keep_end = num_frames if k == count - 1 else start + stride + overlap
        windows.append(Window(recording, start, end, keep_start, keep_end))
    return windows


@dataclass
class LongFormOutput:
    """log_probs[i]: (T_i, V) float32 CTC log-probabilities of recording i, stitched.
    lid_log_probs: (B, L) language log-probabilities per recording (window LID logits averaged,
    weighted by the frames each window keeps: the LID head is linear in the mean hidden state)."""

    log_probs: list[np.ndarray]
    lid_log_probs: np.ndarray
    num_windows: int = 0


@dataclass
class PaddingStats:
    """Audio fed to the model: real seconds vs padded seconds (padding = batch x longest window)."""

    real_samples: int = 0
    padded_samples: int = 0
    forward_calls: int = 0

    @property
    def padding_fraction(self) -> float:
        return 1.0 - self.real_samples / self.padded_samples if self.padded_samples else 0.0


@dataclass
class LongFormDecoder:
    """Windowed, batched CTC + LID forward pass over whole recordings.

    model: an `MLPLForCTC` (eval mode); feature_extractor: its `MLPLFeatureExtractor`.
    window_s=None disables windowing (each recording is one window: the unchunked reference, equal to
    `model(**feature_extractor(waveform))`). max_batch_seconds bounds batch size x longest window.
    """

    model: torch.nn.Module
    feature_extractor: object
    window_s: float | None = 10.0
    overlap_s: float = 2.0
    max_batch_seconds: float = 60.0
    autocast_dtype: torch.dtype | None = None
    normalization: str = "recording"
    stats: PaddingStats = field(default_factory=PaddingStats)

    def __post_init__(self):
        if self.normalization not in ("recording", "window"):
            raise ValueError(f"normalization must be 'recording' or 'window', got {self.normalization!r}")
        self.samples_per_frame = int(self.model.config.inputs_to_logits_ratio)
        self.sampling_rate = int(self.feature_extractor.sampling_rate)
        if self.window_s is not None:
            self.window, self.overlap = window_geometry(
                self.window_s, self.overlap_s, self.samples_per_frame, self.sampling_rate
            )

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def plan(self, lengths: Sequence[int]) -> list[Window]:
        """Windows of every recording (`lengths` in samples)."""
        windows = []
        for i, n in enumerate(lengths):
            frames = num_output_frames(self.model, n)
            if self.window_s is None:
                windows.append(Window(i, 0, frames, 0, frames))
            else:
                windows.extend(plan_windows(frames, self.window, self.overlap, recording=i))
        return windows

    def batches(self, windows: list[Window]) -> list[list[int]]:
        """Window indices grouped longest first so that batch x longest window <= max_batch_seconds."""
        frames = [w.end - w.start for w in windows]
        order = sorted(range(len(windows)), key=lambda i: frames[i], reverse=True)
        budget = self.max_batch_seconds * self.sampling_rate / self.samples_per_frame  # in frames
        return pack_batches(order, frames, budget)

    def window_features(self, waveforms: Sequence[np.ndarray], windows: list[Window]) -> list[torch.Tensor]:
        """(F_w, 80) normalised features of each window (see the module docstring)."""
        last_of = {w.recording: k for k, w in enumerate(windows)}
        raw = []
        for k, w in enumerate(windows):
            wave = waveforms[w.recording]
            start = w.start * self.samples_per_frame
            stop = len(wave) if last_of[w.recording] == k else w.end * self.samples_per_frame
            audio = torch.as_tensor(np.asarray(wave[start:stop], dtype=np.float32))
            if audio.numel() < FRAME_LENGTH:  # < 25 ms: one zero-padded frame, as the feature extractor does
                audio = torch.nn.functional.pad(audio, (0, FRAME_LENGTH - audio.numel()))
            raw.append(log_mel_spectrogram(audio[None])[0])  # (F_w, 80) float64
        # Statistics per recording over the frames each window keeps: they partition the recording.
        stride = int(self.model.config.conv_stride)
        sums: dict[int, torch.Tensor] = {}
        squares: dict[int, torch.Tensor] = {}
        counts: dict[int, int] = {}
        for k, (w, r) in enumerate(zip(windows, raw)):
            if self.normalization == "window":
                key, part = k, r
            else:
                key = w.recording
                lo = (w.keep_start - w.start) * stride
                hi = r.shape[0] if last_of[w.recording] == k else (w.keep_end - w.start) * stride
                part = r[lo:hi]
            sums[key] = sums.get(key, 0) + part.sum(0)
            squares[key] = squares.get(key, 0) + (part * part).sum(0)
            counts[key] = counts.get(key, 0) + part.shape[0]
        features = []
        for k, (w, r) in enumerate(zip(windows, raw)):
            key = w.recording if self.normalization == "recording" else k
            n = max(counts[key], 1)
            mean = sums[key] / n
            var = (squares[key] / n - mean * mean).clamp(min=0.0)
            # Same floor as normalize_per_utterance: a constant feature (digital silence) stays finite.
            features.append(((r - mean) / var.sqrt().clamp(min=1e-5)).float())
        return features

    @torch.no_grad()
    def forward_windows(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One padded forward of (F_w, 80) features: -> log_probs (B, T, V) float32 on CPU,
        LID logits (B, L), output lengths (B,)."""
        lengths = torch.tensor([f.shape[0] for f in features])
        padded = torch.nn.utils.rnn.pad_sequence(features, batch_first=True).to(self.device)  # (B, F, 80)
        mask = (torch.arange(padded.shape[1])[None, :] < lengths[:, None]).long().to(self.device)  # (B, F)
        hop = self.samples_per_frame // int(self.model.config.conv_stride)
        self.stats.real_samples += int(lengths.sum()) * hop
        self.stats.padded_samples += int(lengths.max()) * len(features) * hop
        self.stats.forward_calls += 1
        if self.autocast_dtype is not None:
            with torch.autocast(self.device.type, dtype=self.autocast_dtype):
                out = self.model(padded, attention_mask=mask)
        else:
            out = self.model(padded, attention_mask=mask)
        log_probs = out.logits.float().log_softmax(-1).cpu()  # (B, T_out, V)
        out_lengths = self.model.get_output_lengths(lengths)  # (B,)
        return log_probs, out.lid_logits.float().cpu(), out_lengths

    def __call__(self, waveforms: Sequence[np.ndarray]) -> LongFormOutput:
        """Stitched log-probs and LID of each waveform (16 kHz mono float32, at least one sample)."""
        lengths = [len(w) for w in waveforms]
        if any(n == 0 for n in lengths):
            raise ValueError("cannot decode an empty waveform (0 samples)")
        windows = self.plan(lengths)
        features = self.window_features(waveforms, windows)
        totals = [num_output_frames(self.model, n) for n in lengths]
        vocab = self.model.config.vocab_size
        stitched = [np.zeros((t, vocab), dtype=np.float32) for t in totals]
        lid_sum = np.zeros((len(waveforms), self.model.config.num_languages), dtype=np.float64)
        for group in self.batches(windows):
            log_probs, lid_logits, out_lengths = self.forward_windows([features[k] for k in group])
            for row, k in enumerate(group):
                w = windows[k]
                if int(out_lengths[row]) != w.end - w.start:  # the frame bookkeeping above would be wrong
                    raise RuntimeError(f"window {w} gave {int(out_lengths[row])} frames")
                local = slice(w.keep_start - w.start, w.keep_end - w.start)
                stitched[w.recording][w.keep_start : w.keep_end] = log_probs[row, local].numpy()
                lid_sum[w.recording] += (w.keep_end - w.keep_start) * lid_logits[row].double().numpy()
        lid_logits = torch.from_numpy(lid_sum / np.maximum(totals, 1)[:, None])
        lid_log_probs = lid_logits.log_softmax(-1).float().numpy()  # (B, L)
        return LongFormOutput(stitched, lid_log_probs, num_windows=len(windows))
