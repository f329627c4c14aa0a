"""Semi-supervised fine-tuning in the style of slimIPL (Likhomanenko et al. 2021): recipe stage 2.

The paper's stage 2 fine-tunes theta "with semi-supervised learning on a target language"; its
authors' slimIPL is that method (docs/paper.md, "Recipe", step 2). What runs here, per process, follows
flashlight's `recipes/slimIPL` ("fixed-pre-cache" type):

1. Updates before `--pl_start_step`: supervised, as any run.
2. At `--pl_start_step` the model's dropout is set to `--pl_dropout` (slimIPL's "dynamic dropout")
   and a cache of `--pl_cache_size` unlabelled recordings is pseudo-labelled by the current model:
   eval mode, no augmentation, greedy CTC over <= 10 s windows (:class:`modeling_mlpl.evaluation.long_form.
   LongFormDecoder` via :class:`modeling_mlpl.pseudo_labeling.PseudoLabeler`), so every PL carries its
   CTC token times. slimIPL fills its cache during its first unlabelled updates without training on
   them; labelling the whole cache in one batched pass gives the same cache at less cost.
3. From then on updates cycle: `--pl_labeled_updates` labelled ones, then `--pl_unlabeled_updates`
   unlabelled ones (slimIPL LibriSpeech-100h: 1 : 4; the demo default 1 : 1). An unlabelled batch
   takes cache entries in a shuffled cyclic order and cuts a random `--crop_seconds` window of each
   recording by its PL's token times (:func:`modeling_mlpl.augment.random_crop`, as stage 4 crops),
   packed to `--max_batch_seconds`; SpecAugment is on for these batches. Each entry, once used, is
   with probability `--pl_cache_refresh_prob` (slimIPL 0.1) replaced by the next recording of the
   unlabelled pool, labelled by the current model. Empty PLs (the model emitted nothing) are not
   trained on, but are used, refreshed and counted like any entry.

Every random draw comes from a key (seed, purpose, rank, counter), never from the global RNG, and the
whole cache state is a small JSON saved in each checkpoint: a killed run resumes to the same result.
Each process has its own cache over its own share of the pool (recording i goes to rank i % world).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from ..audio import AudioDecodeError, load_segment, row_segment
from ..data.specs import DataSpec, DataSpecError, open_dataset
from .arguments import ConfigError
from .train_data import SpeechCollator, load_example

logger = logging.getLogger(__name__)

# Key purposes (the second number of every RNG key), so no two kinds of draw share a stream.
_POOL_ORDER, _CACHE_ORDER, _REFRESH, _CROP, _SPECAUGMENT = 101, 102, 103, 104, 105
# Recordings labelled per forward pass group when the cache is filled (bounds the audio held in memory).
_FILL_CHUNK = 64


def load_unlabeled_pool(spec: DataSpec, languages: list[str] | None):
    """The unlabelled recordings of `--unlabeled_data` (parsed once, by :func:`modeling_mlpl.training.
    arguments.resolve_data`): a dataset with id, audio, language, duration, kept to `languages`."""
    try:
        ds = open_dataset(spec, languages=languages, unlabelled=True, flag="--unlabeled_data")
    except DataSpecError as err:  # names the flag and the spec already
        raise ConfigError(str(err)) from None
    except (ValueError, FileNotFoundError) as err:
        raise ConfigError(f"--unlabeled_data {spec}: {err}") from None
    if spec.kind == "vp":  # the VoxPopuli loader keeps to `languages` itself
        return ds
    if languages:
        wanted = set(languages)
        ds = ds.filter(lambda lang: lang in wanted, input_columns="language")
    return ds


@dataclass
class CacheEntry:
    """One cached pseudo-label: pool row, its text and CTC token times (seconds from the segment start)."""

    row: int
    text: str
    token_times: list[float]


@dataclass
class PLCacheState:
    """Everything a resumed run needs to continue the PL schedule exactly (JSON in each checkpoint)."""

    pool: str = ""  # fingerprint of this process's share of the unlabelled pool (its ids)
    entries: list[CacheEntry] = field(default_factory=list)
    order: list[int] = field(default_factory=list)  # this round's permutation of cache slots
    order_pos: int = 0
    order_round: int = 0
    pool_order: list[int] = field(default_factory=list)  # this round's permutation of the rank's pool rows
    pool_pos: int = 0
    pool_round: int = 0
    draws: int = 0  # cache entries used so far (keys the refresh and crop draws)
    refreshes: int = 0
    labelled: int = 0  # recordings pseudo-labelled so far
    empty_draws: int = 0
    unlabeled_batches: int = 0

    @classmethod
    def from_dict(cls, data: dict) -> "PLCacheState":
        data = dict(data)
        data["entries"] = [CacheEntry(**e) for e in data.get("entries", [])]
        return cls(**data)


@dataclass
class SlimIPLConfig:
    start_step: int
    labeled_updates: int
    unlabeled_updates: int
    cache_size: int
    refresh_prob: float
    dropout: float | None
    crop_seconds: float
    max_batch_seconds: float
    max_batch_size: int | None
    seed: int
    specaugment: bool = True

    def is_unlabeled_update(self, step: int) -> bool:
        """Whether update `step` (0-based) trains on pseudo-labels: after the start, each cycle is
        `labeled_updates` labelled updates followed by `unlabeled_updates` unlabelled ones."""
        if step < self.start_step:
            return False
        return (step - self.start_step) % (self.labeled_updates + self.unlabeled_updates) >= self.labeled_updates

    def summary(self) -> str:
        dropout = "unchanged" if self.dropout is None else f"{self.dropout:g}"
        return (f"slimIPL: PLs from update {self.start_step}, {self.labeled_updates} labelled : "
                f"{self.unlabeled_updates} unlabelled updates, cache {self.cache_size} recordings, refresh "
                f"probability {self.refresh_prob:g}, dropout {dropout}")  # fmt: skip


class SlimIPL:
    """The PL cache of one process and the unlabelled batches drawn from it (see the module docstring)."""

    def __init__(self, config: SlimIPLConfig, pool, processor, model, lang2id: dict[str, int], rank: int = 0,
                 world_size: int = 1, label_batch_seconds: float = 60.0, autocast_dtype: str | None = None):  # fmt: skip
        from ..pseudo_labeling import PseudoLabelConfig, PseudoLabeler

        self.config = config
        self.pool = pool
        self.lang2id = lang2id
        self.rank = rank
        self.model = model
        durations = np.asarray(pool["duration"], dtype=np.float64)
        unknown = sorted(set(pool["language"]) - set(lang2id))
        if unknown:
            raise ConfigError(f"--unlabeled_data has language(s) {unknown} that the model does not know; it knows "
                              f"{sorted(lang2id)} (choose with --unlabeled_languages)")  # fmt: skip
        self.rows = [i for i in range(len(pool)) if i % world_size == rank and np.isfinite(durations[i]) and durations[i] > 0]
        if not self.rows:
            raise ConfigError(f"--unlabeled_data: no readable recordings for process {rank} ({len(pool)} rows)")
        self.collator = SpeechCollator(processor)
        self.labeler = PseudoLabeler(model, processor, PseudoLabelConfig(max_batch_seconds=label_batch_seconds,
                                                                         autocast_dtype=autocast_dtype))  # fmt: skip
        ids = pool["id"]
        self.fingerprint = hashlib.sha1("\n".join(ids[i] for i in self.rows).encode()).hexdigest()[:16]
        self.state = PLCacheState(pool=self.fingerprint)
        self.window = {"refreshes": 0, "draws": 0, "empty": 0}
        self.dropout_applied = False
        self.last_slots: list[int] = []  # cache slots the last unlabelled batch used
        self.label_seconds = 0.0  # wall time spent pseudo-labelling in this process (not part of the state)

    # ------------------------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return asdict(self.state)

    def load_state_dict(self, data: dict) -> None:
        self.state = PLCacheState.from_dict(data)

    def save(self, directory: str) -> None:
        with open(os.path.join(directory, f"pl_cache.rank{self.rank}.json"), "w") as f:
            json.dump(self.state_dict(), f)

    def load(self, directory: str) -> bool:
        """Restore the cache saved in checkpoint `directory`; False when it holds none (saved before PLs)."""
        path = os.path.join(directory, f"pl_cache.rank{self.rank}.json")
        if not os.path.isfile(path):
            return False
        with open(path) as f:
            state = PLCacheState.from_dict(json.load(f))
        if state.pool != self.fingerprint:
            raise ConfigError(f"cannot resume: {path} was made from other unlabelled recordings than --unlabeled_data "
                              "gives now; resume with the same --unlabeled_data/--unlabeled_languages, or pass "
                              "--overwrite_output_dir to start afresh")  # fmt: skip
        self.state = state
        return True

    # ------------------------------------------------------------------------------------ model
    def apply_dropout(self, model) -> None:
        """Set every dropout of `model` to `--pl_dropout` (once per process; again after a resume)."""
        if self.dropout_applied or self.config.dropout is None:
            self.dropout_applied = True
            return
        import torch

        p = self.config.dropout
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = p
            elif hasattr(module, "dropout") and isinstance(module.dropout, float):  # attention's functional dropout
                module.dropout = p
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "conv_dropout"):
            setattr(model.config, name, p)
        self.dropout_applied = True
        logger.info("slimIPL: dropout set to %g", p)

    def _next_pool_rows(self, n: int) -> list[int]:
        rows = []
        while len(rows) < n:
            s = self.state
            if s.pool_pos >= len(s.pool_order):
                rng = np.random.default_rng([self.config.seed, _POOL_ORDER, self.rank, s.pool_round])
                s.pool_order = [self.rows[i] for i in rng.permutation(len(self.rows))]
                s.pool_pos, s.pool_round = 0, s.pool_round + 1
            rows.append(s.pool_order[s.pool_pos])
            s.pool_pos += 1
        return rows

    def label(self, rows: list[int]) -> list[CacheEntry]:
        """Greedy PLs of pool `rows` by the current model (eval mode, no augmentation, whole recordings
        in <= 10 s windows). Unreadable recordings get an empty PL (never trained on)."""
        from ..pseudo_labeling import Item

        entries: dict[int, CacheEntry] = {}
        items, waves, kept = [], [], []
        for r in rows:
            row = self.pool[r]
            try:
                offset, duration = row_segment(row)
                wave = load_segment(row["audio"], offset, duration)
            except AudioDecodeError as err:
                logger.warning("slimIPL: unreadable unlabelled audio %s: %s", row["id"], err)
                wave = np.zeros(0, np.float32)
            if wave.size == 0:
                entries[r] = CacheEntry(r, "", [])
                continue
            items.append(Item(id=row["id"], audio=row["audio"], path=None, offset=offset or 0.0,
                              language=row["language"]))
            waves.append(wave)
            kept.append(r)
        started = time.perf_counter()
        if items:
            was_training = self.model.training
            self.model.eval()
            try:
                records = self.labeler.label(items, waves)
            finally:
                self.model.train(was_training)
            for r, record in zip(kept, records):
                entries[r] = CacheEntry(r, record["text"], [float(t) for t in record["token_times"]])
        self.state.labelled += len(rows)
        self.label_seconds += time.perf_counter() - started
        return [entries[r] for r in rows]

    def fill(self) -> None:
        """Label recordings until the cache holds `cache_size` entries (or the whole share of the pool)."""
        target = min(self.config.cache_size, len(self.rows))
        while len(self.state.entries) < target:
            rows = self._next_pool_rows(min(_FILL_CHUNK, target - len(self.state.entries)))
            self.state.entries += self.label(rows)
        logger.info("slimIPL: cache filled with %d PLs (%d empty); %.1f s of labelling so far", len(self.state.entries),
                    sum(not e.text for e in self.state.entries), self.label_seconds)  # fmt: skip

    # ------------------------------------------------------------------------------------ batches
    def _next_slot(self) -> int:
        s = self.state
        if s.order_pos >= len(s.order):
            rng = np.random.default_rng([self.config.seed, _CACHE_ORDER, self.rank, s.order_round])
            s.order = rng.permutation(len(s.entries)).tolist()
            s.order_pos, s.order_round = 0, s.order_round + 1
        slot = s.order[s.order_pos]
        s.order_pos += 1
        return slot

    def next_batch(self) -> dict:
        """The next unlabelled batch (SpeechCollator's format plus ``kind``, ``augment_key``). Entries used
        are then refreshed with the refresh probability, by the current model."""
        if not self.state.entries:
            self.fill()
        cfg, s = self.config, self.state
        examples, used, longest = [], [], 0.0
        for _ in range(len(s.entries)):
            slot = self._next_slot()
            entry = s.entries[slot]
            used.append(slot)
            draw = s.draws
            s.draws += 1
            if not entry.text:
                s.empty_draws += 1
                self.window["empty"] += 1
            else:
                row = self.pool[entry.row]
                example = load_example(row, entry.text, entry.token_times, self.lang2id[row["language"]],
                                       cfg.crop_seconds, (cfg.seed, _CROP, self.rank, draw))  # fmt: skip
                if example is not None:
                    examples.append(example)
                    longest = max(longest, example["seconds"])
            if examples and self._full(len(examples), longest):
                break
        self.window["draws"] += len(used)
        self.last_slots = used
        self._refresh(used)
        s.unlabeled_batches += 1
        batch = self.collator(examples)
        batch["kind"] = "unlabeled"
        batch["augment_key"] = (cfg.seed, _SPECAUGMENT, self.rank, s.unlabeled_batches)
        batch["specaugment"] = cfg.specaugment
        return batch

    def _full(self, n: int, longest: float) -> bool:
        """Whether one more crop (at most as long as the longest so far) could exceed the batch budget."""
        cfg = self.config
        if cfg.max_batch_size is not None and n >= cfg.max_batch_size:
            return True
        return (n + 1) * longest > cfg.max_batch_seconds

    def _refresh(self, slots: list[int]) -> None:
        """Each used slot, with the refresh probability, gets the next pool recording's PL by the current model."""
        cfg, s = self.config, self.state
        first_draw = s.draws - len(slots)
        chosen = []
        for k, slot in enumerate(slots):
            rng = np.random.default_rng([cfg.seed, _REFRESH, self.rank, first_draw + k])
            if rng.random() < cfg.refresh_prob and slot not in chosen:
                chosen.append(slot)
        if not chosen:
            return
        for slot, entry in zip(chosen, self.label(self._next_pool_rows(len(chosen)))):
            s.entries[slot] = entry
        s.refreshes += len(chosen)
        self.window["refreshes"] += len(chosen)

    # ------------------------------------------------------------------------------------ logging
    def log_fields(self) -> dict:
        """PL cache statistics for the metrics log (refreshes and draws since the last call)."""
        entries = self.state.entries
        lengths = [len(e.text) for e in entries]
        fields = {
            "pl_refreshes": self.window["refreshes"],
            "pl_entries_used": self.window["draws"],
            "pl_empty_used": self.window["empty"],
            "pl_cache_entries": len(entries),
            "pl_mean_length": float(np.mean(lengths)) if lengths else 0.0,
            "pl_empty_fraction": float(np.mean([n == 0 for n in lengths])) if lengths else 0.0,
        }
        self.window = {"refreshes": 0, "draws": 0, "empty": 0}
        return fields

    def summary(self) -> dict:
        """Totals for train_results.json."""
        s = self.state
        lengths = [len(e.text) for e in s.entries]
        return {"settings": self.config.summary(), "recordings_in_pool": len(self.rows), "cache_entries": len(s.entries),
                "refreshes": s.refreshes, "recordings_labelled": s.labelled, "entries_used": s.draws,
                "empty_entries_used": s.empty_draws, "unlabeled_batches": s.unlabeled_batches,
                "labelling_seconds_this_run": round(self.label_seconds, 2), "mean_pl_length": float(np.mean(lengths)) if lengths else 0.0,
                "empty_fraction": float(np.mean([n == 0 for n in lengths])) if lengths else 0.0}  # fmt: skip


__all__ = ["SlimIPL", "SlimIPLConfig", "PLCacheState", "CacheEntry", "load_unlabeled_pool"]
