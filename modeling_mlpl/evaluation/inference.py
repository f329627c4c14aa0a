"""The one inference path: load a saved model, run it over utterances, greedy-decode them into rows.

Test-set evaluation (:mod:`modeling_mlpl.evaluation.test_sets`), the trainer's dev evaluation
(:mod:`modeling_mlpl.training.dev_eval`) and pseudo-labelling all load models with
:func:`load_model`; the two evaluations decode with :func:`decode_rows`, so a dev CER logged during
training and a test CER from ``evaluate.py`` come from the same features, forward pass and CTC text
rule (``processor.greedy_decode``). The forward pass is :class:`~modeling_mlpl.evaluation.long_form.LongFormDecoder`
(``window_s=None``: whole utterances, as the trainer decodes its short dev clips).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch

from .long_form import LongFormDecoder

__all__ = ["load_model", "DecodedChunk", "decode_rows", "ROW_KEYS"]

ROW_KEYS = ("id", "language", "reference")  # what every decoded row carries (+ "prediction")
# The processor's files in a model folder (MLPLProcessor.save_pretrained): any one of each group.
PROCESSOR_FILES = {
    "vocab.json (the tokenizer's characters)": ("vocab.json",),
    "the feature extractor's config": ("preprocessor_config.json", "processor_config.json"),
}
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def is_hub_id(name: str) -> bool:
    """Whether `name` reads as a Hub model id (``owner/name``): the one rule for "not a local folder, so
    try the Hub" (model loading, the labeling job, the recipe's teacher block)."""
    return bool(_HUB_ID.fullmatch(str(name)))


def load_model(model_dir: str | os.PathLike, device: torch.device | str | None = None, revision: str | None = None):
    """(MLPLForCTC in eval mode, MLPLProcessor) from a saved folder or a Hub id (``owner/name``).

    A local folder must hold ``config.json``; a name that is no local folder is tried as a Hub id
    (from the local Hub cache when offline). Either failure is a FileNotFoundError naming the path,
    so that scripts can print it as a one-line error; so is a local folder that lacks the
    processor's files (:data:`PROCESSOR_FILES`). ``device=None`` leaves the model on the CPU;
    ``revision`` picks a Hub branch, tag or commit.
    """
    from ..modeling_mlpl import MLPLForCTC
    from ..processing_mlpl import MLPLProcessor

    name = str(model_dir)
    local = Path(name).exists()
    usable = Path(name, "config.json").is_file() if local else is_hub_id(name)
    if not usable:
        raise FileNotFoundError(f"no model (config.json) in {model_dir}")
    if local:
        missing = [what for what, names in PROCESSOR_FILES.items() if not any(Path(name, n).is_file() for n in names)]
        if missing:
            raise FileNotFoundError(
                f"{model_dir} has a model but lacks {' and '.join(missing)}: copy the processor files from the "
                f"training output the model came from, or save its processor there (processor.save_pretrained)"
            )
    try:
        model = MLPLForCTC.from_pretrained(name, revision=revision).eval()
        processor = MLPLProcessor.from_pretrained(name, revision=revision)
    except OSError as err:
        if local:
            raise
        raise FileNotFoundError(f"no model (config.json) in {model_dir}, nor a Hub model of that name") from err
    if device is not None:
        model.to(device)
    return model, processor


@dataclass
class DecodedChunk:
    """One chunk of decoded utterances: the input ``rows`` with their (T_i, V) CTC log-probs and
    (B, L) LID log-probs. Greedy text is computed on first use (LM tuning only needs log-probs)."""

    rows: list[dict]
    log_probs: list[np.ndarray]
    lid_log_probs: np.ndarray
    processor: Any = field(repr=False)

    @cached_property
    def predictions(self) -> list[str]:
        """Greedy (best-path) text of each row, by the processor's CTC text rule."""
        return self.processor.greedy_decode(self.log_probs) if self.log_probs else []

    def records(self, keys: Sequence[str] = ROW_KEYS) -> list[dict]:
        """``{key: row[key] for key in keys} | {"prediction": greedy text}`` per row, in order."""
        return [{**{k: row[k] for k in keys}, "prediction": text} for row, text in zip(self.rows, self.predictions)]


@torch.no_grad()
def decode_rows(
    model,
    processor,
    items: Iterable[tuple[dict, np.ndarray]],
    window_s: float | None = 10.0,
    overlap_s: float = 2.0,
    max_batch_seconds: float = 60.0,
    chunk_size: int = 32,
    autocast_dtype: torch.dtype | None = None,
) -> Iterator[DecodedChunk]:
    """Decode (row, 16 kHz waveform) pairs, ``chunk_size`` at a time, in their order.

    ``items`` is consumed lazily, so callers can stream audio (and write each chunk's rows) as it
    is decoded. Within a chunk, windows are length-sorted into batches of at most
    ``max_batch_seconds`` padded audio (see :class:`~modeling_mlpl.evaluation.long_form.LongFormDecoder`).
    Each row should carry ``id``, ``language`` and ``reference`` for :meth:`DecodedChunk.records`.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    forward = LongFormDecoder(model, processor.feature_extractor, window_s=window_s, overlap_s=overlap_s,
                              max_batch_seconds=max_batch_seconds, autocast_dtype=autocast_dtype)  # fmt: skip
    chunk: list[tuple[dict, np.ndarray]] = []

    def flush() -> DecodedChunk:
        out = forward([wave for _, wave in chunk])
        return DecodedChunk([row for row, _ in chunk], out.log_probs, out.lid_log_probs, processor)

    for item in items:
        chunk.append(item)
        if len(chunk) >= chunk_size:
            yield flush()
            chunk = []
    if chunk:
        yield flush()
