"""CTC decoding: greedy best path, and beam search with a word n-gram LM (KenLM).

Beam search maximises ``log p(y|x) + alpha * log p_LM(y) + beta * |y|`` (the paper's decoder;
|y| counts words). transformers' ``Wav2Vec2ProcessorWithLM`` is deprecated in v5, so this
module owns the beam-search call, through one of two backends (``LMDecoderConfig.backend``):
pyctcdecode (pure Python) or flashlight-text's compiled lexicon decoder (decoding_flashlight.py).
One :class:`LMDecoder` holds one KenLM model per language (the paper's recipe fine-tunes and
decodes per language) with its own alpha/beta, and is saved inside a processor directory::

    processor_dir/language_model/
        decoder_config.json      # LMDecoderConfig: labels, beam settings, per-language alpha/beta
        <lang>/lm.bin            # KenLM binary (or .arpa)
        <lang>/unigrams.txt      # the LM's words (pyctcdecode's unigrams, flashlight's lexicon)

Vocabulary convention (MLPLTokenizer): id 0 = ``<pad>`` = CTC blank, ``|`` = word delimiter,
``<unk>`` = unknown character. Text follows the package's one CTC text rule
(:mod:`modeling_mlpl.ctc_text`): special tokens render as nothing, one space between words.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..ctc_text import CTCVocab, greedy_texts, normalize_text

__all__ = [
    "LM_SUBFOLDER",
    "LanguageLMConfig",
    "LMDecoderConfig",
    "LMDecoder",
    "labels_from_vocab",
    "greedy_decode",
    "log_softmax",
    "split_batch",
    "vocab_from_pretrained",
    "attach_lms",
]

logger = logging.getLogger(__name__)

LM_SUBFOLDER = "language_model"
CONFIG_NAME = "decoder_config.json"
_PYCTC_UNK = "⁇"  # what pyctcdecode emits for an unknown-token frame


def log_softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable log-softmax in float32 (idempotent on log-probabilities)."""
    logits = np.asarray(logits, dtype=np.float32)
    shifted = logits - logits.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, possibly bf16 on GPU
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


def split_batch(logits: Any, lengths: Sequence[int] | Any | None = None) -> list[np.ndarray]:
    """(B, T, V) padded logits + valid lengths -> list of (T_i, V) float32 arrays."""
    array = _to_numpy(logits)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise ValueError(f"expected logits of shape (B, T, V) or (T, V), got {array.shape}")
    if lengths is None:
        lengths = [array.shape[1]] * array.shape[0]
    lengths = [int(n) for n in _to_numpy(lengths).reshape(-1)]
    if len(lengths) != array.shape[0]:
        raise ValueError(f"{len(lengths)} lengths for a batch of {array.shape[0]}")
    return [np.ascontiguousarray(array[i, :n], dtype=np.float32) for i, n in enumerate(lengths)]


def labels_from_vocab(
    vocab: Sequence[str],
    pad_token: str = "<pad>",
    word_delimiter: str = "|",
    unk_token: str = "<unk>",
) -> list[str]:
    """pyctcdecode labels for our vocab: blank -> "", ``|`` -> " ", ``<unk>`` -> "⁇".

    Other special tokens (``<s>``, ``</s>``, language tags) get private-use placeholders: pyctcdecode
    refuses duplicate labels, and the decoder moves their probability mass to the blank anyway.
    """
    return _pyctc_labels(CTCVocab.from_tokens(vocab, pad_token, word_delimiter, unk_token))


def _pyctc_labels(table: CTCVocab) -> list[str]:
    labels = []
    for i, token in enumerate(table.tokens):
        if i == table.blank_id:
            labels.append("")
        elif i == table.delimiter_id:
            labels.append(" ")
        elif i == table.unk_id:
            labels.append(_PYCTC_UNK)
        elif i in table.special_ids:
            labels.append(chr(0xE000 + i))  # never emitted: its mass goes to the blank
        else:
            labels.append(token)
    return labels


def merge_specials_into_blank(log_probs: np.ndarray, table: CTCVocab) -> np.ndarray:
    """(T, V) log-probs where special tokens' probability is added to the blank's (for beam search:
    they render as nothing, so their frames act as blanks)."""
    drop = table.special_ids
    if not drop:
        return log_probs
    log_probs = log_probs.copy()
    cols = [table.blank_id, *drop]
    log_probs[:, table.blank_id] = np.logaddexp.reduce(log_probs[:, cols], axis=1)
    log_probs[:, drop] = np.log(1e-15)  # pyctcdecode's own floor
    return log_probs


def _clean_text(text: str, unk_text: str) -> str:
    """A beam search's text under the package's text rule (ctc_text): ``⁇`` -> ``unk_text``."""
    return normalize_text(text.replace(_PYCTC_UNK, unk_text))


def greedy_decode(
    logits: Any,
    vocab: Sequence[str],
    lengths: Sequence[int] | Any | None = None,
    pad_token: str = "<pad>",
    word_delimiter: str = "|",
    unk_token: str = "<unk>",
    unk_text: str = "",
) -> list[str]:
    """Best-path CTC decoding under the package's text rule (see :mod:`modeling_mlpl.ctc_text`).

    ``logits``: (B, T, V) (padded; ``lengths`` gives valid frames) or a list of (T_i, V).
    ``<unk>`` frames become ``unk_text`` (default: nothing, like every special token).
    """
    table = CTCVocab.from_tokens(vocab, pad_token, word_delimiter, unk_token, unk_text)
    return greedy_texts(logits, table, lengths)


@dataclass
class LanguageLMConfig:
    """One language's LM and its fusion weights (``alpha`` on log p_LM, ``beta`` per word)."""

    lm_file: str  # relative to the language_model/ folder once saved
    unigrams_file: str | None = None
    alpha: float = 0.5
    beta: float = 1.0
    unk_score_offset: float = -10.0  # log-score added per out-of-LM-vocabulary word
    lm_score_boundary: bool = True  # score sentence start/end with <s>/</s>


@dataclass
class LMDecoderConfig:
    """Beam-search settings shared by all languages, plus per-language LMs.

    ``backend``: ``"pyctcdecode"`` (pure Python) or ``"flashlight"`` (flashlight-text's compiled
    lexicon beam search, see decoding_flashlight.py); both score ``alpha``/``beta`` alike and
    render text by the same rule. ``beam_width``: beams kept per frame. ``beam_prune_logp``:
    beams worse than the best by more than this are dropped (pyctcdecode). ``token_min_logp``:
    tokens below this log-prob are not expanded, unless argmax (pyctcdecode). ``beam_threshold``
    and ``token_beam``: the flashlight counterparts (score margin to the best beam; tokens tried
    per frame). ``unk_score``: flashlight's score per out-of-lexicon stretch (its ``<unk>`` path;
    the LM's own ``<unk>`` score, times alpha, comes on top). ``log_add``: flashlight sums the
    scores of merged hypotheses instead of keeping the best (pyctcdecode sums); ``sil_score``:
    flashlight's score per ``|`` frame (benchmarks/results/decode.md measures both).
    ``num_workers``: processes for batch decoding (0 = serial; on 2 shared cores a pool was not
    faster). ``default_language``: used when a batch comes without languages.
    """

    vocab: list[str] = field(default_factory=list)
    backend: str = "pyctcdecode"
    beam_width: int = 32
    beam_prune_logp: float = -10.0
    token_min_logp: float = -5.0
    beam_threshold: float = 15.0
    token_beam: int = 8
    # flashlight: these three took its dev CER from +1.62 to +0.54 points of pyctcdecode's at beam 16
    # (benchmarks/results/decode.md, "What limits flashlight"); each alone does less.
    unk_score: float = -0.5
    log_add: bool = True
    sil_score: float = -0.5
    num_workers: int = 0
    default_language: str | None = None
    pad_token: str = "<pad>"
    word_delimiter: str = "|"
    unk_token: str = "<unk>"
    unk_text: str = ""
    languages: dict[str, LanguageLMConfig] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LMDecoderConfig":
        data = dict(data)
        languages = {k: LanguageLMConfig(**v) for k, v in data.pop("languages", {}).items()}
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            logger.warning("ignoring unknown decoder config keys %s", sorted(unknown))
        return cls(languages=languages, **{k: v for k, v in data.items() if k in known})


BACKENDS = ("pyctcdecode", "flashlight")


def _read_unigrams(path: Path) -> list[str]:
    return [w for w in path.read_text(encoding="utf-8").split("\n") if w]


class _PyctcdecodeSearch:
    """pyctcdecode's decoder for one language (``lm_path=None``: beam search without LM)."""

    def __init__(self, labels: list[str], config: LMDecoderConfig, lm_path: Path | None = None,
                 unigrams: list[str] | None = None, lm: LanguageLMConfig | None = None):  # fmt: skip
        try:  # optional for users of the saved remote code who only decode greedily
            from pyctcdecode import build_ctcdecoder
        except ImportError as err:
            raise ImportError("LM decoding needs pyctcdecode and kenlm: pip install pyctcdecode kenlm") from err
        self.config = config
        if lm_path is None:
            self.decoder = build_ctcdecoder(labels)
        else:
            self.decoder = build_ctcdecoder(
                labels,
                kenlm_model_path=str(lm_path),
                unigrams=unigrams,
                alpha=lm.alpha,
                beta=lm.beta,
                unk_score_offset=lm.unk_score_offset,
                lm_score_boundary=lm.lm_score_boundary,
            )

    def _kwargs(self, beam_width: int) -> dict[str, Any]:
        return dict(beam_width=beam_width, beam_prune_logp=self.config.beam_prune_logp,
                    token_min_logp=self.config.token_min_logp)  # fmt: skip

    def reset_params(self, alpha: float, beta: float) -> None:
        self.decoder.reset_params(alpha=alpha, beta=beta)

    def decode_many(self, batch: list[np.ndarray], beam_width: int, workers: int) -> list[str]:
        """``workers > 1``: a fork pool per call; pyctcdecode keeps LMs in a class-level registry that
        forked children inherit, and a pool kept across calls would miss later alpha/beta changes."""
        if workers > 1 and len(batch) > 1:
            with multiprocessing.get_context("fork").Pool(min(workers, len(batch))) as pool:
                return self.decoder.decode_batch(pool, batch, **self._kwargs(beam_width))
        return [self.decoder.decode(x, **self._kwargs(beam_width)) for x in batch]

    def decode_beams(self, log_probs: np.ndarray, beam_width: int, **kwargs: Any) -> list[tuple]:
        return self.decoder.decode_beams(log_probs, **self._kwargs(beam_width), **kwargs)


class _FlashlightSearch:
    """flashlight-text's compiled beam search for one language (decoding_flashlight.py)."""

    def __init__(self, table: CTCVocab, config: LMDecoderConfig, lm_path: Path | None = None,
                 unigrams: list[str] | None = None, lm: LanguageLMConfig | None = None):  # fmt: skip
        from .flashlight import FlashlightSearch

        weights = {} if lm is None else dict(alpha=lm.alpha, beta=lm.beta)
        self.search = FlashlightSearch(table, str(lm_path) if lm_path else None, unigrams,
                                       unk_score=config.unk_score, beam_threshold=config.beam_threshold,
                                       token_beam=config.token_beam, log_add=config.log_add,
                                       sil_score=config.sil_score, **weights)  # fmt: skip

    def reset_params(self, alpha: float, beta: float) -> None:
        self.search.reset_params(alpha=alpha, beta=beta)

    def decode_many(self, batch: list[np.ndarray], beam_width: int, workers: int) -> list[str]:
        return [self.search.decode(x, beam_width) for x in batch]  # ms per utterance: no pool needed

    def decode_beams(self, log_probs: np.ndarray, beam_width: int, **kwargs: Any) -> list[tuple]:
        """pyctcdecode's beam layout ``(text, lm_state, word_frames, logit_score, combined_score)``."""
        results = self.search.decode_results(log_probs, beam_width)
        return [(self.search.text(r), None, [], float(r.emittingModelScore), float(r.score)) for r in results]


class LMDecoder:
    """pyctcdecode beam search over our vocab with one optional KenLM model per language.

    Build with :meth:`from_lm_dirs` (output of ``modeling_mlpl.decoding.ngram_lm.build_lm``) or load with
    :meth:`from_pretrained`; decode with :meth:`decode_batch`. ``language=None`` (or a language
    without an LM) gives beam search without an LM.
    """

    def __init__(self, config: LMDecoderConfig, root: str | os.PathLike | None = None):
        if not config.vocab:
            raise ValueError("LMDecoderConfig.vocab is empty: pass the tokenizer's tokens in id order")
        self.config = config
        self.root = Path(root) if root is not None else None  # where relative lm_file paths live
        self._table = CTCVocab.from_tokens(
            config.vocab, config.pad_token, config.word_delimiter, config.unk_token, config.unk_text
        )
        if config.backend not in BACKENDS:
            raise ValueError(f"unknown decoder backend {config.backend!r}: set LMDecoderConfig.backend to one of {BACKENDS}")
        self._labels = _pyctc_labels(self._table)
        self._decoders: dict[str | None, Any] = {}
        self._warned: set[str] = set()

    # construction / persistence ---------------------------------------------------------------
    @classmethod
    def from_lm_dirs(
        cls,
        vocab: Sequence[str],
        lm_dirs: Mapping[str, str | os.PathLike],
        alpha: float = 0.5,
        beta: float = 1.0,
        **config_kwargs: Any,
    ) -> "LMDecoder":
        """LMs built by ``build_lm`` (``{lang: dir with lm.bin + unigrams.txt}``) -> decoder."""
        from .ngram_lm import LM_ARPA_NAME, LM_BINARY_NAME, UNIGRAMS_NAME

        languages = {}
        for lang, directory in lm_dirs.items():
            directory = Path(directory)
            lm_file = directory / LM_BINARY_NAME
            if not lm_file.exists():
                lm_file = directory / LM_ARPA_NAME
            if not lm_file.exists():
                raise FileNotFoundError(f"no {LM_BINARY_NAME} or {LM_ARPA_NAME} in {directory}")
            unigrams = directory / UNIGRAMS_NAME
            languages[lang] = LanguageLMConfig(
                lm_file=str(lm_file.resolve()),
                unigrams_file=str(unigrams.resolve()) if unigrams.exists() else None,
                alpha=float(alpha),
                beta=float(beta),
            )
        if len(languages) == 1:
            config_kwargs.setdefault("default_language", next(iter(languages)))
        config = LMDecoderConfig(vocab=list(vocab), languages=languages, **config_kwargs)
        return cls(config)

    @staticmethod
    def has_lm(directory: str | os.PathLike) -> bool:
        """Whether a processor directory carries a saved decoder."""
        return (Path(directory) / LM_SUBFOLDER / CONFIG_NAME).is_file()

    def _path(self, name: str | None) -> Path | None:
        if name is None:
            return None
        path = Path(name)
        return path if path.is_absolute() or self.root is None else self.root / path

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Copy LM files and write ``decoder_config.json`` into ``directory/language_model/``."""
        target = Path(directory) / LM_SUBFOLDER
        target.mkdir(parents=True, exist_ok=True)
        languages = {}
        for lang, cfg in self.config.languages.items():
            (target / lang).mkdir(exist_ok=True)
            lm_src = self._path(cfg.lm_file)
            lm_dst = target / lang / lm_src.name
            if lm_src.resolve() != lm_dst.resolve():
                shutil.copyfile(lm_src, lm_dst)
            unigrams_rel = None
            if cfg.unigrams_file is not None:
                uni_src = self._path(cfg.unigrams_file)
                uni_dst = target / lang / "unigrams.txt"
                if uni_src.resolve() != uni_dst.resolve():
                    shutil.copyfile(uni_src, uni_dst)
                unigrams_rel = f"{lang}/unigrams.txt"
            languages[lang] = LanguageLMConfig(
                **{**asdict(cfg), "lm_file": f"{lang}/{lm_src.name}", "unigrams_file": unigrams_rel}
            )
        config = LMDecoderConfig.from_dict({**self.config.to_dict(), "languages": {}})
        config.languages = languages
        (target / CONFIG_NAME).write_text(
            json.dumps(config.to_dict(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )
        return target

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **overrides: Any) -> "LMDecoder":
        """Load from a processor directory (or its ``language_model/`` folder itself)."""
        directory = Path(directory)
        root = directory if (directory / CONFIG_NAME).is_file() else directory / LM_SUBFOLDER
        config_path = root / CONFIG_NAME
        if not config_path.is_file():
            raise FileNotFoundError(f"no {LM_SUBFOLDER}/{CONFIG_NAME} under {directory}")
        data = json.loads(config_path.read_text(encoding="utf-8"))
        data.update(overrides)
        decoder = cls(LMDecoderConfig.from_dict(data), root=root)
        for lang, cfg in decoder.config.languages.items():
            if not decoder._path(cfg.lm_file).is_file():
                raise FileNotFoundError(f"LM file of language {lang!r} missing: {decoder._path(cfg.lm_file)}")
        return decoder

    # parameters -------------------------------------------------------------------------------
    @property
    def languages(self) -> list[str]:
        return list(self.config.languages)

    def set_params(self, language: str, alpha: float | None = None, beta: float | None = None) -> None:
        """Change alpha/beta of one language without reloading its LM."""
        cfg = self.config.languages[language]
        if alpha is not None:
            cfg.alpha = float(alpha)
        if beta is not None:
            cfg.beta = float(beta)
        if language in self._decoders:
            self._decoders[language].reset_params(alpha=cfg.alpha, beta=cfg.beta)

    def _resolve_language(self, language: str | None) -> str | None:
        if language is None:
            language = self.config.default_language
        if language is not None and language not in self.config.languages:
            if language not in self._warned:
                logger.warning("no LM for language %r: beam search without LM", language)
                self._warned.add(language)
            return None
        return language

    def _decoder(self, language: str | None):
        """The backend's search for a language (None = no LM), built on first use."""
        if language not in self._decoders:
            if language is None:
                lm_path = unigrams = lm = None
            else:
                lm = self.config.languages[language]
                lm_path = self._path(lm.lm_file)
                unigrams_path = self._path(lm.unigrams_file)
                unigrams = _read_unigrams(unigrams_path) if unigrams_path else None
            if self.config.backend == "flashlight":
                self._decoders[language] = _FlashlightSearch(self._table, self.config, lm_path, unigrams, lm)
            else:
                self._decoders[language] = _PyctcdecodeSearch(self._labels, self.config, lm_path, unigrams, lm)
        return self._decoders[language]

    # decoding ---------------------------------------------------------------------------------
    def _prepare(self, logits: Any) -> np.ndarray:
        log_probs = log_softmax(_to_numpy(logits))
        if log_probs.ndim != 2 or log_probs.shape[1] != len(self._labels):
            raise ValueError(
                f"logits of one utterance must be (T, {len(self._labels)}), got {log_probs.shape}"
            )
        return merge_specials_into_blank(log_probs, self._table)

    def decode(self, logits: Any, language: str | None = None, beam_width: int | None = None) -> str:
        """One utterance: (T, V) logits or log-probs -> text."""
        return self.decode_batch([logits], [language], beam_width=beam_width)[0]

    def decode_batch(
        self,
        logits: Any,
        languages: Sequence[str | None] | str | None = None,
        lengths: Sequence[int] | Any | None = None,
        beam_width: int | None = None,
        num_workers: int | None = None,
        use_lm: bool = True,
    ) -> list[str]:
        """Beam-search a batch: (B, T, V) + ``lengths``, or a list of (T_i, V) arrays.

        ``languages``: one per utterance, one for all, or None (the config's default language).
        ``use_lm=False`` gives plain beam search (for comparisons). ``num_workers > 1`` decodes
        in a fork pool created per call (pyctcdecode backend; flashlight decodes serially).
        """
        items = logits if isinstance(logits, list) else split_batch(logits, lengths)
        if languages is None or isinstance(languages, str):
            languages = [languages] * len(items)
        if len(languages) != len(items):
            raise ValueError(f"{len(languages)} languages for {len(items)} utterances")
        beam_width = int(beam_width or self.config.beam_width)
        workers = self.config.num_workers if num_workers is None else num_workers
        resolved = [self._resolve_language(lang) if use_lm else None for lang in languages]
        texts: list[str] = [""] * len(items)
        for lang in dict.fromkeys(resolved):  # group by language, keep order
            idx = [i for i, r in enumerate(resolved) if r == lang]
            decoder = self._decoder(lang)
            out = decoder.decode_many([self._prepare(items[i]) for i in idx], beam_width, int(workers or 0))
            for i, text in zip(idx, out):
                texts[i] = _clean_text(text, self.config.unk_text)
        return texts

    def decode_beams(
        self, logits: Any, language: str | None = None, beam_width: int | None = None, **kwargs: Any
    ) -> list[tuple]:
        """pyctcdecode-style beams ``[(text, lm_state, word_frames, logit_score, combined_score)]``.

        This is the method transformers' ASR pipeline calls on a ``decoder=``, so
        ``pipeline("automatic-speech-recognition", model=dir, decoder=LMDecoder.from_pretrained(dir),
        decoder_kwargs={"language": "pt"})`` decodes with the LM (that pipeline path is deprecated
        in transformers v5 and slated for removal in v6; ``decode_batch`` is the stable API).
        """
        lang = self._resolve_language(language)
        beams = self._decoder(lang).decode_beams(
            self._prepare(logits), int(beam_width or self.config.beam_width), **kwargs
        )
        return [(_clean_text(b[0], self.config.unk_text), *b[1:]) for b in beams]

    def greedy_decode(self, logits: Any, lengths: Sequence[int] | Any | None = None) -> list[str]:
        """Best path with this decoder's vocab (same text conventions as :meth:`decode_batch`)."""
        return greedy_texts(logits, self._table, lengths)


def vocab_from_pretrained(directory: str | os.PathLike) -> list[str]:
    """Tokens in id order from a saved tokenizer's ``vocab.json`` (no tokenizer import needed)."""
    path = Path(directory) / "vocab.json"
    if not path.is_file():
        raise FileNotFoundError(f"no tokenizer vocab.json in {directory}")
    encoder = json.loads(path.read_text(encoding="utf-8"))
    if encoder and isinstance(next(iter(encoder.values())), dict):  # per-language layout
        raise ValueError(f"{path} is a per-language vocabulary; expected one {{token: id}} map")
    vocab = [tok for tok, _ in sorted(encoder.items(), key=lambda kv: kv[1])]
    if [encoder[t] for t in vocab] != list(range(len(vocab))):
        raise ValueError(f"{path}: token ids are not 0..{len(vocab) - 1}")
    return vocab


def attach_lms(
    processor_dir: str | os.PathLike,
    lm_dirs: Mapping[str, str | os.PathLike],
    alpha: float = 0.5,
    beta: float = 1.0,
    **config_kwargs: Any,
) -> "LMDecoder":
    """Add/replace per-language LMs in a saved processor's ``language_model/`` (other languages kept)."""
    vocab = vocab_from_pretrained(processor_dir)
    new = LMDecoder.from_lm_dirs(vocab, lm_dirs, alpha=alpha, beta=beta, **config_kwargs)
    if LMDecoder.has_lm(processor_dir):
        old = LMDecoder.from_pretrained(processor_dir)
        if old.config.vocab != vocab:
            logger.warning("saved decoder vocab differs from the tokenizer's: rebuilding the decoder config")
        else:
            for lang, cfg in old.config.languages.items():
                if lang not in new.config.languages:
                    cfg.lm_file = str(old._path(cfg.lm_file).resolve())
                    cfg.unigrams_file = str(old._path(cfg.unigrams_file).resolve()) if cfg.unigrams_file else None
                    new.config.languages[lang] = cfg
            new.config.default_language = new.config.default_language or old.config.default_language
        if "backend" not in config_kwargs:
            new.config.backend = old.config.backend
    if len(new.config.languages) > 1 and not config_kwargs.get("default_language"):
        new.config.default_language = None  # ambiguous: callers pass languages
    new.save_pretrained(processor_dir)
    return LMDecoder.from_pretrained(processor_dir)
