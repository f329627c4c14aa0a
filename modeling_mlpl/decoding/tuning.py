"""Search the LM fusion weights (alpha, beta) on a dev set, from precomputed CTC logits.

Decoding with ``log p(y|x) + alpha * log p_LM(y) + beta * |y|`` only helps with alpha/beta
suited to the acoustic model and LM at hand (the paper tunes them on dev). The acoustic model
runs once: its logits are saved (:func:`save_logits`) and every (alpha, beta) point only
re-runs the beam search, which is cheap. Points are spread over a fork pool (the LM is loaded
once, before forking); ``set_params`` changes the weights without reloading the LM.

Search: a fixed grid, or coarse-to-fine (``refine=N``): the grid is the coarse pass, then N
rounds each try the 8 neighbours of the best point so far at half the previous step (half the
grid's spacing first), so a 4 x 4 grid + 2 rounds costs <= 32 points and lands within a quarter
of the grid spacing of the best point it can see.

The decoder's current weights are always tried first, and ties keep them, so tuning never
makes the dev score worse than what the decoder had before.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .lm_decoder import LMDecoder
from ..evaluation.metrics import cer, wer

__all__ = [
    "TuneResult",
    "alpha_beta_grid",
    "random_alpha_beta",
    "coarse_to_fine",
    "default_workers",
    "tune_alpha_beta",
    "save_logits",
    "load_logits",
    "load_logits_meta",
]

logger = logging.getLogger(__name__)
TUNING_FILE = "tuning.json"  # tune_lm.py's trials and best point per language, in its --output_dir

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


Point = tuple[float, float]


def default_workers() -> int:
    """Processes for grid points: the cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _spacing(values: Sequence[float]) -> float:
    distinct = sorted(set(values))
    gaps = [b - a for a, b in zip(distinct, distinct[1:])]
    return min(gaps) if gaps else 0.0


def _half_steps(grid: Sequence[Point]) -> tuple[float, float]:
    da, db = _spacing([p[0] for p in grid]) / 2, _spacing([p[1] for p in grid]) / 2
    return da or db or 0.25, db or da or 0.25


def coarse_to_fine(
    evaluate: Callable[[list[Point]], list[float]],
    grid: Sequence[Point],
    rounds: int = 2,
    steps: tuple[float, float] | None = None,
    min_alpha: float = 0.0,
) -> list[tuple[Point, float]]:
    """Score ``grid`` (one ``evaluate`` call: a batch, so it can run in parallel), then ``rounds``
    times the untried neighbours (best +- step per axis) of the best point, halving the steps.

    ``steps``: the first round's (alpha, beta) steps; default half the grid's spacing per axis (an
    axis with a single value takes the other's step, 0.25 when both are single). Refined points
    with alpha below ``min_alpha`` are skipped. Returns every (point, score) in evaluation order;
    the best is the lowest score, ties to the earliest.
    """
    tried: list[tuple[Point, float]] = []
    seen: set[Point] = set()

    def run(points: Sequence[Point], lowest: float = -math.inf) -> None:
        fresh = []
        for a, b in points:
            key = (round(float(a), 6), round(float(b), 6))
            if key not in seen and key[0] >= lowest:
                seen.add(key)
                fresh.append(key)
        if fresh:
            tried.extend(zip(fresh, evaluate(fresh)))

    run(grid)
    da, db = steps if steps is not None else _half_steps(grid)
    for _ in range(rounds):
        (a, b), _score = min(tried, key=lambda item: item[1])  # min keeps the earliest of equal scores
        run([(a + i * da, b + j * db) for i in (-1, 0, 1) for j in (-1, 0, 1)], min_alpha)
        da, db = da / 2, db / 2
    return tried


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
    refine: int = 0,
) -> TuneResult:
    """Try every (alpha, beta) in ``grid`` for ``language``'s LM; keep the best on ``metric``.

    ``logits_list``: one (T_i, V) array per dev utterance; ``references``: their transcripts.
    ``refine``: coarse-to-fine rounds after the grid (0: the grid only). ``num_workers > 1``:
    points of each round are scored in that many forked processes (same scores as serial).
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
    grid_points = list(grid or alpha_beta_grid([0.25, 0.5, 1.0, 1.5], [0.0, 1.0, 2.0]))
    points = [initial] + [p for p in grid_points if p != initial]
    score_fn = _METRICS[metric]
    logits_list = list(logits_list)
    decoder._decoder(language)  # load the LM once, before forking

    _STATE.update(decoder=decoder, language=language, logits=logits_list,
                  references=list(references), metric=metric, beam_width=beam_width)  # fmt: skip
    pool = None
    bar = None
    try:
        if num_workers and num_workers > 1:
            pool = multiprocessing.get_context("fork").Pool(num_workers)
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(points), desc=f"alpha/beta {language}")

        def evaluate(batch: list[Point]) -> list[float]:
            parallel = pool is not None and len(batch) > 1
            scores = pool.map(_score_point, batch) if parallel else [_score_point(p) for p in batch]
            if bar is not None:
                bar.total = max(bar.total, bar.n + len(batch))
                bar.update(len(batch))
            return scores

        steps = _half_steps([p for p in grid_points if p != initial] or points)  # the initial point is off-grid
        tried = coarse_to_fine(evaluate, points, rounds=refine, steps=steps)
        points = [p for p, _ in tried]
        scores = [score for _, score in tried]
        greedy = score_fn(references, decoder.greedy_decode(logits_list))
        no_lm = score_fn(
            references, decoder.decode_batch(logits_list, language, beam_width=beam_width, use_lm=False)
        )
    finally:
        if pool is not None:
            pool.close()
            pool.join()
        if bar is not None:
            bar.close()
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
