"""Training logs: one JSONL file (the record plots and tests read) and, optionally, TensorBoard.

Only the main process writes. On resume the JSONL lines after the resumed update are dropped: those
updates are trained again, and the log must describe one run, not two overlapping ones.
"""

from __future__ import annotations

import json
import logging
import os
import time

logger = logging.getLogger(__name__)

LOG_FILE = "log.jsonl"


def read_log(output_dir_or_file: str) -> list[dict]:
    """Records of a training log (a run's output_dir or the log.jsonl itself).

    A last line without its newline is a write cut short by a killed run: it is skipped with a warning
    (the run resumes from a checkpoint before it anyway). A complete line that is not JSON cannot come
    from the trainer and raises ValueError naming the file and line.
    """
    path = output_dir_or_file
    if os.path.isdir(path):
        path = os.path.join(path, LOG_FILE)
    records = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                if not line.endswith("\n"):
                    logger.warning("%s: skipped the partial last line %d (a run killed while writing it)", path, lineno)
                    break
                raise ValueError(f"{path}:{lineno} is not a JSON record ({err.msg})") from None
    return records


class MetricsLog:
    def __init__(self, output_dir: str, enabled: bool = True, tensorboard: bool = True, truncate_after: int | None = None):
        self.enabled = enabled
        self.path = os.path.join(output_dir, LOG_FILE)
        self.writer = None
        if not enabled:
            return
        if os.path.exists(self.path):
            kept = [r for r in read_log(self.path) if truncate_after is not None and r.get("step", 0) <= truncate_after]
            with open(self.path, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(r) + "\n" for r in kept)
        self.file = open(self.path, "a", encoding="utf-8")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(os.path.join(output_dir, "runs"), purge_step=truncate_after or None)
            except ImportError:  # pragma: no cover - tensorboard is a dependency
                logger.warning("tensorboard is not installed: logging to %s only", self.path)

    def _write(self, record: dict) -> None:
        self.file.write(json.dumps({**record, "time": time.time()}) + "\n")
        self.file.flush()

    def train(self, step: int, record: dict) -> None:
        if not self.enabled:
            return
        self._write({"type": "train", "step": step, **record})
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.writer.add_scalar(f"train/{key}", value, step)
        logger.info("update %d: %s", step, ", ".join(f"{k} {v:.4g}" for k, v in record.items()
                                                     if isinstance(v, float)))  # fmt: skip

    def eval(self, step: int, result: dict) -> None:
        if not self.enabled:
            return
        summary = {k: v for k, v in result.items() if k != "predictions"}
        self._write({"type": "eval", "step": step, **summary})
        if self.writer is not None:
            for key in ("mean_cer", "mean_wer", "lid_accuracy"):
                self.writer.add_scalar(f"dev/{key}", result[key], step)
            for lang, entry in result["per_language"].items():
                self.writer.add_scalar(f"dev_cer/{lang}", entry["cer"], step)
        per_lang = " ".join(f"{lang} {e['cer']:.3f}" for lang, e in result["per_language"].items() if lang != "all")
        logger.info("update %d dev: mean CER %.4f, WER %.4f, LID acc %.3f (CER %s)", step, result["mean_cer"],
                    result["mean_wer"], result["lid_accuracy"], per_lang)  # fmt: skip

    def text(self, tag: str, message: str) -> None:
        if self.enabled:
            self._write({"type": "text", "tag": tag, "step": 0, "message": message})

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            if self.writer is not None:
                self.writer.close()


__all__ = ["MetricsLog", "read_log", "LOG_FILE"]
