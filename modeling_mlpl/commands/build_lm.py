"""Build word n-gram LMs (KenLM, interpolated modified Kneser-Ney), one per language.

Text comes from plain files (one sentence per line) or a `datasets` dataset saved with
`save_to_disk`. Transcripts are normalised like the acoustic model's (NFC, whitespace), case and
punctuation kept. Writes OUTPUT_DIR/<lang>/{lm.arpa, lm.bin, unigrams.txt}; with --processor-dir the LMs
are also attached to a saved processor (its language_model/ folder), ready for tune_lm.py.

Examples:
  python run_scripts/build_lm.py --text pt=corpus/pt.txt --text nl=corpus/nl.txt --output_dir exp/lm
  python run_scripts/build_lm.py --dataset data/lm_text --column sentence \
      --language-column language --languages pt nl --order 3 --output_dir exp/lm --processor-dir exp/model
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from modeling_mlpl.command_line import ArgumentParser, UserError, add_output_dir, ensure_output_dir
from modeling_mlpl.decoding.lm_decoder import attach_lms, vocab_from_pretrained
from modeling_mlpl.decoding.ngram_lm import KenLMNotFoundError, build_lm, iter_dataset_column, iter_text_files
from modeling_mlpl.text import normalize_transcript

logger = logging.getLogger("build_lm")


def build_parser() -> ArgumentParser:
    p = ArgumentParser(description=__doc__)
    src = p.add_argument_group("text sources (use --text, or --dataset with --column)")
    src.add_argument("--text", action="append", default=[], metavar="LANG=PATH[,PATH...]",
                     help="plain-text file(s) of one language, one sentence per line; repeatable")
    src.add_argument("--dataset", help="directory of a dataset saved with datasets' save_to_disk")
    src.add_argument("--column", default="sentence", help="text column of --dataset (default: sentence)")
    src.add_argument("--split", help="split of a DatasetDict (default: the only one)")
    src.add_argument("--language-column", help="column holding each row's language: one LM per language")
    src.add_argument("--languages", nargs="+", help="languages to build (default: all found)")
    src.add_argument("--language", default="default",
                     help="name of the single LM when --dataset has no --language-column (default: default)")
    add_output_dir(p, "output folder; LMs go to OUTPUT_DIR/<lang>/", old=("--out",), required=True)
    p.add_argument("--order", type=int, default=3, help="n-gram order (paper: 4 for LibriSpeech; 3 suits small corpora)")
    p.add_argument("--memory", default="1G", help="lmplz -S memory limit (default 1G; '80%%' = lmplz's own default)")
    p.add_argument("--prune", type=int, nargs="+", help="lmplz --prune count thresholds per order, e.g. 0 0 1")
    p.add_argument("--no-arpa", action="store_true", help="delete the ARPA file once the binary is built")
    p.add_argument("--processor-dir", help="saved processor to attach the LMs to (writes its language_model/)")
    p.add_argument("--alpha", type=float, default=0.5, help="initial LM weight written with --processor-dir")
    p.add_argument("--beta", type=float, default=1.0, help="initial word bonus written with --processor-dir")
    p.add_argument("--beam-width", type=int, default=32, help="beam width written with --processor-dir")
    p.add_argument("--backend", choices=["pyctcdecode", "flashlight"],
                   help="beam-search backend written with --processor-dir (default: the saved one, else pyctcdecode)")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def sources(args: argparse.Namespace) -> dict[str, object]:
    """{language: iterable of sentences}; iterables are lazy so big corpora stream to lmplz."""
    if bool(args.text) == bool(args.dataset):
        raise ValueError("give either --text LANG=PATH or --dataset DIR")
    if args.text:
        out = {}
        for spec in args.text:
            lang, sep, paths = spec.partition("=")
            if not sep or not lang or not paths:
                raise ValueError(f"--text expects LANG=PATH, got {spec!r}")
            files = paths.split(",")
            for f in files:
                if not Path(f).is_file():
                    raise FileNotFoundError(f"text file not found: {f}")
            out.setdefault(lang, []).extend(files)
        return {lang: iter_text_files(files) for lang, files in out.items()}
    if not Path(args.dataset).is_dir():
        raise FileNotFoundError(f"dataset directory not found: {args.dataset}")
    if not args.language_column:
        return {args.language: iter_dataset_column(args.dataset, args.column, args.split)}
    languages = args.languages
    if not languages:
        import datasets

        ds = datasets.load_from_disk(args.dataset)
        if isinstance(ds, datasets.DatasetDict):
            ds = ds[args.split or next(iter(ds))]
        if args.language_column not in ds.column_names:
            raise ValueError(f"column {args.language_column!r} not in dataset (has {ds.column_names})")
        languages = sorted(set(ds.unique(args.language_column)))
    return {
        lang: iter_dataset_column(args.dataset, args.column, args.split, args.language_column, lang)
        for lang in languages
    }


def check_characters(lm_dirs: dict[str, Path], vocab: list[str]) -> None:
    """Warn when LM words use characters the acoustic model cannot emit (the decoder never spells them)."""
    known = set(vocab)
    for lang, directory in lm_dirs.items():
        words = (directory / "unigrams.txt").read_text(encoding="utf-8").split()
        bad = [w for w in words if not set(w) <= known]
        if bad:
            logger.warning("%s: %d of %d LM words have characters outside the model vocab, e.g. %s",
                           lang, len(bad), len(words), bad[:5])  # fmt: skip


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        built = {}
        if args.languages and args.text:
            raise ValueError("--languages applies to --dataset; with --text name the language in LANG=PATH")
        text_sources = sources(args)
        out = ensure_output_dir(args.output_dir)
        for lang, sentences in text_sources.items():
            files = build_lm(sentences, out / lang, order=args.order, memory=args.memory,
                             normalize=normalize_transcript, keep_arpa=not args.no_arpa, prune=args.prune)  # fmt: skip
            logger.info("%s: %d sentences -> %s", lang, files.n_sentences, files.binary)
            built[lang] = files.directory
        if args.processor_dir:
            check_characters(built, vocab_from_pretrained(args.processor_dir))
            backend = {"backend": args.backend} if args.backend else {}
            decoder = attach_lms(args.processor_dir, built, alpha=args.alpha, beta=args.beta,
                                 beam_width=args.beam_width, **backend)  # fmt: skip
            logger.info("decoder with LMs for %s saved in %s/language_model", decoder.languages, args.processor_dir)
    except (UserError, ValueError, FileNotFoundError, KenLMNotFoundError, RuntimeError) as err:
        print(f"build_lm.py: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
