"""The scripts' argument parser: every long option answers to ``--foo_bar`` and ``--foo-bar`` alike.

train.py parses with transformers' ``HfArgumentParser``, which registers both spellings; the other
scripts historically used one or the other (``evaluate.py --lm-dir``, ``pseudo_label.py --lm_dir``).
Rather than renaming flags under users' feet, both spellings work everywhere; ``--help`` shows one.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["ArgumentParser"]


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` (raw-text help by default) that accepts ``-`` and ``_`` in long options."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args: Sequence[str] | None = None, namespace=None):
        tokens = list(sys.argv[1:] if args is None else args)
        if "--" in tokens:  # everything after a bare "--" is a value, never an option
            cut = tokens.index("--")
            tokens = [self._known_spelling(t) for t in tokens[:cut]] + tokens[cut:]
        else:
            tokens = [self._known_spelling(t) for t in tokens]
        return super().parse_known_args(tokens, namespace)

    def _known_spelling(self, token: str) -> str:
        if not token.startswith("--"):
            return token
        name, eq, value = token.partition("=")
        if name in self._option_string_actions:
            return token
        for other in ("--" + name[2:].replace("_", "-"), "--" + name[2:].replace("-", "_")):
            if other in self._option_string_actions:
                return other + eq + value
        return token  # unknown either way: argparse reports it (or matches an abbreviation)
