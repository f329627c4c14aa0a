"""MLPLProcessor: feature extractor + tokenizer, and CTC decoding of logits (greedy or with an n-gram LM)."""

from __future__ import annotations

import os

import numpy as np
import torch
from transformers import ProcessorMixin

from .ctc_text import CTCVocab, greedy_texts

try:  # the LM decoder needs pyctcdecode + kenlm; greedy decoding works without them
    from modeling_mlpl.decoding.lm_decoder import LMDecoder  # absolute: not part of the remote-code set
except ImportError:  # pragma: no cover - exercised only where pyctcdecode is missing
    LMDecoder = None

IGNORE_LABEL = -100


class MLPLProcessor(ProcessorMixin):
    r"""Bundles [`MLPLFeatureExtractor`] and [`MLPLTokenizer`], plus an optional n-gram LM decoder.

    `processor(audio=..., text=..., sampling_rate=16000)` gives model inputs (+ `labels` padded with -100);
    `processor.batch_decode(model(**inputs))` CTC-decodes the output's logits over each utterance's
    valid frames: with the LM beam search when the processor folder has a `language_model/`
    (run_scripts/build_lm.py), else greedy. Token ids go to the tokenizer.
    """

    def __init__(self, feature_extractor, tokenizer):
        super().__init__(feature_extractor, tokenizer)
        self.lm_decoder = None  # an LMDecoder, loaded by from_pretrained when the folder has one

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        processor = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        if LMDecoder is not None and os.path.isdir(pretrained_model_name_or_path):
            if LMDecoder.has_lm(pretrained_model_name_or_path):
                processor.lm_decoder = LMDecoder.from_pretrained(pretrained_model_name_or_path)
        return processor

    def save_pretrained(self, save_directory, **kwargs):
        saved = super().save_pretrained(save_directory, **kwargs)
        if self.lm_decoder is not None:
            self.lm_decoder.save_pretrained(save_directory)
        return saved

    def __call__(self, audio=None, text=None, sampling_rate: int | None = None, return_tensors: str = "pt", **kwargs):
        if audio is None and text is None:
            raise ValueError("Give `audio`, `text` or both")
        inputs = {}
        if audio is not None:
            inputs = self.feature_extractor(audio, sampling_rate=sampling_rate, return_tensors=return_tensors, **kwargs)
        if text is not None:
            labels = self.encode_labels([text] if isinstance(text, str) else text)
            if audio is None:
                return {"labels": labels}
            inputs["labels"] = labels
        return inputs

    def encode_labels(self, texts: list[str]) -> torch.LongTensor:
        """(B, L) character ids padded with -100 (ignored by the CTC loss)."""
        ids = [torch.tensor(self.tokenizer(t, add_special_tokens=False)["input_ids"], dtype=torch.long) for t in texts]
        return torch.nn.utils.rnn.pad_sequence(ids, batch_first=True, padding_value=IGNORE_LABEL)

    @property
    def ctc_vocab(self) -> CTCVocab:
        """How each token id renders as text (the package's one CTC text rule, see ctc_text.py)."""
        if hasattr(self.tokenizer, "ctc_vocab"):
            return self.tokenizer.ctc_vocab
        return CTCVocab.from_tokenizer(self.tokenizer)

    def greedy_decode(self, logits, output_lengths=None) -> list[str]:
        """Best path: argmax per frame, merge repeats, drop blanks (the paper's PL decoder).

        (B, T, V) logits (``output_lengths``: valid frames) or one (T, V); text follows ctc_text's rule.
        """
        return greedy_texts(logits, self.ctc_vocab, output_lengths)

    def batch_decode(self, logits_or_ids, output_lengths=None, use_lm: bool | None = None, languages=None,
                     beam_width: int | None = None, num_workers: int | None = None, **kwargs) -> list[str]:  # fmt: skip
        """Float (B, T, V) logits are CTC-decoded; integer ids are passed to the tokenizer.

        A padded batch's short rows end in padding frames, which decode to extra characters, so give
        each row's valid frames: pass the model output itself (``batch_decode(model(**batch))`` reads
        its ``logits`` and ``output_lengths``) or ``output_lengths=outputs.output_lengths``. With
        neither (bare logits, no ``output_lengths``), every row is decoded over all its T frames: right
        for one utterance or a batch of equal lengths only.
        use_lm: None = the LM when this processor has one, True = require it, False = greedy.
        languages: one code per utterance (or one for all): which language's LM to use.
        """
        if _is_ctc_output(logits_or_ids):
            if output_lengths is None:
                output_lengths = logits_or_ids.output_lengths
            logits_or_ids = logits_or_ids.logits
        if not _is_float_array(logits_or_ids):
            return self.tokenizer.batch_decode(logits_or_ids, **kwargs)
        if use_lm and self.lm_decoder is None:
            raise ValueError("use_lm=True but this processor has no language_model/ (see run_scripts/build_lm.py)")
        if self.lm_decoder is not None and use_lm is not False:
            return self.lm_decoder.decode_batch(logits_or_ids, languages, lengths=output_lengths,
                                                beam_width=beam_width, num_workers=num_workers)  # fmt: skip
        return self.greedy_decode(logits_or_ids, output_lengths)

    def decode(self, logits_or_ids, output_lengths=None, **kwargs) -> str:
        """One utterance: (T, V) logits (``output_lengths``: its valid frames, an int) or token ids."""
        if _is_float_array(logits_or_ids):
            lengths = None if output_lengths is None else [int(output_lengths)]
            return self.batch_decode(logits_or_ids[None], output_lengths=lengths, **kwargs)[0]
        return self.tokenizer.decode(logits_or_ids, **kwargs)

    @property
    def model_input_names(self):
        return self.feature_extractor.model_input_names + ["labels"]


def _is_ctc_output(x) -> bool:
    """A model output (MLPLCTCOutput or alike) rather than a logits array."""
    return hasattr(x, "logits") and hasattr(x, "output_lengths") and not _is_float_array(x)


def _is_float_array(x) -> bool:
    if isinstance(x, torch.Tensor):
        return x.is_floating_point()
    return isinstance(x, np.ndarray) and np.issubdtype(x.dtype, np.floating)


__all__ = ["MLPLProcessor", "IGNORE_LABEL"]
