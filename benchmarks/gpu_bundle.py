#!/usr/bin/env python
"""Trim the wordfreq wheel of `make gpu-bundle` to the corpus's languages.

    python benchmarks/gpu_bundle.py trim-wordfreq build/gpu-bundle/wheels/wordfreq-*.whl

Why: wordfreq's wheel is 55 MB, word lists of ~45 languages; the embedded corpus uses 10
(`modeling_mlpl.synthetic.corpus.ESPEAK_VOICES`), 21 MB. The device machine takes 64 MiB per call, the
repository included, so the bundle must stay small. The wheel is rewritten in place without the other
languages' lists (and their lines in RECORD, so that pip installs exactly what is there).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

WORDLIST = re.compile(r"^wordfreq/data/(?:large|small|best)_([a-z]{2,3}(?:-[A-Za-z]+)?)\.msgpack\.gz$")
OTHER_DATA = re.compile(r"^wordfreq/data/(?!.*\.msgpack\.gz$).+")  # jieba (Chinese), etc.


def keep_member(name: str, languages: set[str]) -> bool:
    """Word lists only of `languages`; every code file and metadata file."""
    match = WORDLIST.match(name)
    if match:
        return match.group(1) in languages
    return not OTHER_DATA.match(name)


def trim_wheel(path: str, languages: set[str]) -> tuple[int, int]:
    """Rewrite the wheel at `path` keeping `keep_member` files; returns (bytes before, bytes after)."""
    before = os.path.getsize(path)
    tmp = path + ".tmp"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if not keep_member(info.filename, languages):
                continue
            data = src.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines()
                data = ("\n".join(line for line in lines if keep_member(line.split(",", 1)[0], languages)) + "\n").encode()
            dst.writestr(info, data)
    os.replace(tmp, path)
    return before, os.path.getsize(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    trim = sub.add_parser("trim-wordfreq", help="keep only the corpus languages' word lists")
    trim.add_argument("wheel")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.wheel):
        parser.error(f"{args.wheel}: no such wheel (run `make gpu-bundle`)")
    from modeling_mlpl.synthetic.corpus import ESPEAK_VOICES

    before, after = trim_wheel(args.wheel, set(ESPEAK_VOICES))
    print(f"{os.path.basename(args.wheel)}: {before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB "
          f"({len(ESPEAK_VOICES)} languages: {' '.join(sorted(ESPEAK_VOICES))})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
