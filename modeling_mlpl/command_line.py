"""The commands' argument parser and the conventions every command shares.

* Every long option answers to ``--foo_bar`` and ``--foo-bar`` alike: train.py parses with transformers'
  ``HfArgumentParser``, which registers both spellings; the other commands historically used one or the
  other (``evaluate.py --lm-dir``, ``pseudo_label.py --lm_dir``), so both work everywhere; ``--help`` shows one.
* No prefix abbreviations (``allow_abbrev=False``): with them argparse takes ``--out`` for ``--output_dir``
  and ``--max_batch_second`` for ``--max_batch_seconds``, so a typo silently means something else, and a
  flag added later turns an old abbreviation ambiguous.
* The output folder is ``--output_dir`` in every command (as transformers and accelerate spell it);
  :func:`add_output_dir` registers it, and the spellings commands used before (``--out``, ``--out_dir``,
  ``--output``) as deprecated aliases that still work and say so in one line on stderr.
* User mistakes end in one line, ``<prog>: error: ...``, and exit code 2: :class:`UserError` carries the
  message; :func:`ensure_output_dir` checks an output folder before any work is done.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["ArgumentParser", "UserError", "add_output_dir", "ensure_output_dir", "positive_float"]

OUTPUT_DIR = "--output_dir"


class UserError(Exception):
    """A problem with the command line or the inputs: the command prints it in one line and exits with 2."""


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` (raw-text help by default, no prefix abbreviations) that accepts ``-`` and
    ``_`` in long options and checks the options :func:`add_output_dir` made required."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self._required_after_aliases: list[tuple[str, str]] = []  # (dest, flag): set by the flag or an alias

    def parse_known_args(self, args: Sequence[str] | None = None, namespace=None):
        tokens = list(sys.argv[1:] if args is None else args)
        if "--" in tokens:  # everything after a bare "--" is a value, never an option
            cut = tokens.index("--")
            tokens = [self._known_spelling(t) for t in tokens[:cut]] + tokens[cut:]
        else:
            tokens = [self._known_spelling(t) for t in tokens]
        namespace, extras = super().parse_known_args(tokens, namespace)
        for dest, flag in self._required_after_aliases:
            if getattr(namespace, dest, None) is None:
                self.error(f"the following arguments are required: {flag}")
        return namespace, extras

    def _known_spelling(self, token: str) -> str:
        if not token.startswith("--"):
            return token
        name, eq, value = token.partition("=")
        if name in self._option_string_actions:
            return token
        for other in ("--" + name[2:].replace("_", "-"), "--" + name[2:].replace("-", "_")):
            if other in self._option_string_actions:
                return other + eq + value
        return token  # unknown either way: argparse reports it


class _DeprecatedAlias(argparse.Action):
    """An old spelling of an option: stores like the new one and says once, on stderr, to use the new one."""

    def __init__(self, option_strings, dest, instead: str, note: str = "", **kwargs) -> None:
        self.instead, self.note = instead, note
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        note = f" ({self.note})" if self.note else ""
        print(f"{parser.prog}: warning: {option_string} is deprecated, use {self.instead}{note}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_output_dir(
    parser: argparse.ArgumentParser,
    help: str,
    *,
    old: Sequence[str] = (),
    old_file: str | None = None,
    old_file_dest: str = "output_file",
    required: bool = False,
    **kwargs,
) -> argparse.Action:
    """Register ``--output_dir`` (dest ``output_dir``) and ``old`` spellings of it as deprecated aliases.

    ``old_file``: a deprecated option that named an output *file* rather than a folder (``tune_lm.py
    --output FILE``, ``plot_training.py --out FILE``); it keeps its meaning (stored in ``old_file_dest``,
    the command writes that file) so existing scripts do not change behaviour, and warns like the others.
    ``required``: checked after parsing, so that an old spelling satisfies it too.
    """
    action = parser.add_argument(OUTPUT_DIR, help=help, **kwargs)
    for flag in old:
        parser.add_argument(flag, dest=action.dest, action=_DeprecatedAlias, instead=OUTPUT_DIR,
                            type=action.type, help=argparse.SUPPRESS)  # fmt: skip
    if old_file:
        parser.add_argument(old_file, dest=old_file_dest, action=_DeprecatedAlias, instead=f"{OUTPUT_DIR} DIR",
                            note="it names a folder", type=action.type, help=argparse.SUPPRESS)  # fmt: skip
        parser.set_defaults(**{old_file_dest: None})
    if required:
        if not isinstance(parser, ArgumentParser):
            raise TypeError("required=True needs modeling_mlpl.command_line.ArgumentParser")
        parser._required_after_aliases.append((action.dest, OUTPUT_DIR))
    return action


def ensure_output_dir(path: str | os.PathLike, flag: str = OUTPUT_DIR) -> Path:
    """``path`` created (with its parents) and writable, as a Path; else :class:`UserError` saying why.

    Called before any work, so that a run never computes for hours and then fails to write; the cases a
    user meets are a file where the folder should be, and a folder (or a parent) without write permission.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} is a file, not a folder")
    for parent in path.parents:  # a file in the way of a parent: mkdir's error would name no flag
        if parent.exists() and not parent.is_dir():
            raise UserError(f"{flag} {path}: {parent} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{flag} {path}: cannot create it ({err.strerror or err})") from err
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: folder is not writable")
    return path


def ensure_output_file(path: str | os.PathLike, flag: str) -> Path:
    """``path``'s folder ready (:func:`ensure_output_dir`) and ``path`` not a folder: checked before the work."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder, not a file")
    ensure_output_dir(path.parent, flag)
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"{flag} {path}: file is not writable")
    return path


def positive_float(text: str) -> float:
    """argparse ``type`` for sizes that must be > 0 (a batch of 0 seconds holds nothing; nan compares false)."""
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value
