"""Whisper as a pseudo-labeling teacher (kind "whisper").

    teacher = WhisperTeacher("openai/whisper-large-v3", device="cuda")
    teacher.check_languages(["pt", "nl"])            # TeacherError before any work
    rows = teacher.label([wave_pt, wave_nl], ["pt", "nl"])

The language is forced (our codes map to Whisper's ISO 639-1 tokens: `fy-NL` -> `<|fy|>`), the task
is "transcribe", and many recordings are decoded at once: recordings are length-sorted and packed
into batches of `batch_size_s` padded seconds.

Long recordings (> 30 s) use transformers' sequential long-form generation (openai/whisper's
algorithm): each 30 s window is decoded with timestamps, and the next window starts at the last
*complete* segment's end timestamp, so no word is cut at a window edge and nothing is decoded
twice. The other way, fixed <= 30 s windows decoded as one batch and stitched at their overlaps
(the pipeline's `chunk_length_s`), cuts words at window edges and relies on a token-sequence
merge to undo it; it is faster on a batch-hungry GPU, but its text is not what Whisper writes for
the recording. transformers batches the sequential way over recordings too (an `attention_mask`
says where each one ends), so the batch stays wide. benchmarks/bench_whisper_longform.py measures
both (benchmarks/results/whisper_longform.md).

Every row carries Whisper's own label-free checks, computed as openai/whisper computes them, so
that the merge can filter hallucinations: `avg_logprob` (mean log-probability of the generated
tokens, end-of-text included), `compression_ratio` (text bytes / zlib-compressed text bytes: a
looping hallucination compresses well) and `no_speech_prob` (the probability of `<|nospeech|>`
right after `<|startoftranscript|>`). Nothing is skipped or re-decoded by these checks here
(no temperature fallback): the labels stay deterministic and the filtering is the merge's choice.
"""

from __future__ import annotations

import logging
import math
import os
import zlib
from typing import Any, ClassVar, Sequence

import numpy as np
import torch

from ...data.sampler import pack_batches
from .base import Teacher, TeacherError, identity

logger = logging.getLogger(__name__)

__all__ = ["WhisperTeacher", "whisper_language", "compression_ratio"]

WINDOW_S = 30.0  # Whisper's receptive field: one decoding window
LID_TOP_K = 3
# Codes whose Whisper token is not their ISO 639-1 primary subtag.
LANGUAGE_ALIASES = {"jv": "jw", "nb": "no", "iw": "he", "fil": "tl", "zh-hk": "yue"}


def whisper_language(code: str, known: Sequence[str]) -> str | None:
    """Whisper's language code among `known` (the checkpoint's codes) for one of ours, None if none:
    a known difference first (`jv` -> `jw`; `zh-HK` -> `yue` where the checkpoint has Cantonese),
    then the code itself, then its primary subtag (`fy-NL` -> `fy`, `pt-BR` -> `pt`), then Whisper's
    English language names (`portuguese` -> `pt`)."""
    from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE

    key = code.strip().lower().replace("_", "-")
    primary = key.split("-")[0]
    for candidate in (LANGUAGE_ALIASES.get(key), key, LANGUAGE_ALIASES.get(primary), primary,
                      TO_LANGUAGE_CODE.get(key)):  # fmt: skip
        if candidate and candidate in known:
            return candidate
    return None


def compression_ratio(text: str) -> float:
    """openai/whisper's gzip check: UTF-8 bytes over zlib-compressed bytes (0 for no text)."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


class WhisperTeacher(Teacher):
    """`WhisperForConditionalGeneration` + `WhisperProcessor` behind the teacher interface.

    model_or_path: a Hub id, a local folder, or a loaded model (then pass `processor`).
    num_beams: beam width (1: greedy, as openai/whisper at temperature 0 without `--beam_size`).
    batch_size_s: padded audio seconds per `generate` call (short recordings count 30 s each, as
    they are padded to one window). timestamps: decode with timestamp tokens (openai's
    `transcribe` default; gives segments); False prompts `<|notimestamps|>` (the pipeline's default
    for short audio). word_times: DTW word times from `generation_config.alignment_heads` where the
    checkpoint has them. dtype: e.g. torch.float16 on GPU. generate_kwargs: more `generate` options
    (e.g. `length_penalty`, a `logits_processor`); recorded in `run_options()`.
    """

    kind: ClassVar[str] = "whisper"

    def __init__(self, model_or_path: Any, revision: str | None = None, device: torch.device | str | None = None,
                 num_beams: int = 1, batch_size_s: float = 240.0, timestamps: bool = True, word_times: bool = True,
                 dtype: torch.dtype | None = None, processor=None, lid_top_k: int = LID_TOP_K,
                 generate_kwargs: dict | None = None):  # fmt: skip
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        if num_beams < 1:
            raise TeacherError(f"num_beams must be at least 1, not {num_beams}")
        if batch_size_s <= 0:
            raise TeacherError(f"batch_size_s must be positive, not {batch_size_s}")
        if isinstance(model_or_path, (str, os.PathLike)):
            name = os.fspath(model_or_path)
            model = WhisperForConditionalGeneration.from_pretrained(name, revision=revision, dtype=dtype)
            processor = processor or WhisperProcessor.from_pretrained(name, revision=revision)
        else:
            if processor is None:
                raise TeacherError("a loaded Whisper model needs its `processor`")
            model, name = model_or_path, getattr(model_or_path, "name_or_path", "") or "(in memory)"
        device = torch.device(device) if device is not None else torch.device("cpu")
        self.model = model.to(device).eval()
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.feature_extractor = processor.feature_extractor
        self.sampling_rate = int(self.feature_extractor.sampling_rate)
        self.num_beams = int(num_beams)
        self.batch_size_s = float(batch_size_s)
        self.timestamps = bool(timestamps)
        self.lid_top_k = int(lid_top_k)
        self.generate_kwargs = dict(generate_kwargs or {})
        generation = self.model.generation_config
        lang_to_id = getattr(generation, "lang_to_id", None)
        if not lang_to_id or not getattr(generation, "is_multilingual", True):
            raise TeacherError(f"{name} is an English-only Whisper (no language tokens): it cannot be forced to a "
                               "language; use a multilingual checkpoint such as openai/whisper-large-v3")  # fmt: skip
        # "<|pt|>" -> "pt", kept in the checkpoint's token order
        self.language_ids = {token.strip("<|>"): int(i) for token, i in lang_to_id.items()}
        self.word_times = bool(word_times) and bool(getattr(generation, "alignment_heads", None))
        self.no_speech_id = int(generation.no_timestamps_token_id) - 1  # <|nospeech|> (<|nocaptions|> in v1/v2)
        self.eot = int(generation.eos_token_id if not isinstance(generation.eos_token_id, list)
                       else generation.eos_token_id[0])  # fmt: skip
        self.languages = sorted(self.language_ids)  # Whisper's codes; check_languages also maps ours to them
        self.identity = identity(self.kind, name, revision)

    @classmethod
    def from_pretrained(cls, name_or_path: str, revision: str | None = None, device=None, options=None,
                        **kind_options: Any) -> "WhisperTeacher":  # fmt: skip
        """What `load_teacher` calls. From the labeler's decode options: `max_batch_seconds` is the
        padded audio per `generate` call (Whisper pads a short recording to 30 s: on a GPU give
        several hundred seconds), `autocast_dtype` "bf16"/"fp16" loads the weights in that dtype.
        `window_s`/`overlap_s` do not apply: Whisper decodes its own 30 s windows (module docstring).
        kind_options: num_beams, timestamps, word_times, lid_top_k."""
        allowed = {"num_beams", "timestamps", "word_times", "lid_top_k"}
        unknown = sorted(set(kind_options) - allowed)
        if unknown:
            raise TeacherError(f"a whisper teacher takes no {', '.join(unknown)} "
                               f"(it takes {', '.join(sorted(allowed))})")  # fmt: skip
        if options is not None:
            kind_options.setdefault("batch_size_s", options.max_batch_seconds)
            dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(options.autocast_dtype or "")
            if dtype is not None:
                kind_options["dtype"] = dtype
        return cls(name_or_path, revision=revision, device=device, **kind_options)

    @property
    def device(self) -> torch.device:
        return self.model.device

    # ---- languages -------------------------------------------------------------------------------

    def whisper_code(self, language: str) -> str:
        code = whisper_language(language, list(self.language_ids))
        if code is None:
            raise TeacherError(f"Whisper ({self.identity['name_or_path']}) has no language {language!r}; it knows "
                               f"{', '.join(sorted(self.language_ids))}")  # fmt: skip
        return code

    def check_languages(self, languages: Sequence[str]) -> None:
        missing = sorted({lang for lang in languages if whisper_language(lang, list(self.language_ids)) is None})
        if missing:
            raise TeacherError(f"Whisper ({self.identity['name_or_path']}) has no language for "
                               f"{', '.join(map(repr, missing))}; it knows "
                               f"{', '.join(sorted(self.language_ids))}")  # fmt: skip

    def _features(self, waveforms: Sequence[np.ndarray], long_form: bool):
        """Log-mel features: short recordings padded to one 30 s window (what Whisper was trained
        on), long ones to the batch's longest with an attention mask (where each one ends)."""
        kwargs = dict(truncation=False, padding="longest") if long_form else {}
        inputs = self.feature_extractor([np.asarray(w, dtype=np.float32) for w in waveforms],
                                        sampling_rate=self.sampling_rate, return_tensors="pt",
                                        return_attention_mask=True, **kwargs)  # fmt: skip
        features = inputs.input_features.to(self.device, self.model.dtype)
        return features, inputs.attention_mask.to(self.device)

    @torch.no_grad()
    def _first_token(self, features: torch.Tensor | None = None, encoder_outputs=None) -> torch.Tensor:
        """(B, V) probabilities of the token after `<|startoftranscript|>` for (B, 80, 3000) features
        (or their encoder outputs): both the language distribution and `<|nospeech|>` come from this
        one step (as in openai's `detect_language` and its no-speech probability)."""
        batch = (features if features is not None else encoder_outputs.last_hidden_state).shape[0]
        sot = torch.full((batch, 1), int(self.model.generation_config.decoder_start_token_id), dtype=torch.long,
                         device=self.device)  # fmt: skip
        logits = self.model(input_features=features, encoder_outputs=encoder_outputs, decoder_input_ids=sot,
                            use_cache=False).logits[:, 0]  # fmt: skip
        return logits.float().softmax(-1)

    def detect_languages(self, waveforms, top_k: int | None = None) -> list[list[tuple[str, float]]]:
        """Whisper's language identification on each recording's first 30 s: the top-k (code,
        probability) over the checkpoint's languages, best first (probabilities renormalised over
        the language tokens, as openai/whisper does)."""
        k = min(top_k or self.lid_top_k, len(self.language_ids))
        codes, ids = list(self.language_ids), torch.tensor(list(self.language_ids.values()))
        out = []
        for batch in self._batches([min(len(w) / self.sampling_rate, WINDOW_S) for w in waveforms]):
            features, _ = self._features([waveforms[i][:int(WINDOW_S * self.sampling_rate)] for i in batch], False)
            probs = self._first_token(features)[:, ids.to(self.device)].cpu()
            probs = probs / probs.sum(-1, keepdim=True)
            for i, row in zip(batch, probs):
                top = torch.topk(row, k)
                out.append((i, [(codes[j], round(float(p), 6)) for p, j in zip(top.values, top.indices)]))
        return [top for _, top in sorted(out, key=lambda pair: pair[0])]

    def _long_no_speech(self, features: torch.Tensor, attention_mask: torch.Tensor,
                        batch: int = 8) -> list[float]:  # fmt: skip
        """Per long recording, `<|nospeech|>`'s probability averaged over its fixed 30 s windows,
        weighted by their length. The windows are slices of the features `generate` decodes, padded
        with zeros as transformers pads its last window (openai slices its whole-recording mel too)."""
        frames = int(self.feature_extractor.nb_max_frames)  # 3000: one 30 s window
        pieces, owners = [], []
        for i, n in enumerate(attention_mask.sum(-1).tolist()):
            for start in range(0, max(int(n), 1), frames):
                piece = features[i, :, start:min(start + frames, int(n))]
                pieces.append(torch.nn.functional.pad(piece, (0, frames - piece.shape[-1])))
                owners.append((i, piece.shape[-1]))
        probs = torch.cat([self._first_token(torch.stack(pieces[k:k + batch]))[:, self.no_speech_id].cpu()
                           for k in range(0, len(pieces), batch)])  # fmt: skip
        total, weight = np.zeros(features.shape[0]), np.zeros(features.shape[0])
        for (i, n), p in zip(owners, probs.tolist()):
            total[i] += p * n
            weight[i] += n
        return (total / np.maximum(weight, 1)).tolist()

    # ---- labels ----------------------------------------------------------------------------------

    def _batches(self, durations: Sequence[float]) -> list[list[int]]:
        """Longest first, packed by padded seconds (a short recording is padded to 30 s)."""
        order = sorted(range(len(durations)), key=lambda i: -durations[i])
        costs = [max(d, WINDOW_S) for d in durations]
        return pack_batches(order, costs, self.batch_size_s, padded=True) if order else []

    def run_options(self) -> dict:
        return {"task": "transcribe", "num_beams": self.num_beams, "temperature": 0.0,
                "timestamps": self.timestamps, "word_times": self.word_times, "long_form": "sequential",
                "condition_on_prev_tokens": False,
                **{k: v if isinstance(v, (bool, int, float, str, type(None))) else type(v).__name__
                   for k, v in sorted(self.generate_kwargs.items())}}  # fmt: skip

    def label(self, waveforms: list[np.ndarray], languages: list[str]) -> list[dict]:
        if len(waveforms) != len(languages):
            raise ValueError(f"{len(waveforms)} waveforms but {len(languages)} languages")
        self.check_languages(languages)
        codes = [self.whisper_code(lang) for lang in languages]
        durations = [len(w) / self.sampling_rate for w in waveforms]
        rows: list[dict | None] = [None] * len(waveforms)
        for long in (False, True):  # short and long recordings take different generate paths
            group = [i for i, d in enumerate(durations) if (d > WINDOW_S) == long]
            for batch in self._batches([durations[i] for i in group]):
                idx = [group[j] for j in batch]
                for i, row in zip(idx, self._label_batch([waveforms[i] for i in idx], [codes[i] for i in idx],
                                                         [durations[i] for i in idx], long)):  # fmt: skip
                    rows[i] = row
        return rows  # type: ignore[return-value]

    @torch.no_grad()
    def _label_batch(self, waves: list[np.ndarray], codes: list[str], durations: list[float],
                     long: bool) -> list[dict]:  # fmt: skip
        features, attention_mask = self._features(waves, long_form=long)
        kwargs: dict[str, Any] = dict(
            language=codes, task="transcribe", return_timestamps=self.timestamps or long, return_segments=True,
            return_dict_in_generate=True, output_scores=True, num_beams=self.num_beams, do_sample=False,
        )  # fmt: skip
        if self.word_times:
            kwargs["return_token_timestamps"] = True
        kwargs.update(self.generate_kwargs)
        if long:
            out = self.model.generate(input_features=features, attention_mask=attention_mask, **kwargs)
            no_speech = self._long_no_speech(features, attention_mask)
        else:  # one window each: the encoder runs once for the no-speech step and the decoding
            encoded = self.model.model.encoder(features)
            no_speech = self._first_token(encoder_outputs=encoded)[:, self.no_speech_id].tolist()
            out = self.model.generate(encoder_outputs=encoded, attention_mask=attention_mask, **kwargs)
        texts = self.tokenizer.batch_decode(out["sequences"], skip_special_tokens=True)
        segments = out["segments"] if "segments" in out else self._whole_segments(out, durations)
        return [self._row(text, segs, code, duration, p)
                for text, segs, code, duration, p in zip(texts, segments, codes, durations, no_speech)]

    def _whole_segments(self, out, durations: list[float]) -> list[list[dict]]:
        """Without timestamps (one generate call, no `segments`): each recording is one segment,
        in the shape transformers gives segments (so one path reads both)."""
        sequences = out["sequences"].cpu()  # (B, prompt + generated), the prompt ending in <|notimestamps|>
        scores = [s.cpu() for s in out.get("scores") or ()]
        no_timestamps = int(self.model.generation_config.no_timestamps_token_id)
        segments = []
        for i, duration in enumerate(durations):
            begin = sequences[i].tolist().index(no_timestamps) + 1
            result = {"sequences": sequences[i], "scores": [s[i] for s in scores]}
            if "sequences_scores" in out:
                result["sequences_scores"] = out["sequences_scores"][i].cpu()
            segment = {"start": 0.0, "end": duration, "tokens": sequences[i, begin:], "result": result,
                       "idxs": (begin, sequences.shape[1])}
            if "token_timestamps" in out:
                segment["token_timestamps"] = out["token_timestamps"][i, begin:].cpu()
            segments.append([segment])
        return segments

    def _row(self, text: str, segments: list[dict], code: str, duration: float, no_speech_prob: float) -> dict:
        logprob_sum, token_count = 0.0, 0
        seen: set[int] = set()
        spans, words = [], []
        clipped = 0
        for segment in segments:
            result = segment["result"]  # one generate() call's output: shared by its window's segments
            if id(result) not in seen:
                seen.add(id(result))
                total, count = self._window_logprob(result, int(segment["idxs"][0]))  # a window's first
                # segment starts right after the decoder prompt
                logprob_sum, token_count = logprob_sum + total, token_count + count
            start = min(max(float(segment["start"]), 0.0), duration)
            end = min(max(float(segment["end"]), start), duration)
            clipped += float(segment["end"]) > duration + 0.02  # a timestamp past the audio: one step's leeway
            tokens = segment["tokens"].tolist()
            spans.append({"start": round(start, 2), "end": round(end, 2),
                          "text": self.tokenizer.decode(tokens, skip_special_tokens=True)})  # fmt: skip
            if self.word_times and "token_timestamps" in segment:
                words += self._words(tokens, segment["token_timestamps"].tolist(), start, duration, code)
        if clipped:  # kept (clipped to the recording); often a hallucinated tail, which the merge filters judge
            logger.debug("%d of %d segments end after the recording (%.2f s); their times are clipped",
                         clipped, len(segments), duration)  # fmt: skip
        avg_logprob = logprob_sum / token_count if token_count else float("-inf")
        return {
            "text": text,
            "token_times": [],
            "words": words,
            "confidence": round(math.exp(avg_logprob), 6) if token_count else 0.0,
            "num_frames": None,
            "decoder": "generate",
            "avg_logprob": round(avg_logprob, 6) if token_count else None,
            "compression_ratio": round(compression_ratio(text), 6),
            "no_speech_prob": round(float(no_speech_prob), 6),
            "segments": spans,
        }

    def _window_logprob(self, result: dict, prompt_len: int) -> tuple[float, int]:
        """(sum of log-probabilities, token count) of one window's generated tokens, end-of-text
        included, from the processed scores (openai's `avg_logprob` is their ratio)."""
        generated = result["sequences"][prompt_len:].tolist()
        if self.eot in generated:  # padding after the end-of-text token is no token of this window
            generated = generated[:generated.index(self.eot) + 1]
        if not generated:
            return 0.0, 0
        if "sequences_scores" in result:  # beam search: the chosen beam's length-normalised score
            penalty = float(getattr(self.model.generation_config, "length_penalty", None) or 1.0)
            return float(result["sequences_scores"]) * len(generated) ** penalty, len(generated)
        scores = list(result.get("scores") or ())[:len(generated)]
        if not scores:
            return 0.0, 0
        generated = generated[:len(scores)]
        logprobs = torch.stack(scores).float().log_softmax(-1)
        picked = logprobs[torch.arange(len(generated)), torch.tensor(generated)]
        return float(picked.sum()), len(generated)

    def _words(self, tokens: list[int], times: list[float], segment_start: float, duration: float,
               code: str) -> list[dict]:  # fmt: skip
        """Words with DTW times: token j spans (times[j-1], times[j]) as in transformers' pipeline;
        timestamp and special tokens are no part of a word."""
        from transformers.models.whisper.tokenization_whisper import LANGUAGES, _combine_tokens_into_words

        text_pos = [j for j, t in enumerate(tokens) if t < self.eot]
        if not text_pos:
            return []
        names, _, groups = _combine_tokens_into_words(self.tokenizer, [tokens[j] for j in text_pos],
                                                      LANGUAGES.get(code, "english"))  # fmt: skip
        words = []
        for word, group in zip(names, groups):
            first, last = text_pos[group[0]], text_pos[group[-1]]
            start = times[first - 1] if first > 0 else segment_start
            end = times[last]
            start = min(max(start, 0.0), duration)
            end = min(max(end, start), duration)
            words.append({"word": word.strip(), "start": round(start, 2), "end": round(end, 2)})
        return [w for w in words if w["word"]]
