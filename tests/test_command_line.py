"""Every script takes --foo_bar and --foo-bar alike (train.py through HfArgumentParser, the rest through ours)."""

import importlib
import os
import re

import pytest

from modeling_mlpl.command_line import ArgumentParser

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_parser():
    p = ArgumentParser()
    p.add_argument("--lm-dir")
    p.add_argument("--max_steps", type=int, default=0)
    group = p.add_argument_group("g")
    group.add_argument("--beam-width", type=int)
    p.add_argument("rest", nargs="*")
    return p


@pytest.mark.parametrize("argv", [
    ["--lm-dir", "d", "--max_steps", "3", "--beam-width", "8"],
    ["--lm_dir", "d", "--max-steps", "3", "--beam_width", "8"],
    ["--lm_dir=d", "--max-steps=3", "--beam_width=8"],
])  # fmt: skip
def test_both_spellings_parse_to_the_same_namespace(argv):
    args = make_parser().parse_args(argv)
    assert (args.lm_dir, args.max_steps, args.beam_width) == ("d", 3, 8)


def test_values_after_a_bare_double_dash_are_left_alone_and_unknown_options_still_fail(capsys):
    assert make_parser().parse_args(["--", "--lm_dir"]).rest == ["--lm_dir"]
    with pytest.raises(SystemExit) as err:
        make_parser().parse_args(["--lm_dirr", "d"])
    assert err.value.code == 2 and "unrecognized arguments: --lm_dirr" in capsys.readouterr().err


def load_script(name):
    return importlib.import_module(f"modeling_mlpl.commands.{name}")


def test_real_scripts_accept_the_other_spelling():
    evaluate = load_script("evaluate").parse_args(["--model", "m", "--output_dir", "o", "--lm_dir", "l", "--num_workers", "3"])
    assert (evaluate.lm_dir, evaluate.num_workers) == ("l", 3)
    pseudo = load_script("pseudo_label").build_parser().parse_args(
        ["--model", "m", "--data", "cv:x", "--output-dir", "o", "--lm-dir", "l", "--beam-width", "4"])
    assert (pseudo.output_dir, pseudo.lm_dir, pseudo.beam_width) == ("o", "l", 4)


def test_no_script_builds_a_plain_argparse_parser():
    for name in sorted(os.listdir(os.path.join(REPO, "modeling_mlpl", "commands"))):
        if name.endswith(".py"):
            source = open(os.path.join(REPO, "modeling_mlpl", "commands", name), encoding="utf-8").read()
            assert not re.search(r"argparse\.ArgumentParser\(", source), name
