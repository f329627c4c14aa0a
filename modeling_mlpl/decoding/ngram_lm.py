"""Word n-gram language models for CTC beam search: build with KenLM, read and check ARPA files.

The paper decodes with ``argmax log p(y|x) + alpha * log p_LM(y) + beta * |y|`` where p_LM is a
word n-gram model (4-gram for LibriSpeech). KenLM's ``lmplz`` (interpolated modified Kneser-Ney)
and ``build_binary`` are not on PyPI as binaries, so ``make setup`` compiles them into the
virtual environment's ``bin/`` (``run_scripts/build_kenlm_tools.sh``); this module finds them there.

Text seen by the LM must look like text the decoder produces: words are the space-separated
tokens of the *normalised* transcripts (the same normalisation the tokenizer was trained on),
case kept, because pyctcdecode queries KenLM with exactly the words it spells out.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

__all__ = [
    "KenLMNotFoundError",
    "find_kenlm_binary",
    "normalize_lm_text",
    "write_lm_corpus",
    "iter_text_files",
    "iter_dataset_column",
    "build_arpa",
    "build_binary",
    "build_lm",
    "LMFiles",
    "read_unigrams",
    "ArpaModel",
    "read_arpa",
]

logger = logging.getLogger(__name__)

LM_BINARY_NAME = "lm.bin"
LM_ARPA_NAME = "lm.arpa"
UNIGRAMS_NAME = "unigrams.txt"
# Words KenLM reserves; a corpus containing them makes lmplz abort.
_RESERVED = ("<s>", "</s>", "<unk>")


class KenLMNotFoundError(FileNotFoundError):
    """KenLM's command-line tools are missing (they are compiled by ``make setup``)."""


def find_kenlm_binary(name: str) -> Path:
    """Locate ``lmplz``/``build_binary``: next to this Python (the venv's bin) first, then PATH."""
    candidates = [Path(sys.executable).parent / name]
    on_path = shutil.which(name)
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise KenLMNotFoundError(
        f"KenLM's `{name}` was not found next to {sys.executable} nor on PATH; "
        "run `make setup` (or `bash run_scripts/build_kenlm_tools.sh .venv/bin`) to build it"
    )


def normalize_lm_text(text: str) -> str:
    """One LM training line: whitespace collapsed, KenLM's reserved tokens dropped.

    Case and punctuation are left alone: they must already match the transcripts the acoustic
    model was trained on (normalise with the project's text normaliser before calling this).
    """
    return " ".join(word for word in text.split() if word not in _RESERVED)


def write_lm_corpus(
    sentences: Iterable[str], path: str | os.PathLike, normalize: Callable[[str], str] | None = None
) -> int:
    """Write one normalised sentence per line (empty ones skipped); return the line count."""
    n_lines = 0
    with open(path, "w", encoding="utf-8") as f:
        for sentence in sentences:
            if normalize is not None:
                sentence = normalize(sentence)
            line = normalize_lm_text(sentence)
            if line:
                f.write(line + "\n")
                n_lines += 1
    return n_lines


def iter_text_files(paths: Sequence[str | os.PathLike]) -> Iterator[str]:
    """Lines of plain UTF-8 text files, one sentence per line."""
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for line in f:
                yield line.rstrip("\n")


def iter_dataset_column(
    dataset_path: str | os.PathLike,
    column: str,
    split: str | None = None,
    language_column: str | None = None,
    language: str | None = None,
) -> Iterator[str]:
    """Sentences from a ``datasets`` dataset saved with ``save_to_disk``.

    With ``language_column``/``language`` only rows of that language are kept, so one
    multilingual text dataset gives one LM per language.
    """
    try:  # optional for users of the saved remote code (this module travels with decoding.py)
        import datasets
    except ImportError as err:
        raise ImportError("reading LM text from a dataset needs the `datasets` package") from err

    loaded = datasets.load_from_disk(str(dataset_path))
    if isinstance(loaded, datasets.DatasetDict):
        if split is None:
            if len(loaded) != 1:
                raise ValueError(f"dataset has splits {list(loaded)}: choose one with split=")
            split = next(iter(loaded))
        if split not in loaded:
            raise ValueError(f"split {split!r} not in dataset (has {list(loaded)})")
        loaded = loaded[split]
    if column not in loaded.column_names:
        raise ValueError(f"column {column!r} not in dataset (has {loaded.column_names})")
    columns = [column] + ([language_column] if language_column else [])
    # Select columns first: rows of an audio dataset would otherwise carry their audio bytes.
    table = loaded.select_columns(columns)
    for batch in table.iter(batch_size=1000):
        texts = batch[column]
        languages = batch[language_column] if language_column else [None] * len(texts)
        for text, lang in zip(texts, languages):
            if language is None or lang == language:
                yield text or ""


def _run(command: list[str], what: str) -> None:
    logger.info("running %s", " ".join(command))
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{tail}")


def build_arpa(
    corpus_path: str | os.PathLike,
    arpa_path: str | os.PathLike,
    order: int = 3,
    memory: str = "1G",
    tmp_dir: str | os.PathLike | None = None,
    discount_fallback: bool = True,
    prune: Sequence[int] | None = None,
) -> Path:
    """Run ``lmplz`` on a one-sentence-per-line corpus and write an ARPA file.

    ``memory`` is lmplz's ``-S`` (its default grabs 80 % of RAM); ``tmp_dir`` its ``-T``.
    ``discount_fallback`` lets small corpora through: modified Kneser-Ney estimates its
    discounts from counts-of-counts, which tiny corpora do not have, and lmplz then aborts
    ("Could not calculate Kneser-Ney discounts") unless told to fall back to fixed ones.
    ``prune`` gives per-order count thresholds (``--prune``), e.g. ``(0, 0, 1)``.
    """
    if not 1 <= order <= 6:
        raise ValueError(f"order must be in 1..6 (KenLM tools are built with max order 6), got {order}")
    if Path(corpus_path).stat().st_size == 0:
        raise ValueError(f"LM corpus {corpus_path} is empty")
    arpa_path = Path(arpa_path)
    arpa_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tmp_dir) as work:
        command = [
            str(find_kenlm_binary("lmplz")),
            "-o", str(order),
            "-S", memory,
            "-T", work,
            "--text", str(corpus_path),
            "--arpa", str(arpa_path),
        ]  # fmt: skip
        if discount_fallback:
            command.append("--discount_fallback")
        if prune:
            command += ["--prune", *map(str, prune)]
        _run(command, "lmplz")
    return arpa_path


def build_binary(
    arpa_path: str | os.PathLike, binary_path: str | os.PathLike, data_structure: str = "trie"
) -> Path:
    """Convert ARPA to KenLM's binary format (loads in milliseconds instead of parsing text)."""
    if data_structure not in ("trie", "probing"):
        raise ValueError(f"data_structure must be 'trie' or 'probing', got {data_structure!r}")
    binary_path = Path(binary_path)
    binary_path.parent.mkdir(parents=True, exist_ok=True)
    _run(
        [str(find_kenlm_binary("build_binary")), data_structure, str(arpa_path), str(binary_path)],
        "build_binary",
    )
    return binary_path


def read_unigrams(arpa_path: str | os.PathLike) -> list[str]:
    """The words of an ARPA file (``<s>``, ``</s>``, ``<unk>`` excluded), in file order.

    pyctcdecode needs them next to a binary LM: it uses them to score partial words and to
    tell in-vocabulary words from out-of-vocabulary ones.
    """
    words: list[str] = []
    in_unigrams = False
    with open(arpa_path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line == "\\1-grams:":
                in_unigrams = True
                continue
            if in_unigrams:
                if line.startswith("\\"):
                    break
                parts = line.split("\t")
                if len(parts) >= 2 and parts[1] not in _RESERVED:
                    words.append(parts[1])
    return words


@dataclass
class LMFiles:
    """Files of one built LM: ``binary`` is what the decoder loads, ``unigrams`` its word list."""

    directory: Path
    binary: Path
    unigrams: Path
    arpa: Path | None
    n_sentences: int
    order: int


def build_lm(
    sentences: Iterable[str],
    out_dir: str | os.PathLike,
    order: int = 3,
    memory: str = "1G",
    normalize: Callable[[str], str] | None = None,
    keep_arpa: bool = True,
    discount_fallback: bool = True,
    prune: Sequence[int] | None = None,
) -> LMFiles:
    """Sentences -> ``out_dir/{lm.arpa, lm.bin, unigrams.txt}`` (interpolated modified KN).

    ``order`` defaults to 3, enough for small corpora; the paper uses 4 for LibriSpeech.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    arpa_path = out_dir / LM_ARPA_NAME
    with tempfile.TemporaryDirectory(dir=out_dir) as work:
        corpus = Path(work) / "corpus.txt"
        n_sentences = write_lm_corpus(sentences, corpus, normalize)
        if n_sentences == 0:
            raise ValueError("no non-empty sentences to build a language model from")
        build_arpa(corpus, arpa_path, order, memory, work, discount_fallback, prune)
    binary = build_binary(arpa_path, out_dir / LM_BINARY_NAME)
    unigrams = out_dir / UNIGRAMS_NAME
    unigrams.write_text("\n".join(read_unigrams(arpa_path)) + "\n", encoding="utf-8")
    if not keep_arpa:
        arpa_path.unlink()
    logger.info("built %d-gram LM from %d sentences in %s", order, n_sentences, out_dir)
    return LMFiles(out_dir, binary, unigrams, arpa_path if keep_arpa else None, n_sentences, order)


@dataclass
class ArpaModel:
    """An ARPA back-off model in memory: ``ngrams[n][words] = (log10 p, log10 backoff)``.

    Meant for checking and testing LMs (pure Python, small models); decoding uses KenLM.
    """

    order: int
    ngrams: dict[int, dict[tuple[str, ...], tuple[float, float]]] = field(default_factory=dict)

    @property
    def vocab(self) -> list[str]:
        """Words that can be predicted (every unigram but ``<s>``)."""
        return [w for (w,) in self.ngrams[1] if w != "<s>"]

    def log10_prob(self, word: str, context: Sequence[str] = ()) -> float:
        """log10 p(word | context) with back-off; unknown words are scored as ``<unk>``."""
        if (word,) not in self.ngrams[1]:
            word = "<unk>"
        context = tuple(w if (w,) in self.ngrams[1] else "<unk>" for w in context)
        context = context[len(context) - self.order + 1 :] if self.order > 1 else ()
        backoff = 0.0
        # Longest matching n-gram wins; every shorter context we pass adds its back-off weight.
        for start in range(len(context) + 1):
            history = context[start:]
            entry = self.ngrams.get(len(history) + 1, {}).get(history + (word,))
            if entry is not None:
                return backoff + entry[0]
            backoff += self.ngrams.get(len(history), {}).get(history, (0.0, 0.0))[1]
        raise ValueError(f"ARPA model has no unigram for {word!r} and no <unk>")

    def score(self, sentence: str, bos: bool = True, eos: bool = True) -> float:
        """log10 probability of a sentence, as ``kenlm.Model.score`` computes it."""
        words = sentence.split() + (["</s>"] if eos else [])
        context: list[str] = ["<s>"] if bos else []
        total = 0.0
        for word in words:
            total += self.log10_prob(word, context)
            context.append(word)
        return total

    def contexts(self) -> list[tuple[str, ...]]:
        """Every history that has its own entries: the empty one and all stored n-grams < order."""
        return [()] + [h for n in range(1, self.order) for h in self.ngrams.get(n, {})]

    def check_normalization(
        self, contexts: Iterable[Sequence[str]] | None = None, tolerance: float = 1e-4
    ) -> dict[tuple[str, ...], float]:
        """Sum of p(w | h) over the vocabulary for each history h; raises if one is not 1.

        A proper back-off model sums to one for *every* history, including unseen ones (the
        back-off weights exist to make that true). ``</s>`` histories are skipped: nothing
        follows the end of a sentence.
        """
        sums: dict[tuple[str, ...], float] = {}
        vocab = self.vocab
        for context in contexts if contexts is not None else self.contexts():
            context = tuple(context)
            if context and context[-1] == "</s>":
                continue
            total = sum(10.0 ** self.log10_prob(w, context) for w in vocab)
            sums[context] = total
            if abs(total - 1.0) > tolerance:
                raise ValueError(f"p(. | {' '.join(context) or '<empty>'}) sums to {total:.6f}, not 1")
        return sums


def read_arpa(path: str | os.PathLike) -> ArpaModel:
    """Parse and validate an ARPA file (header counts, field counts, log10 probabilities <= 0)."""
    declared: dict[int, int] = {}
    ngrams: dict[int, dict[tuple[str, ...], tuple[float, float]]] = defaultdict(dict)
    section: int | None = None
    seen_end = False
    with open(path, encoding="utf-8") as f:
        for line_no, raw in enumerate(f, 1):
            line = raw.strip()
            if not line:
                continue
            if line == "\\data\\":
                section = 0
            elif line == "\\end\\":
                seen_end = True
                break
            elif line.startswith("\\") and line.endswith("-grams:"):
                section = int(line[1 : -len("-grams:")])
            elif section == 0 and line.startswith("ngram "):
                n, count = line[len("ngram ") :].split("=")
                declared[int(n)] = int(count)
            elif section:
                parts = line.split("\t")
                if len(parts) not in (2, 3):
                    raise ValueError(f"{path}:{line_no}: expected 2 or 3 tab-separated fields")
                words = tuple(parts[1].split(" "))
                if len(words) != section:
                    raise ValueError(f"{path}:{line_no}: {len(words)} words in the {section}-gram section")
                log_prob = float(parts[0])
                if log_prob > 0:
                    raise ValueError(f"{path}:{line_no}: log10 probability {log_prob} > 0")
                backoff = float(parts[2]) if len(parts) == 3 else 0.0
                if not math.isfinite(backoff):
                    raise ValueError(f"{path}:{line_no}: back-off weight {backoff} is not finite")
                ngrams[section][words] = (log_prob, backoff)
            else:
                raise ValueError(f"{path}:{line_no}: unexpected line {line[:50]!r}")
    if not seen_end:
        raise ValueError(f"{path}: no \\end\\ marker (truncated file?)")
    if not declared:
        raise ValueError(f"{path}: no \\data\\ header")
    for n, count in declared.items():
        if len(ngrams.get(n, {})) != count:
            raise ValueError(f"{path}: header declares {count} {n}-grams, found {len(ngrams.get(n, {}))}")
    return ArpaModel(order=max(declared), ngrams=dict(ngrams))
