"""The mlpl teacher: an MLPLForCTC checkpoint (the paper's), with its LID head and per-language models.

What it adds over a plain CTC teacher: language identification comes free with the CTC forward pass
(the LID head reads the same encoder states), so :meth:`MLPLTeacher.detect_languages` keeps that pass
and :meth:`MLPLTeacher.label` of the same waveforms reuses it; `models_per_language` re-decodes each
recording with its language's fine-tuned model; an `LMDecoder` gives LM beam-search text (force-aligned
for its times); `texts=` force-aligns known transcripts (the synthetic corpus's oracle rows).
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from typing import Sequence

import numpy as np
import torch

from ...evaluation.inference import load_model
from ...evaluation.long_form import LongFormDecoder
from ..alignment import Label, label_from_log_probs
from .base import DecodeOptions, Teacher, TeacherError, identity

logger = logging.getLogger(__name__)

__all__ = ["MLPLTeacher"]

DTYPES = {None: None, "fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class _Decoder:
    """A model with its windowed decoder and vocabulary tables."""

    def __init__(self, name: str, model, processor, options: DecodeOptions):
        self.name = name
        self.model = model
        self.processor = processor
        self.long_form = LongFormDecoder(
            model, processor.feature_extractor, window_s=options.window_s, overlap_s=options.overlap_s,
            max_batch_seconds=options.max_batch_seconds, autocast_dtype=DTYPES[options.autocast_dtype],
        )  # fmt: skip
        tokenizer = processor.tokenizer
        self.token2id = dict(tokenizer.get_vocab())
        self.id2token = {i: t for t, i in self.token2id.items()}
        for i in range(model.config.vocab_size):  # ids the model has but the vocabulary lacks
            self.id2token.setdefault(i, tokenizer.unk_token)
        self.blank = int(model.config.pad_token_id or 0)
        self.frame_seconds = model.config.inputs_to_logits_ratio / processor.feature_extractor.sampling_rate


class MLPLTeacher(Teacher):
    kind = "mlpl"
    supports_forced_alignment = True
    free_language_identification = True

    def __init__(self, model, processor, options: DecodeOptions | None = None, *, lm_decoder=None,
                 beam_width: int | None = None, models_per_language: str | None = None, max_loaded_models: int = 4,
                 name: str = "base", name_or_path: str | None = None, revision: str | None = None):  # fmt: skip
        """`name` is what rows record as `model` (the base model's; routed ones record their path)."""
        self.options = options or DecodeOptions()
        self.base = _Decoder(name, model, processor, self.options)
        self.languages = list(model.config.languages)
        self.sampling_rate = self.base.long_form.sampling_rate
        self.lm_decoder = lm_decoder
        self.beam_width = beam_width
        self.models_per_language = models_per_language
        self.max_loaded_models = max_loaded_models
        if models_per_language and "{lang}" not in models_per_language:
            raise TeacherError("models_per_language must contain '{lang}', e.g. exp/finetune-{lang}")
        self.identity = (identity(self.kind, name_or_path, revision) if name_or_path else
                         {"kind": self.kind, "name_or_path": name, "revision": None, "weights_hash": None})  # fmt: skip
        self._routed: OrderedDict[str, _Decoder] = OrderedDict()
        self._missing_models: set[str] = set()
        self._forward: tuple[tuple[int, ...], object] | None = None  # (waveform ids, base output) of detect_languages

    @classmethod
    def from_pretrained(cls, name_or_path: str, revision: str | None = None, device=None,
                        options: DecodeOptions | None = None, **kwargs) -> "MLPLTeacher":  # fmt: skip
        model, processor = load_model(name_or_path, device, revision=revision)
        return cls(model, processor, options, name=str(name_or_path), name_or_path=name_or_path, revision=revision,
                   **kwargs)  # fmt: skip

    @property
    def padding_stats(self):
        return self.base.long_form.stats

    @property
    def device(self) -> torch.device:
        return self.base.long_form.device

    def run_options(self) -> dict:
        return {"window_s": self.options.window_s, "overlap_s": self.options.overlap_s,
                "models_per_language": self.models_per_language,
                "lm": None if self.lm_decoder is None else "beam search", "beam_width": self.beam_width}  # fmt: skip

    def _base_forward(self, waveforms: Sequence[np.ndarray]):
        """The base model's output on `waveforms`, taken from detect_languages when it ran on these."""
        key = tuple(id(w) for w in waveforms)
        cached, self._forward = self._forward, None
        if cached is not None and cached[0] == key:
            return cached[1]
        return self.base.long_form(waveforms)

    def detect_languages(self, waveforms: Sequence[np.ndarray]) -> list[list[tuple[str, float]]]:
        """Every language of the LID head, most likely first (ties: the model's language order)."""
        out = self.base.long_form(waveforms)
        self._forward = (tuple(id(w) for w in waveforms), out)
        ranked = []
        for lid in out.lid_log_probs:
            order = np.argsort(-lid, kind="stable")
            ranked.append([(self.languages[i], float(np.exp(lid[i]))) for i in order])
        return ranked

    def _decoder_for(self, language: str) -> _Decoder:
        """The language's fine-tuned model when `models_per_language` has one, else the base model."""
        template = self.models_per_language
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
        if len(self._routed) >= self.max_loaded_models:
            self._routed.popitem(last=False)  # least recently used
        model, processor = load_model(path, self.base.long_form.device)
        self._routed[language] = _Decoder(path, model, processor, self.options)
        return self._routed[language]

    def label(self, waveforms: list[np.ndarray], languages: list[str], texts: list[str] | None = None) -> list[dict]:
        """`texts`: known transcripts to force-align instead of decoding (one per waveform)."""
        base_out = self._base_forward(waveforms)
        # Route to per-language models; the base output is reused where no other model applies.
        decoders = [self._decoder_for(lang) for lang in languages]
        log_probs: list[np.ndarray] = list(base_out.log_probs)
        for decoder in {id(d): d for d in decoders if d is not self.base}.values():
            idx = [i for i, d in enumerate(decoders) if d is decoder]
            out = decoder.long_form([waveforms[i] for i in idx])
            for i, lp in zip(idx, out.log_probs):
                log_probs[i] = lp

        method = "greedy"
        if texts is not None:
            method = "transcript"
        elif self.lm_decoder is not None:
            texts, method = self.lm_decoder.decode_batch(log_probs, languages, beam_width=self.beam_width), "lm"
        texts = texts if texts is not None else [None] * len(waveforms)

        results = []
        for i, decoder in enumerate(decoders):
            try:
                label, scores = label_from_log_probs(log_probs[i], decoder.id2token, decoder.token2id,
                                                     decoder.frame_seconds, text=texts[i], blank=decoder.blank)
                item_method = method
            except ValueError as err:
                label, scores = label_from_log_probs(log_probs[i], decoder.id2token, decoder.token2id,
                                                     decoder.frame_seconds, blank=decoder.blank)
                if method == "transcript":  # a known text is kept, without times (never cropped)
                    logger.warning("recording %d of the batch: %s; transcript kept without token times", i, err)
                    label, item_method = Label(text=texts[i], token_times=[], token_ids=[]), "transcript_unaligned"
                else:  # LM text the acoustic frames cannot hold: keep the greedy label
                    logger.warning("recording %d of the batch: %s; using the greedy label", i, err)
                    item_method = "greedy_fallback"
            results.append({
                "text": label.text,
                "token_times": label.token_times,
                "words": label.words,
                "confidence": round(scores["confidence"], 6),
                "path_score": round(scores["path_score"], 6),
                "ctc_score": round(scores["ctc_score"], 6),
                "num_frames": scores["num_frames"],
                "model": decoder.name,
                "decoder": item_method,
            })  # fmt: skip
        return results
