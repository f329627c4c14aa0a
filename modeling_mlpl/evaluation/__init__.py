"""Inference and evaluation: loading a model for decoding (:mod:`.inference`), long recordings in
overlapping windows (:mod:`.long_form`), test-set evaluation with resumable predictions
(:mod:`.test_sets`) and the CER/WER definitions (:mod:`.metrics`, jiwer's, as `evaluate` computes them)."""

from .inference import decode_rows, load_model
from .long_form import LongFormDecoder
from .metrics import cer, per_language_metrics, wer
from .test_sets import evaluate_model, load_eval_sets

__all__ = ["LongFormDecoder", "cer", "decode_rows", "evaluate_model", "load_eval_sets", "load_model",
           "per_language_metrics", "wer"]
