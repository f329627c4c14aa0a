"""Teachers from transformers CTC checkpoints: anything ``AutoModelForCTC`` loads (wav2vec2, HuBERT,
WavLM, data2vec-audio, wav2vec2-conformer, ...), and MMS with its per-language adapters.

The text is the checkpoint's own: the argmax path decoded by its tokenizer (repeats grouped, the
pad token as the CTC blank, the word delimiter ``|`` as a space), i.e. what
``pipeline("automatic-speech-recognition", model=...)`` writes for a short file. Times come from
the tokenizer's character offsets (output frames) times the seconds per frame.

Long recordings are decoded in windows (:func:`~modeling_mlpl.evaluation.long_form.plan_windows`, the
planner of the mlpl long-form decoder) stitched by frame time. These models' conv front end has no
padding: output frame j of audio that starts at sample 0 reads samples ``[j r, j r + R)`` (r samples
per frame, R the receptive field), so a window that starts at frame a, i.e. at sample ``a r``, gives
the recording's frames a, a+1, ... exactly. Each window keeps its centre (its context is dropped).
The feature extractor normalises each window on its own (as it would a standalone clip).
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ...ctc_text import best_path
from ...data.languages import from_iso639_3, iso639_3
from ...data.sampler import pack_batches
from ...evaluation.long_form import PaddingStats, Window, plan_windows, window_geometry
from ..alignment import carry_times, ctc_scores, words_from_characters
from .base import DecodeOptions, Teacher, TeacherError, identity
from .mlpl import DTYPES

logger = logging.getLogger(__name__)

__all__ = ["CTCTeacher", "MMSTeacher", "frame_geometry", "parse_teacher_language"]


def frame_geometry(model) -> tuple[int, int]:
    """(samples per output frame r, receptive field R in samples) of a CTC model's conv front end,
    read off its own ``_get_feat_extract_output_lengths`` (so a model with a conv adapter is right too)."""
    lengths = getattr(model, "_get_feat_extract_output_lengths", None)
    if lengths is None:
        raise TeacherError(f"{type(model).__name__} does not say how many frames its audio gives "
                           "(no _get_feat_extract_output_lengths): its labels cannot be timed")  # fmt: skip

    def frames(n: int) -> int:
        return int(lengths(torch.tensor([n]))[0])

    def fewest_samples_for(k: int) -> int:
        lo, hi = 1, 1 << 22
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (mid + 1, hi) if frames(mid) < k else (lo, mid)
        return lo

    receptive = fewest_samples_for(1)
    stride = fewest_samples_for(2) - receptive
    if stride < 1 or frames(receptive + 9 * stride) != 10:
        raise TeacherError(f"{type(model).__name__}: its output frames are not evenly spaced in the audio")
    return stride, receptive


def parse_teacher_language(value: str | dict | None) -> dict[str, str] | str | None:
    """--teacher_language: "por" (the adapter for every recording) or "pt=por,zh-CN=cmn-script_simplified"."""
    if value is None or isinstance(value, dict):
        return value
    if "=" not in value:
        return value
    pairs = [p.split("=", 1) for p in value.split(",") if p]
    if any(len(p) != 2 or not p[0] or not p[1] for p in pairs):
        raise TeacherError(f"--teacher_language {value!r}: give CODE or OURS=THEIRS[,OURS=THEIRS...]")
    return dict(pairs)


class CTCTeacher(Teacher):
    kind = "ctc"

    def __init__(self, model, processor, options: DecodeOptions | None = None, *, name_or_path: str,
                 revision: str | None = None):  # fmt: skip
        self.model = model.eval()
        self.processor = processor
        self.feature_extractor = processor.feature_extractor
        self.tokenizer = processor.tokenizer
        self.options = options or DecodeOptions()
        self.name_or_path = str(name_or_path)
        self.revision = revision
        self.sampling_rate = int(self.feature_extractor.sampling_rate)
        self.samples_per_frame, self.receptive_field = frame_geometry(model)
        self.frame_seconds = self.samples_per_frame / self.sampling_rate
        if self.options.window_s:
            self.window, self.overlap = window_geometry(self.options.window_s, self.options.overlap_s,
                                                        self.samples_per_frame, self.sampling_rate)  # fmt: skip
        # Without an attention mask, padding changes what the model computes: such windows are batched
        # only with windows of their own length (the full-length windows of long recordings still pool).
        self.uses_mask = bool(getattr(self.feature_extractor, "return_attention_mask", False))
        self.autocast = DTYPES[self.options.autocast_dtype]
        self.stats = PaddingStats()
        self.identity = identity(self.kind, self.name_or_path, revision)

    @classmethod
    def _load(cls, name_or_path: str, revision: str | None, device, **model_kwargs):
        from transformers import AutoModelForCTC, AutoProcessor

        try:
            model = AutoModelForCTC.from_pretrained(name_or_path, revision=revision, **model_kwargs)
            processor = AutoProcessor.from_pretrained(name_or_path, revision=revision)
        except (OSError, ValueError) as err:
            raise TeacherError(f"cannot load CTC model {name_or_path}: {str(err).splitlines()[0]}") from err
        if not hasattr(processor, "tokenizer") or not hasattr(processor, "feature_extractor"):
            raise TeacherError(f"{name_or_path} has no processor with a tokenizer and a feature extractor "
                               "(save one with processor.save_pretrained)")  # fmt: skip
        if device is not None:
            model.to(device)
        return model, processor

    @classmethod
    def from_pretrained(cls, name_or_path: str, revision: str | None = None, device=None,
                        options: DecodeOptions | None = None, **kind_options) -> "CTCTeacher":  # fmt: skip
        _refuse_options(cls.kind, kind_options)
        model, processor = cls._load(name_or_path, revision, device)
        return cls(model, processor, options, name_or_path=name_or_path, revision=revision)

    @property
    def padding_stats(self):
        return self.stats

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def run_options(self) -> dict:
        return {"decoder": "greedy", "window_s": self.options.window_s, "overlap_s": self.options.overlap_s}

    def output_frames(self, num_samples: int) -> int:
        return int(self.model._get_feat_extract_output_lengths(torch.tensor([num_samples]))[0])

    # -- forward over windows ------------------------------------------------------------------
    def _plan(self, lengths: Sequence[int]) -> list[Window]:
        windows = []
        for i, n in enumerate(lengths):
            frames = self.output_frames(n)
            if not self.options.window_s:
                windows.append(Window(i, 0, frames, 0, frames))
            else:
                windows.extend(plan_windows(frames, self.window, self.overlap, recording=i))
        return windows

    def _window_audio(self, wave: np.ndarray, w: Window, last: bool) -> np.ndarray:
        start = w.start * self.samples_per_frame
        stop = len(wave) if last else start + (w.end - w.start - 1) * self.samples_per_frame + self.receptive_field
        return wave[start:stop]

    def _batches(self, chunks: list[np.ndarray]) -> list[list[int]]:
        """Chunk indices, longest first, <= max_batch_seconds of padded audio per batch."""
        lengths = [len(c) for c in chunks]
        budget = self.options.max_batch_seconds * self.sampling_rate
        if self.uses_mask:
            order = sorted(range(len(chunks)), key=lambda i: lengths[i], reverse=True)
            return pack_batches(order, lengths, budget)
        batches = []
        for n in sorted(set(lengths), reverse=True):
            batches += pack_batches([i for i in range(len(chunks)) if lengths[i] == n], lengths, budget)
        return batches

    @torch.no_grad()
    def _forward(self, chunks: list[np.ndarray]) -> list[np.ndarray]:
        """One padded forward: (T_i, V) float32 log-probs of each chunk (its own frames only)."""
        inputs = self.feature_extractor(chunks, sampling_rate=self.sampling_rate, return_tensors="pt", padding=True)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        longest = max(len(c) for c in chunks)
        self.stats.real_samples += sum(len(c) for c in chunks)
        self.stats.padded_samples += longest * len(chunks)
        self.stats.forward_calls += 1
        context = torch.autocast(self.device.type, dtype=self.autocast) if self.autocast else nullcontext()
        with context:
            logits = self.model(**inputs).logits
        log_probs = logits.float().log_softmax(-1).cpu().numpy()  # (B, T, V)
        return [log_probs[i, : self.output_frames(len(c))] for i, c in enumerate(chunks)]

    def log_probs(self, waveforms: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Stitched (T_i, V) CTC log-probs of each 16 kHz waveform."""
        # Audio shorter than one receptive field gives no frame: padded with silence to one frame.
        waves = [w if len(w) >= self.receptive_field else np.pad(w, (0, self.receptive_field - len(w)))
                 for w in waveforms]  # fmt: skip
        windows = self._plan([len(w) for w in waves])
        last_of = {w.recording: k for k, w in enumerate(windows)}
        chunks = [self._window_audio(waves[w.recording], w, last_of[w.recording] == k) for k, w in enumerate(windows)]
        stitched: list[np.ndarray | None] = [None] * len(waves)
        totals = [self.output_frames(len(w)) for w in waves]
        for group in self._batches(chunks):
            for k, lp in zip(group, self._forward([chunks[k] for k in group])):
                w = windows[k]
                if lp.shape[0] != w.end - w.start:  # the frame bookkeeping above would be wrong
                    raise RuntimeError(f"window {w} gave {lp.shape[0]} frames")
                if stitched[w.recording] is None:
                    stitched[w.recording] = np.zeros((totals[w.recording], lp.shape[1]), dtype=np.float32)
                stitched[w.recording][w.keep_start : w.keep_end] = lp[w.keep_start - w.start : w.keep_end - w.start]
        return stitched

    # -- text ----------------------------------------------------------------------------------
    def _text(self, log_probs: np.ndarray) -> dict:
        """The tokenizer's greedy text of (T, V) log-probs, with per-character times and scores."""
        tokenizer = self.tokenizer
        blank = int(tokenizer.pad_token_id)
        ids = log_probs.argmax(-1).tolist()
        decoded = tokenizer.decode(ids, output_char_offsets=True)
        text = decoded.text
        # Offsets are per token (a token may spell several characters); spaces are delimiter tokens.
        joined, starts, ends = "", [], []
        for piece in decoded.char_offsets:
            joined += piece["char"]
            starts += [piece["start_offset"] * self.frame_seconds] * len(piece["char"])
            ends += [piece["end_offset"] * self.frame_seconds] * len(piece["char"])
        # decode() strips the ends and may lower-case or clean up spaces: carry the times over.
        starts, ends = carry_times(joined, text, starts, ends)
        scores = ctc_scores(log_probs, [s.token for s in best_path(log_probs, blank)], blank)
        return {
            "text": text,
            "token_times": [round(t, 3) for t in starts],
            "words": words_from_characters(text, starts, ends),
            "confidence": round(scores["confidence"], 6),
            "path_score": round(scores["path_score"], 6),
            "ctc_score": round(scores["ctc_score"], 6),
            "num_frames": scores["num_frames"],
            "model": self.name_or_path,
            "decoder": "greedy",
        }

    def label(self, waveforms: list[np.ndarray], languages: list[str]) -> list[dict]:
        return [self._text(lp) for lp in self.log_probs(waveforms)]


class MMSTeacher(CTCTeacher):
    """An MMS checkpoint: one model, a small adapter per language (``adapter.<iso639-3>.safetensors``)
    and a nested ``vocab.json`` (``{"por": {...}, "nld": {...}}``). Each language's recordings are
    decoded with its adapter and vocabulary, switched within the batch (grouped by language).
    Our codes map to the adapters' ISO 639-3 codes by :data:`modeling_mlpl.data.languages.ISO639_3`;
    `teacher_language` overrides it ("por" for every recording, or {"pt": "por", ...})."""

    kind = "mms"

    def __init__(self, model, processor, options: DecodeOptions | None = None, *, name_or_path: str,
                 revision: str | None = None, teacher_language: str | dict | None = None):  # fmt: skip
        super().__init__(model, processor, options, name_or_path=name_or_path, revision=revision)
        self.teacher_language = parse_teacher_language(teacher_language)
        vocab = getattr(self.tokenizer, "vocab", None)
        if not (isinstance(vocab, dict) and vocab and all(isinstance(v, dict) for v in vocab.values())):
            raise TeacherError(f"{name_or_path}: an MMS checkpoint needs a per-language vocab.json "
                               '({"por": {...}, ...}); this one has a single vocabulary')  # fmt: skip
        codes = set(vocab)
        if Path(name_or_path).is_dir():  # a local copy: only the adapters it holds
            codes &= {p.name[len("adapter."):-len(".safetensors")] for p in Path(name_or_path).glob("adapter.*.safetensors")} | \
                     {p.name[len("adapter."):-len(".bin")] for p in Path(name_or_path).glob("adapter.*.bin")}  # fmt: skip
        self.adapter_codes = sorted(codes)
        self.languages = [from_iso639_3(c) for c in self.adapter_codes]
        if isinstance(self.teacher_language, dict):
            self.languages += [lang for lang in self.teacher_language if lang not in self.languages]
        self.current_adapter: str | None = None

    @classmethod
    def from_pretrained(cls, name_or_path: str, revision: str | None = None, device=None,
                        options: DecodeOptions | None = None, teacher_language: str | dict | None = None,
                        **kind_options) -> "MMSTeacher":  # fmt: skip
        _refuse_options(cls.kind, kind_options)
        model, processor = cls._load(name_or_path, revision, device)
        return cls(model, processor, options, name_or_path=name_or_path, revision=revision,
                   teacher_language=teacher_language)  # fmt: skip

    def adapter_code(self, language: str) -> str:
        """The adapter (ISO 639-3 code) that labels our `language`."""
        if isinstance(self.teacher_language, str):
            return self.teacher_language
        if isinstance(self.teacher_language, dict) and language in self.teacher_language:
            return self.teacher_language[language]
        return iso639_3(language)

    def check_languages(self, languages: Sequence[str]) -> None:
        for lang in dict.fromkeys(languages):
            code = self.adapter_code(lang)
            if code not in self.adapter_codes:
                raise TeacherError(f"{self.name_or_path} has no adapter for language {lang!r} (ISO 639-3 {code!r}); "
                                   f"it has {', '.join(self.adapter_codes) or 'none'} (--teacher_language picks "
                                   "one)")  # fmt: skip

    def run_options(self) -> dict:
        return {**super().run_options(), "teacher_language": self.teacher_language}

    def use_adapter(self, code: str) -> None:
        """Load `code`'s adapter weights and vocabulary (a no-op when they are already in use)."""
        if code == self.current_adapter:
            return
        self.model.load_adapter(code, revision=self.revision)
        self.tokenizer.set_target_lang(code)
        self.current_adapter = code

    def label(self, waveforms: list[np.ndarray], languages: list[str]) -> list[dict]:
        self.check_languages(languages)
        results: list[dict | None] = [None] * len(waveforms)
        codes = [self.adapter_code(lang) for lang in languages]
        # The adapter in use first: a one-language run never reloads.
        for code in sorted(set(codes), key=lambda c: c != self.current_adapter):
            idx = [i for i, c in enumerate(codes) if c == code]
            self.use_adapter(code)
            for i, result in zip(idx, super().label([waveforms[i] for i in idx], [languages[i] for i in idx])):
                results[i] = {**result, "adapter": code}
        return results


def _refuse_options(kind: str, options: dict) -> None:
    # (max_loaded_models comes with models_per_language: naming the flag the user gave is enough)
    given = [name for name, value in options.items() if value not in (None, False) and name != "max_loaded_models"]
    if given:
        raise TeacherError(f"{', '.join(given)} cannot be used with a {kind} teacher")
