#!/usr/bin/env python
"""`python run_scripts/make_synthetic_corpus.py ...` (or `accelerate launch run_scripts/make_synthetic_corpus.py ...`) runs
:mod:`modeling_mlpl.commands.make_synthetic_corpus`, also installed as `mlpl-make-synthetic-corpus`; `--help` explains."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # a checkout without install

from modeling_mlpl.commands.make_synthetic_corpus import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
