#!/usr/bin/env python
"""`python run_scripts/recipe.py ...` (or `accelerate launch run_scripts/recipe.py ...`) runs
:mod:`modeling_mlpl.commands.recipe`, also installed as `mlpl-recipe`; `--help` explains."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # a checkout without install

from modeling_mlpl.commands.recipe import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
