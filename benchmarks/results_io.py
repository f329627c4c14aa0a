"""Where a benchmark's results go: the table printed, and OUT.md (quoted by docs/benchmarks.md) + OUT.json."""

from __future__ import annotations

import json
import os


def write_results(out: str, text: str, data: dict) -> None:
    print(text)
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out + ".md", "w") as f:
        f.write(text)
    with open(out + ".json", "w") as f:
        json.dump(data, f, indent=2)
