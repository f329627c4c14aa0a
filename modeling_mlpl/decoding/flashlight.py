"""Compiled CTC beam search with a word KenLM: flashlight-text's ``LexiconDecoder`` (the paper's decoder).

Selected with ``LMDecoderConfig(backend="flashlight")``; ``LMDecoder`` builds one
:class:`FlashlightSearch` per language. Why the lexicon decoder: flashlight's
``LexiconFreeDecoder`` scores every emitted *token* with the LM, so it needs a character LM; ours
are word n-grams. The lexicon is the LM's own unigrams, each spelled as its characters plus ``|``
(the word ends at the delimiter, so words are scored exactly once), and ``<unk>`` is in the word
dictionary so flashlight's unknown-word path is open: a hypothesis may leave the lexicon at any
spelled prefix (costing ``unk_score`` plus alpha times the LM's ``<unk>`` score) and start again, so
an out-of-lexicon word is spelled as a few such stretches (pyctcdecode instead charges
``unk_score_offset`` once per unknown word; the two knobs are not the same scale). The text is
read from the token path, not from the word ids, so such out-of-lexicon stretches keep their
spelling; it is rendered by the package's text rule (:mod:`modeling_mlpl.ctc_text`).

Scales: KenLM scores are log10 and pyctcdecode multiplies ``alpha`` by ln(10); so does this
backend, so one ``alpha``/``beta`` means the same fusion in both. Pitfalls handled here (measured on
this machine): a word is only completed at a ``|`` frame, so one certain ``|`` frame is appended
to every utterance; tokens tried per frame are limited (``token_beam``), or a large vocabulary costs
seconds per utterance. Needs ``pip install flashlight-text`` (its wheel bundles KenLM).

Why its CER trails pyctcdecode's on real logits (benchmarks/decode_gap.py, results/decode.md):
not the search, but the objective. It keeps a text's best alignment where pyctcdecode sums them
(``log_add=True`` sums, but over hypotheses that share an LM state, trie node and token, not
a text: with a free unk path, ``unk_score=0``, that can even prefer a wrong text), and it prices
an out-of-lexicon word per prefix stretch, not once per word. ``sil_score`` is flashlight's score
per ``|`` frame; ``smearing="none"`` turns the trie's LM look-ahead off (for experiments).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..ctc_text import CTCVocab, path_text

__all__ = ["FlashlightSearch", "flashlight_available"]

LN10 = math.log(10.0)
_FLOOR = math.log(1e-15)


def flashlight_available() -> bool:
    try:
        import flashlight.lib.text.decoder  # noqa: F401
    except ImportError:
        return False
    return True


def _import():
    try:
        from flashlight.lib.text import decoder as fl_decoder
        from flashlight.lib.text.decoder.kenlm import KenLM
        from flashlight.lib.text.dictionary import Dictionary
    except ImportError as err:
        raise ImportError("the flashlight backend needs flashlight-text: pip install flashlight-text") from err
    return fl_decoder, KenLM, Dictionary


class FlashlightSearch:
    """Beam search for one language (``lm_path=None``: no LM, a lexicon-free CTC beam search)."""

    def __init__(
        self,
        table: CTCVocab,
        lm_path: str | None = None,
        unigrams: Sequence[str] | None = None,
        alpha: float = 0.5,
        beta: float = 1.0,
        unk_score: float = -0.5,
        beam_threshold: float = 15.0,
        token_beam: int = 8,
        log_add: bool = True,
        sil_score: float = -0.5,
        smearing: str = "max",
    ):
        self.table = table
        self.alpha, self.beta, self.unk_score = float(alpha), float(beta), float(unk_score)
        self.beam_threshold, self.token_beam = float(beam_threshold), int(token_beam)
        self.log_add, self.sil_score = bool(log_add), float(sil_score)
        self._fl, KenLM, Dictionary = _import()
        self._decoders: dict[int, object] = {}
        if lm_path is None:
            self._lm = self._fl.ZeroLM()
            self._trie = None
            return
        if not unigrams:
            raise ValueError(f"the flashlight backend needs the LM's unigrams next to {lm_path} (build_lm.py writes them)")
        index = {tok: i for i, tok in enumerate(table.tokens)}
        specials = {table.blank_id, table.delimiter_id, *table.special_ids}
        spelled = {}
        for word in unigrams:  # words with a character outside the vocabulary can never be emitted
            ids = [index.get(ch) for ch in word]
            if word and all(i is not None and i not in specials for i in ids):
                spelled[word] = ids + [table.delimiter_id]
        self.lexicon_size = len(spelled)
        words = Dictionary(list(spelled) + ["<unk>"])
        self._unk_word = words.get_index("<unk>")
        self._lm = KenLM(str(lm_path), words)
        self._trie = self._fl.Trie(len(table), table.delimiter_id)
        start = self._lm.start(False)
        for word, ids in spelled.items():
            index_ = words.get_index(word)
            self._trie.insert(ids, index_, self._lm.score(start, index_)[1])
        self._trie.smear({"max": self._fl.SmearingMode.MAX, "none": self._fl.SmearingMode.NONE}[smearing])

    def reset_params(self, alpha: float | None = None, beta: float | None = None) -> None:
        if alpha is not None:
            self.alpha = float(alpha)
        if beta is not None:
            self.beta = float(beta)
        self._decoders.clear()  # options are fixed at construction; rebuilding is cheap (trie and LM kept)

    def _decoder(self, beam_width: int):
        if beam_width not in self._decoders:
            fl, t = self._fl, self.table
            token_beam = min(self.token_beam, len(t))
            if self._trie is None:
                options = fl.LexiconFreeDecoderOptions(
                    beam_size=beam_width, beam_size_token=token_beam, beam_threshold=self.beam_threshold,
                    lm_weight=0.0, sil_score=0.0, log_add=False, criterion_type=fl.CriterionType.CTC,
                )  # fmt: skip
                self._decoders[beam_width] = fl.LexiconFreeDecoder(options, self._lm, t.delimiter_id, t.blank_id, [])
            else:
                lm_weight = self.alpha * LN10
                options = fl.LexiconDecoderOptions(
                    beam_size=beam_width, beam_size_token=token_beam, beam_threshold=self.beam_threshold,
                    lm_weight=lm_weight, word_score=self.beta, unk_score=self.unk_score,
                    sil_score=self.sil_score, log_add=self.log_add, criterion_type=fl.CriterionType.CTC,
                )  # fmt: skip
                self._decoders[beam_width] = fl.LexiconDecoder(
                    options, self._trie, self._lm, t.delimiter_id, t.blank_id, self._unk_word, [], False
                )
        return self._decoders[beam_width]

    def _emissions(self, log_probs: np.ndarray) -> np.ndarray:
        end = np.full((1, log_probs.shape[1]), _FLOOR, dtype=np.float32)  # one certain "|": ends the last word
        end[0, self.table.delimiter_id] = 0.0
        return np.ascontiguousarray(np.concatenate([log_probs, end]), dtype=np.float32)  # (T + 1, V)

    def decode_results(self, log_probs: np.ndarray, beam_width: int) -> list:
        """flashlight ``DecodeResult``s, best first, of (T, V) log-probs."""
        emissions = self._emissions(log_probs)
        return self._decoder(int(beam_width)).decode(emissions.ctypes.data, *emissions.shape)

    def text(self, result) -> str:
        """A result's token path (with a sentinel at each end) -> text under the package's rule."""
        return path_text(np.asarray(result.tokens[1:-1], dtype=np.int64), self.table)

    def decode(self, log_probs: np.ndarray, beam_width: int) -> str:
        results = self.decode_results(log_probs, beam_width)
        return self.text(results[0]) if results else ""
