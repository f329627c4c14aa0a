#!/usr/bin/env python
"""`python run_scripts/pseudo_label.py ...` (or `accelerate launch run_scripts/pseudo_label.py ...`) runs
:mod:`modeling_mlpl.commands.pseudo_label`, also installed as `mlpl-pseudo-label`; `--help` explains."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # a checkout without install

from modeling_mlpl.commands.pseudo_label import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
