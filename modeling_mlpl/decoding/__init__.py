"""Decoding CTC output: the greedy rule lives with the model (:mod:`modeling_mlpl.ctc_text`); here are the
n-gram LM beam search (:mod:`.lm_decoder`: pyctcdecode, or flashlight-text's compiled search in
:mod:`.flashlight`), building KenLM models (:mod:`.ngram_lm`) and tuning the LM weights alpha/beta on dev
(:mod:`.tuning`)."""

from .lm_decoder import LanguageLMConfig, LMDecoder, LMDecoderConfig, attach_lms, greedy_decode
from .ngram_lm import build_lm
from .tuning import tune_alpha_beta

__all__ = ["LanguageLMConfig", "LMDecoder", "LMDecoderConfig", "attach_lms", "build_lm", "greedy_decode",
           "tune_alpha_beta"]
