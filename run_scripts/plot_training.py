#!/usr/bin/env python
"""`python run_scripts/plot_training.py ...` (or `accelerate launch run_scripts/plot_training.py ...`) runs
:mod:`modeling_mlpl.commands.plot_training`, also installed as `mlpl-plot-training`; `--help` explains."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # a checkout without install

from modeling_mlpl.commands.plot_training import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
