#!/usr/bin/env python
"""`python run_scripts/evaluate.py ...` (or `accelerate launch run_scripts/evaluate.py ...`) runs
:mod:`modeling_mlpl.commands.evaluate`, also installed as `mlpl-evaluate`; `--help` explains."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # a checkout without install

from modeling_mlpl.commands.evaluate import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
