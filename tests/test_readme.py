"""The README's Python usage snippet runs as written (on a tiny checkpoint instead of a trained one)."""

import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.S)


def test_inference_snippet_runs(tiny_checkpoint, capsys):
    readme = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    snippet = next(block for block in python_blocks(readme) if "pipeline(" in block)
    snippet, n = re.subn(r'model_dir = "[^"]+"', f"model_dir = {tiny_checkpoint!r}", snippet)
    assert n == 1, "the snippet should set model_dir once"
    exec(compile(snippet, "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 4  # text, word chunks, decoded logits, LID top-3
    assert printed[-1].startswith("[[(")
