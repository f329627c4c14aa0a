"""Generate the embedded multilingual speech corpus (espeak-ng) in Common Voice / VoxPopuli layouts.

    python run_scripts/make_synthetic_corpus.py --preset demo --output_dir data/synthetic --seed 0

Re-running completes a partial corpus (existing valid audio is kept). Sizes per preset are in
modeling_mlpl.synthetic.corpus.PRESETS; `--set low_unlabelled_minutes=30` overrides one
(`--set low_train_variants=none` gives the low-resource languages generator 1.0's shared speakers).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
import sys
import time
import typing

from modeling_mlpl.command_line import ArgumentParser, add_output_dir
from modeling_mlpl.synthetic.corpus import PRESETS, CorpusSize, generate_corpus


def _parse_override(size: CorpusSize, item: str) -> CorpusSize:
    key, sep, value = item.partition("=")
    fields = {f.name: f for f in dataclasses.fields(CorpusSize)}
    if not sep or key not in fields:
        raise ValueError(f"--set expects KEY=VALUE with KEY one of {', '.join(fields)}; got {item!r}")
    current = getattr(size, key)
    if _optional(key):  # e.g. low_train_variants: a number, or "none" for generator 1.0's shared pool
        parsed = None if value.strip().lower() in ("none", "") else int(value)
    elif isinstance(current, tuple):
        parts = [p for p in value.replace(",", " ").split() if p]
        parsed = tuple(type(current[0])(p) for p in parts) if current else tuple(parts)
    else:
        parsed = type(current)(value)
    return size.replace(**{key: parsed})


def _optional(key: str) -> bool:
    hint = typing.get_type_hints(CorpusSize)[key]
    return type(None) in typing.get_args(hint)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny", help="corpus size (default: tiny)")
    add_output_dir(parser, "output folder (created; an existing one is completed)", old=("--out",), required=True)
    parser.add_argument("--seed", type=int, default=0, help="seed for text, voices and noise (default: 0)")
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: all CPU cores)")
    parser.add_argument("--languages", nargs="+", default=None, help="only these of the preset's languages")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a size field")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # `kill` (SIGTERM) unwinds like Ctrl-C, so the worker pool is shut down rather than orphaned
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        size = PRESETS[args.preset]
        for item in args.set:
            size = _parse_override(size, item)
        preset: str | CorpusSize = args.preset if not args.set else size
        start = time.time()
        manifest = generate_corpus(args.output_dir, preset, seed=args.seed, jobs=args.jobs, languages=args.languages, progress=True)
    except (ValueError, RuntimeError, OSError) as err:
        print(f"make_synthetic_corpus: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("make_synthetic_corpus: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    hours = {lang: {split: s["hours"] for split, s in c.items()} for lang, c in manifest["counts"].items()}
    print(json.dumps({"output_dir": args.output_dir, "total_hours": manifest["total_hours"], "hours": hours}, indent=1))
    print(f"done in {time.time() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
