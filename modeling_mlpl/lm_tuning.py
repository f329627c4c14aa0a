"""Search the LM fusion weights (alpha, beta) on a dev set, from precomputed CTC logits.

Decoding with ``log p(y|x) + alpha * log p_LM(y) + beta * |y|`` only helps with alpha/beta
suited to the acoustic model and LM at hand (the paper tunes them on dev). The acoustic model
runs once: its logits are saved (:func:`save_logits`) and every (alpha, beta) point only
re-runs the beam search, which is cheap. Points are spread over a fork pool; pyctcdecode's
``reset_params`` changes the weights without reloading the LM.

The decoder's current weights are always tried first, and ties keep them, so tuning never
makes the dev score worse than what the decoder had before.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .decoding import LMDecoder
from .metrics import cer, wer

__all__ = [
    "TuneResult",
    "alpha_beta_grid",
    "random_alpha_beta",
    "tune_alpha_beta",
    "save_logits",
    "load_logits",
    "load_logits_meta",
]

logger = logging.getLogger(__name__)

_METRICS = {"wer": wer, "cer": cer}
# Set in the parent before forking so that workers read logits without pickling them per task.
_STATE: dict[str, Any] = {}


@dataclass
class TuneResult:
    """Outcome of one language's search; ``trials`` holds every point tried, in order."""

    language: str | None
    metric: str
    alpha: float
    beta: float
    score: float
    initial_score: float  # with the decoder's weights before tuning
    no_lm_score: float  # beam search without LM, same beam width
    greedy_score: float
    trials: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def alpha_beta_grid(alphas: Sequence[float], betas: Sequence[float]) -> list[tuple[float, float]]:
    """Full grid, e.g. ``alpha_beta_grid([0.25, 0.5, 1.0], [0.0, 1.0, 2.0])``."""
    return [(float(a), float(b)) for a in alphas for b in betas]


def random_alpha_beta(
    n: int,
    alpha_range: tuple[float, float] = (0.0, 2.0),
    beta_range: tuple[float, float] = (-1.0, 3.0),
    seed: int = 0,
) -> list[tuple[float, float]]:
    """``n`` uniform random points (random search covers 2-D spaces better than coarse grids)."""
    rng = random.Random(seed)
    return [
        (round(rng.uniform(*alpha_range), 3), round(rng.uniform(*beta_range), 3)) for _ in range(n)
    ]


def _score_point(point: tuple[float, float]) -> float:
    decoder: LMDecoder = _STATE["decoder"]
    language = _STATE["language"]
    decoder.set_params(language, alpha=point[0], beta=point[1])
    predictions = decoder.decode_batch(
        _STATE["logits"], language, beam_width=_STATE["beam_width"], num_workers=0
    )
    return _METRICS[_STATE["metric"]](_STATE["references"], predictions)


def tune_alpha_beta(
    decoder: LMDecoder,
    logits_list: Sequence[np.ndarray],
    references: Sequence[str],
    language: str | None = None,
    grid: Sequence[tuple[float, float]] | None = None,
    metric: str = "wer",
    beam_width: int | None = None,
    num_workers: int = 0,
    apply: bool = True,
    progress: bool = False,
) -> TuneResult:
    """Try every (alpha, beta) in ``grid`` for ``language``'s LM; keep the best on ``metric``.

    ``logits_list``: one (T_i, V) array per dev utterance; ``references``: their transcripts.
    ``apply``: set the winning weights on ``decoder`` (save it afterwards to persist them).
    """
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {sorted(_METRICS)}, got {metric!r}")
    if len(logits_list) != len(references) or not references:
        raise ValueError(f"need matching, non-empty logits and references ({len(logits_list)} vs {len(references)})")
    language = language if language is not None else decoder.config.default_language
    if language not in decoder.config.languages:
        raise ValueError(f"decoder has no LM for language {language!r} (has {decoder.languages})")
    cfg = decoder.config.languages[language]
    initial = (cfg.alpha, cfg.beta)
    points = [initial] + [p for p in (grid or alpha_beta_grid([0.25, 0.5, 1.0, 1.5], [0.0, 1.0, 2.0])) if p != initial]
    score_fn = _METRICS[metric]
    logits_list = list(logits_list)
    decoder._decoder(language)  # load the LM once, before forking

    _STATE.update(decoder=decoder, language=language, logits=logits_list,
                  references=list(references), metric=metric, beam_width=beam_width)  # fmt: skip
    try:
        iterator: Any
        if num_workers and num_workers > 1:
            pool = multiprocessing.get_context("fork").Pool(min(num_workers, len(points)))
            iterator = pool.imap(_score_point, points)
        else:
            pool = None
            iterator = map(_score_point, points)
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(iterator, total=len(points), desc=f"alpha/beta {language}")
        scores = list(iterator)
        if pool is not None:
            pool.close()
            pool.join()
        greedy = score_fn(references, decoder.greedy_decode(logits_list))
        no_lm = score_fn(
            references, decoder.decode_batch(logits_list, language, beam_width=beam_width, use_lm=False)
        )
    finally:
        _STATE.clear()

    best = min(range(len(points)), key=lambda i: (scores[i], i))  # ties: earliest, i.e. initial
    alpha, beta = points[best]
    decoder.set_params(language, alpha=alpha if apply else initial[0], beta=beta if apply else initial[1])
    trials = [{"alpha": a, "beta": b, metric: s} for (a, b), s in zip(points, scores)]
    result = TuneResult(language, metric, alpha, beta, scores[best], scores[0], no_lm, greedy, trials)
    logger.info(
        "%s: %s greedy %.4f, beam no-LM %.4f, LM initial (%.2f, %.2f) %.4f -> best (%.2f, %.2f) %.4f",
        language, metric, greedy, no_lm, *initial, scores[0], alpha, beta, scores[best],
    )  # fmt: skip
    return result


def save_logits(
    path: str | os.PathLike,
    logits_list: Sequence[np.ndarray],
    references: Sequence[str],
    languages: Sequence[str | None] | None = None,
    ids: Sequence[str] | None = None,
) -> Path:
    """Store dev-set logits for tuning: ``.npz`` of float16 (T_i, V) arrays + JSON metadata.

    float16 halves the size; beam search is insensitive to that precision after log-softmax.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(logits_list)
    meta = {
        "references": list(references),
        "languages": list(languages) if languages is not None else [None] * n,
        "ids": list(ids) if ids is not None else [str(i) for i in range(n)],
    }
    if any(len(v) != n for v in meta.values()):
        raise ValueError("logits, references, languages and ids must have the same length")
    arrays = {f"u{i}": np.asarray(x, dtype=np.float16) for i, x in enumerate(logits_list)}
    np.savez_compressed(path, meta=np.array(json.dumps(meta, ensure_ascii=False)), **arrays)
    return path


def load_logits_meta(path: str | os.PathLike) -> dict[str, list]:
    """The metadata of a :func:`save_logits` file (references, languages, ids), without its arrays."""
    with np.load(path) as data:
        return json.loads(str(data["meta"]))


def load_logits(path: str | os.PathLike) -> tuple[list[np.ndarray], list[str], list[str | None], list[str]]:
    """Inverse of :func:`save_logits`: (logits_list, references, languages, ids)."""
    meta = load_logits_meta(path)
    with np.load(path) as data:
        logits = [data[f"u{i}"].astype(np.float32) for i in range(len(meta["references"]))]
    return logits, meta["references"], meta["languages"], meta["ids"]
