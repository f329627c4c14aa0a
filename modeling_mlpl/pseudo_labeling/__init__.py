"""Pseudo-labeling at scale (stage 3 of the recipe): label, resume, merge, filter, report.

- :mod:`.labeler`: models, LID routing, length-sorted batches, per-process JSONL shards.
- :mod:`.shards`: PL shard names, id -> process assignment (the rows themselves: :mod:`modeling_mlpl.resumable`).
- :mod:`.alignment`: CTC alignment -> text, per-character/per-word times, confidence.
- :mod:`.merge`: shards -> one filtered `datasets.Dataset` + stats report.
"""

from .alignment import Label, Span, forced_align, greedy_spans, label_from_log_probs, spans_to_label
from .labeler import Item, LabelStats, PseudoLabelConfig, PseudoLabeler, label_dataset, load_model, plan_batches
from .merge import PL_FEATURES, MergeFilters, merge_pseudo_labels, merge_with_stats
from .shards import shard_of

__all__ = [
    "Label",
    "Span",
    "forced_align",
    "greedy_spans",
    "label_from_log_probs",
    "spans_to_label",
    "Item",
    "LabelStats",
    "PseudoLabelConfig",
    "PseudoLabeler",
    "label_dataset",
    "load_model",
    "plan_batches",
    "PL_FEATURES",
    "MergeFilters",
    "merge_pseudo_labels",
    "merge_with_stats",
    "shard_of",
]
