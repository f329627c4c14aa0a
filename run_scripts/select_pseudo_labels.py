#!/usr/bin/env python
"""`python run_scripts/select_pseudo_labels.py ...` (or `accelerate launch run_scripts/select_pseudo_labels.py ...`) runs
:mod:`modeling_mlpl.commands.select_pseudo_labels`, also installed as `mlpl-select-pseudo-labels`; `--help` explains."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # a checkout without install

from modeling_mlpl.commands.select_pseudo_labels import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
