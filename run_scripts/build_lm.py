#!/usr/bin/env python
"""`python run_scripts/build_lm.py ...` (or `accelerate launch run_scripts/build_lm.py ...`) runs
:mod:`modeling_mlpl.commands.build_lm`, also installed as `mlpl-build-lm`; `--help` explains."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # a checkout without install

from modeling_mlpl.commands.build_lm import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
