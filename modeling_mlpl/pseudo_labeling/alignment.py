"""From CTC log-probabilities to a pseudo-label: text, per-character and per-word times, confidence.

The training helper crops 10 s windows out of long pseudo-labelled recordings and needs to know
which characters fall inside a crop, so every character of the label carries the time (seconds
from the recording's offset) of the first frame the CTC alignment gives it. Greedy labels use the
best path itself; LM-decoded labels (whose text is not a best path) are force-aligned (Viterbi).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..ctc_text import CTCVocab, Span, best_path, render_spans
from ..tokenization_mlpl import transcript_characters

__all__ = [
    "Span",
    "Label",
    "greedy_spans",
    "forced_align",
    "spans_to_label",
    "ctc_log_likelihood",
    "ctc_scores",
    "carry_times",
    "words_from_characters",
    "label_from_log_probs",
]


@dataclass
class Label:
    """A pseudo-label. `token_times[i]` is the start (s) of character i of `text` (spaces included,
    matching the tokenizer's `|` targets); `words` hold start/end seconds per word."""

    text: str
    token_times: list[float]
    token_ids: list[int]
    words: list[dict] = field(default_factory=list)


def greedy_spans(log_probs: np.ndarray, blank: int = 0) -> list[Span]:
    """Best path of (T, V) log-probs: argmax per frame, repeats merged, blanks dropped."""
    return best_path(log_probs, blank)


# Cells (frames x alignment states) up to which the alignment keeps whole-recording tables; beyond it,
# memory must not grow with frames x label length (an hour is ~120k frames x ~100k states).
DENSE_CELLS = 1 << 24


def _ctc_states(tokens: Sequence[int], blank: int) -> tuple[np.ndarray, np.ndarray]:
    """The CTC state sequence blank, t1, blank, t2, ..., blank and where a skip from s-2 is allowed
    (into a token that differs from the token two states back)."""
    states = [blank]
    for tok in tokens:
        states += [int(tok), blank]
    states_arr = np.asarray(states, dtype=np.int64)
    skip = np.zeros(len(states), dtype=bool)
    skip[2:] = (states_arr[2:] != blank) & (states_arr[2:] != states_arr[:-2])
    return states_arr, skip


def _viterbi_step(score: np.ndarray, skip: np.ndarray, emit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One frame of the Viterbi recursion: (new scores, back-pointers 0 stay / 1 from s-1 / 2 from s-2)."""
    stay = score
    step = np.concatenate([[-np.inf], score[:-1]])
    jump = np.where(skip, np.concatenate([[-np.inf, -np.inf], score[:-2]]), -np.inf)
    choice = np.stack([stay, step, jump])  # (3, S)
    back = choice.argmax(0).astype(np.int8)
    return choice.max(0) + emit, back


def forced_align(log_probs: np.ndarray, tokens: Sequence[int], blank: int = 0,
                 max_cells: int | None = None) -> list[Span]:  # fmt: skip
    """Viterbi CTC alignment of `tokens` to (T, V) log-probs -> one span per token.

    Memory is bounded for long recordings: the forward pass keeps the (S,) score vector of every
    K-th frame only, and the backtrace recomputes one K-frame segment's int8 back-pointers at a time
    (K x S bytes), last segment first. K = T while T x S <= ``max_cells`` (None: ``DENSE_CELLS``;
    one segment: the whole
    table, as before); beyond that K ~ sqrt(8 T), which balances the checkpoints' and the segment's
    memory. The recursion is the same either way, so the alignment is too.
    Raises ValueError when the tokens cannot fit (T < len(tokens) + repeated neighbours).
    """
    log_probs = np.asarray(log_probs)
    T = log_probs.shape[0]
    if not tokens:
        return []
    states, skip = _ctc_states(tokens, blank)
    S = len(states)
    dense = T * S <= (DENSE_CELLS if max_cells is None else max_cells)
    K = T if dense else max(1, int(math.sqrt(8 * T)))

    def emit(t: int) -> np.ndarray:  # (S,) float64, one frame at a time (no (T, S) copy)
        return log_probs[t, states].astype(np.float64)

    score = np.full(S, -np.inf)
    score[:2] = emit(0)[:2]
    checkpoints = {0: score}  # frame -> scores after that frame
    for t in range(1, T):
        score, _ = _viterbi_step(score, skip, emit(t))
        if t % K == 0:
            checkpoints[t] = score
    end = S - 1 if S == 1 or score[S - 1] >= score[S - 2] else S - 2
    if not np.isfinite(score[end]):
        raise ValueError(f"{len(tokens)} tokens cannot be aligned to {T} frames")
    path = np.empty(T, dtype=np.int64)
    path[T - 1] = s = end
    for first in range(((T - 2) // K) * K, -1, -K):  # checkpoint frames, last first
        last = min(first + K, T - 1)
        back = np.zeros((last - first, S), dtype=np.int8)  # frames first+1 .. last
        score = checkpoints[first]
        for t in range(first + 1, last + 1):
            score, back[t - first - 1] = _viterbi_step(score, skip, emit(t))
        for t in range(last, first, -1):
            s -= int(back[t - first - 1, s])
            path[t - 1] = s
    spans: list[Span] = []
    for t, s in enumerate(path.tolist()):
        if s % 2 == 1:  # a token state
            index = s // 2
            if len(spans) == index:
                spans.append(Span(int(states[s]), t, t))
            else:
                spans[index] = Span(int(states[s]), spans[index].first, t)
    return spans


def spans_to_label(spans: Sequence[Span], id2token: Mapping[int, str], frame_seconds: float,
                   word_delimiter: str = "|", blank: int = 0) -> Label:  # fmt: skip
    """Characters of the emitted tokens -> text with single spaces and one start time per character.

    The text follows the package's CTC text rule (ctc_text.py): special tokens (`<unk>`, ...) render
    as nothing, word-delimiter runs collapse to one space (none at the ends), a combining mark that
    NFC merges into the previous character shares that character's time. So
    `len(label.token_times) == len(transcript_characters(label.text))` always holds.
    """
    pieces = render_spans(spans, CTCVocab.from_id2token(id2token, blank, word_delimiter))
    chars = [p.text for p in pieces]
    firsts = [p.first for p in pieces]
    lasts = [p.last for p in pieces]
    ids = [p.token for p in pieces]
    text = "".join(chars)
    times = [round(f * frame_seconds, 3) for f in firsts]
    if len(times) != len(transcript_characters(text)):  # a multi-character token: keep the contract
        times = _spread(text, firsts, chars, frame_seconds)
    words = []
    start = 0
    for i in range(len(chars) + 1):
        if i == len(chars) or chars[i] == " ":
            if i > start:
                words.append({
                    "word": "".join(chars[start:i]),
                    "start": round(firsts[start] * frame_seconds, 3),
                    "end": round((lasts[i - 1] + 1) * frame_seconds, 3),
                })  # fmt: skip
            start = i + 1
    return Label(text=text, token_times=times, token_ids=ids, words=words)


def _spread(text: str, firsts: list[int], pieces: list[str], frame_seconds: float) -> list[float]:
    """One time per target character when a token spells several characters: they share its time."""
    times = []
    for piece, first in zip(pieces, firsts):
        times += [round(first * frame_seconds, 3)] * len(transcript_characters(piece) or ["|"])
    return times[: len(transcript_characters(text))]


def ctc_log_likelihood(log_probs: np.ndarray, tokens: Sequence[int], blank: int = 0,
                       max_cells: int | None = None) -> float:  # fmt: skip
    """log p(tokens | x) summed over all CTC alignments (-inf if they cannot fit).

    Up to ``max_cells`` (None: ``DENSE_CELLS``) frames x states: torch's CTC loss (it keeps the whole (T, S) forward table
    for its backward pass). Beyond: the same forward recursion in float64 keeping one (S,) vector,
    so an hour-long recording costs memory linear in its label, not frames x label.
    """
    if log_probs.shape[0] * (2 * len(tokens) + 1) > (DENSE_CELLS if max_cells is None else max_cells):
        return _streaming_log_likelihood(log_probs, tokens, blank)
    lp = torch.from_numpy(np.ascontiguousarray(log_probs, dtype=np.float32))[:, None, :]  # (T, 1, V)
    targets = torch.tensor([list(tokens)], dtype=torch.long) if tokens else torch.zeros((1, 0), dtype=torch.long)
    loss = F.ctc_loss(lp, targets, torch.tensor([lp.shape[0]]), torch.tensor([len(tokens)]), blank=blank,
                      reduction="sum", zero_infinity=False)  # fmt: skip
    return -float(loss)


def _streaming_log_likelihood(log_probs: np.ndarray, tokens: Sequence[int], blank: int) -> float:
    """The CTC forward (alpha) recursion with O(S) memory: log-sum-exp where Viterbi takes the max."""
    states, skip = _ctc_states(tokens, blank)
    S = len(states)
    alpha = np.full(S, -np.inf)
    alpha[:2] = np.asarray(log_probs[0, states[:2]], dtype=np.float64)
    no_skip = np.where(skip, 0.0, -np.inf)
    with np.errstate(invalid="ignore"):  # -inf - -inf where no path reaches a state yet
        for t in range(1, log_probs.shape[0]):
            step = np.concatenate([[-np.inf], alpha[:-1]])
            jump = np.concatenate([[-np.inf, -np.inf], alpha[:-2]]) + no_skip
            alpha = np.logaddexp(np.logaddexp(alpha, step), jump) + log_probs[t, states]
    return float(np.logaddexp(alpha[-1], alpha[-2])) if S > 1 else float(alpha[-1])


def label_from_log_probs(log_probs: np.ndarray, id2token: Mapping[int, str], token2id: Mapping[str, int],
                         frame_seconds: float, text: str | None = None, blank: int = 0,
                         unk_token: str = "<unk>") -> tuple[Label, dict]:  # fmt: skip
    """Label + confidence scores of one recording's (T, V) log-probs.

    text=None: greedy CTC (the paper's PLs). Otherwise `text` (e.g. from LM beam search) is
    force-aligned to get its times. Scores (all comparable across lengths):
      confidence: mean over frames of the max frame probability;
      path_score: log-prob of the best path / frames (the greedy path's own score);
      ctc_score: log p(label | x) over all alignments / frames (for LM text, how much the
      acoustic model agrees with it).
    """
    unk_id = token2id.get(unk_token)

    def encode(t: str) -> list[int]:  # the training targets of a text, as the tokenizer encodes it
        ids = [token2id.get(ch, unk_id) for ch in transcript_characters(t)]
        if any(i is None for i in ids):
            raise ValueError(f"text has characters outside the vocabulary and no {unk_token}: {t!r}")
        return ids

    spans = greedy_spans(log_probs, blank) if text is None else forced_align(log_probs, encode(text), blank)
    label = spans_to_label(spans, id2token, frame_seconds, blank=blank)
    return label, ctc_scores(log_probs, encode(label.text), blank)


def ctc_scores(log_probs: np.ndarray, tokens: Sequence[int], blank: int = 0) -> dict:
    """The confidence scores of a label (`tokens`) on (T, V) log-probs, as every CTC teacher records
    them (see :func:`label_from_log_probs`): confidence, path_score, ctc_score, num_frames."""
    T = log_probs.shape[0]
    frame_max = log_probs.max(-1)  # (T,)
    return {
        "confidence": float(np.exp(frame_max).mean()) if T else 0.0,
        "path_score": float(frame_max.mean()) if T else -math.inf,
        "ctc_score": ctc_log_likelihood(log_probs, tokens, blank) / max(T, 1),
        "num_frames": int(T),
    }


def carry_times(source: str, target: str, *times: Sequence[float]) -> tuple[list[float], ...]:
    """Per-character times of `source` carried over to `target`, a rewrite of it (stripped, NFC, case,
    normalised spaces, ...): a character both share keeps its time, a new one takes the time of the next
    shared one (the last one's at the end). One list per `times` (e.g. starts and ends)."""
    if source == target:
        return tuple(list(t) for t in times)
    import difflib

    index: list[int | None] = [None] * len(target)
    matcher = difflib.SequenceMatcher(None, source.lower(), target.lower(), autojunk=False)
    for a, b, size in matcher.get_matching_blocks():
        for k in range(size):
            index[b + k] = a + k
    nxt = len(source) - 1
    for j in range(len(target) - 1, -1, -1):  # unmatched characters: the next matched one's position
        if index[j] is None:
            index[j] = nxt
        else:
            nxt = index[j]
    return tuple([list(t)[i] if 0 <= i < len(t) else 0.0 for i in index] for t in times)


def words_from_characters(text: str, starts: Sequence[float], ends: Sequence[float]) -> list[dict]:
    """Words of `text` (split at spaces) with the start of their first and the end of their last character."""
    words, begin = [], 0
    for i in range(len(text) + 1):
        if i == len(text) or text[i] == " ":
            if i > begin:
                words.append({"word": text[begin:i], "start": round(starts[begin], 3), "end": round(ends[i - 1], 3)})
            begin = i + 1
    return words
