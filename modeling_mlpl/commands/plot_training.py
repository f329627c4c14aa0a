"""Plot learning curves of one or more training runs: training loss and mean dev CER against updates.

    python run_scripts/plot_training.py RUN_DIR [RUN_DIR ...] [--output_dir DIR]

Reads each run's `log.jsonl` (written by run_scripts/train.py) and writes DIR/training_curves.png, by
default into the first run's folder (next to its log, not into the current folder); the path written is
printed. Per-language dev CER is drawn dashed when `--per_language` is given.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from modeling_mlpl.command_line import ArgumentParser, UserError, add_output_dir, ensure_output_dir, ensure_output_file
from modeling_mlpl.training.tracking import LOG_FILE, read_log

PLOT_FILE = "training_curves.png"


def plot_runs(run_dirs: list[str], out: str, per_language: bool = False) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_cer) = plt.subplots(1, 2, figsize=(11, 4))
    for run in run_dirs:
        records = read_log(run)
        name = os.path.basename(os.path.normpath(run))
        train = [r for r in records if r["type"] == "train"]
        evals = [r for r in records if r["type"] == "eval"]
        if train:
            ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train], label=name)
        if evals:
            line = ax_cer.plot([r["step"] for r in evals], [r["mean_cer"] for r in evals], marker="o", label=f"{name} mean")
            if per_language:
                langs = sorted({lang for r in evals for lang in r["per_language"] if lang != "all"})
                for lang in langs:
                    points = [(r["step"], r["per_language"][lang]["cer"]) for r in evals if lang in r["per_language"]]
                    ax_cer.plot(*zip(*points), linestyle="--", color=line[0].get_color(), alpha=0.5, label=f"{name} {lang}")
    ax_loss.set(xlabel="update", ylabel="training loss (CTC + gamma LID)", title="loss")
    ax_cer.set(xlabel="update", ylabel="CER (greedy)", title="dev CER")
    for ax in (ax_loss, ax_cer):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def output_path(args) -> Path:
    """The PNG to write, its folder checked before plotting (a deprecated --out FILE names the file)."""
    if args.output_file:
        return ensure_output_file(args.output_file, "--out")
    first = Path(args.runs[0])
    folder = args.output_dir or (first if first.is_dir() else first.parent)
    return ensure_output_dir(folder) / PLOT_FILE


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")  # read_log's warnings
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+", help="training output folders (or their log.jsonl files)")
    add_output_dir(parser, f"folder for {PLOT_FILE} (default: the first run's folder)", old_file="--out")
    parser.add_argument("--per_language", action="store_true", help="also draw each language's dev CER")
    args = parser.parse_args(argv)
    for run in args.runs:
        path = os.path.join(run, LOG_FILE) if os.path.isdir(run) else run
        if not os.path.isfile(path):
            parser.error(f"no training log at {path}")
    try:
        out = output_path(args)
        written = plot_runs(args.runs, str(out), args.per_language)
    except UserError as err:
        print(f"plot_training.py: error: {err}", file=sys.stderr)
        return 2
    except (ValueError, KeyError) as err:  # a line that is not a record (read_log skips a torn last one)
        print(f"plot_training.py: error: damaged training log: {err}; nothing plotted", file=sys.stderr)
        return 2
    print(written)  # the only line on stdout: where the plot went (scripts can capture it)
    return 0


if __name__ == "__main__":
    sys.exit(main())
