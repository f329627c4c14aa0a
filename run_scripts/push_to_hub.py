#!/usr/bin/env python
"""`python run_scripts/push_to_hub.py ...` (or `accelerate launch run_scripts/push_to_hub.py ...`) runs
:mod:`modeling_mlpl.commands.push_to_hub`, also installed as `mlpl-push-to-hub`; `--help` explains."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # a checkout without install

from modeling_mlpl.commands.push_to_hub import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
