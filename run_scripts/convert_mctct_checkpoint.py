#!/usr/bin/env python
"""`python run_scripts/convert_mctct_checkpoint.py ...` (or `accelerate launch run_scripts/convert_mctct_checkpoint.py ...`) runs
:mod:`modeling_mlpl.commands.convert_mctct_checkpoint`, also installed as `mlpl-convert-mctct-checkpoint`; `--help` explains."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # a checkout without install

from modeling_mlpl.commands.convert_mctct_checkpoint import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
