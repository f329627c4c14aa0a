"""Length-bucketed batches by seconds of audio, the paper's batching (~35 s of audio per GPU).

Why by seconds: CTC batches are padded to their longest utterance, so a fixed number of
utterances per batch either wastes memory on short ones or runs out of it on long ones. Sorting by
duration and filling each batch up to a padded-seconds budget keeps memory flat and padding small.

Properties (tested in tests/test_data_sampler.py):
- padded seconds of a batch (``len(batch) * max duration``) never exceed `max_batch_seconds`;
- deterministic for (seed, epoch); batch composition and order change with the epoch;
- distributed: every rank gets the same number of batches, the ranks' batches are disjoint and,
  with ``drop_last=False``, together cover every sample exactly once per epoch. To make the batch
  count divisible by the number of ranks, the largest batches are split in two (a split never
  raises padding); no sample is repeated. With ``drop_last=True`` the surplus batches (a
  different, random few each epoch) are dropped instead;
- resumable: ``state_dict()``/``load_state_dict()`` continue mid-epoch with no batch repeated or
  skipped.
A sample longer than `max_batch_seconds` cannot fit any batch: it is left out with a warning and
listed in ``dropped_indices`` (filter such audio, or crop it, before training).
"""

from __future__ import annotations

import hashlib
import heapq
import logging
from typing import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

logger = logging.getLogger(__name__)


def padding_fraction(batches: Sequence[Sequence[int]], durations: Sequence[float]) -> float:
    """Share of padded audio that is padding: 1 - real seconds / sum(len(batch) * max duration)."""
    d = np.asarray(durations, dtype=np.float64)
    real = padded = 0.0
    for b in batches:
        if len(b):
            bd = d[np.asarray(b)]
            real += float(bd.sum())
            padded += len(b) * float(bd.max())
    return 0.0 if padded == 0 else 1.0 - real / padded


def pack_batches(
    order: Sequence[int],
    durations: Sequence[float] | np.ndarray,
    max_batch_seconds: float,
    max_batch_size: int | None = None,
    padded: bool = True,
) -> list[list[int]]:
    """Greedily fill batches of indices in the given `order` while the batch's cost stays within
    `max_batch_seconds`; the one "seconds per batch" packer (training sampler, long-form windows,
    pseudo-labelling batches).

    padded=True: a batch costs ``len(batch) * max duration`` (what a padded forward pass holds in
    memory); padded=False: the sum of its durations (when each item is run on its own terms, e.g.
    recordings cut into windows later). `durations` may be in any unit that matches the budget
    (seconds, frames). An item over the budget on its own still gets a batch of its own (callers
    that cannot run one filter it first, as :class:`LengthBucketBatchSampler` does); no input, no batch.
    """
    batches: list[list[int]] = []
    current: list[int] = []
    current_max = current_sum = 0.0
    for i in order:
        d = float(durations[i])
        new_max, new_sum = max(current_max, d), current_sum + d
        cost = (len(current) + 1) * new_max if padded else new_sum
        full = max_batch_size is not None and len(current) >= max_batch_size
        if current and (full or cost > max_batch_seconds):
            batches.append(current)
            current, new_max, new_sum = [], d, d
        current.append(int(i))
        current_max, current_sum = new_max, new_sum
    if current:
        batches.append(current)
    return batches


def random_batches(
    durations: Sequence[float], max_batch_seconds: float, seed: int = 0, max_batch_size: int | None = None
) -> list[list[int]]:
    """The naive baseline: shuffle, then fill batches to the same padded-seconds budget."""
    d = np.asarray(durations, dtype=np.float64)
    order = np.random.default_rng(seed).permutation(len(d))
    return pack_batches(order[d[order] <= max_batch_seconds], d, max_batch_seconds, max_batch_size)


class LengthBucketBatchSampler(Sampler[list[int]]):
    """Yield lists of dataset indices; use as ``DataLoader(ds, batch_sampler=sampler)``.

    Args:
        durations: seconds per sample (e.g. ``dataset["duration"]``).
        max_batch_seconds: budget of padded audio per batch on one rank.
        num_replicas, rank: data-parallel world size and this process's rank.
        seed: with the epoch, fixes batches and their order (same on every rank).
        shuffle: random batch order and composition per epoch; ``False`` gives batches in
            ascending length (evaluation, pseudo-labelling).
        drop_last: drop surplus batches instead of splitting batches (see module docstring).
        max_batch_size: optional cap on utterances per batch.
        jitter: relative noise on durations before sorting, so that batch composition varies
            between epochs; padding grows with it (about ``jitter``), 0.02 keeps it < 5 %.
    """

    def __init__(
        self,
        durations: Sequence[float],
        max_batch_seconds: float,
        num_replicas: int = 1,
        rank: int = 0,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        max_batch_size: int | None = None,
        jitter: float = 0.02,
    ) -> None:
        if max_batch_seconds <= 0:
            raise ValueError(f"max_batch_seconds must be > 0, got {max_batch_seconds}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} not in [0, {num_replicas})")
        if max_batch_size is not None and max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self.durations = np.asarray(durations, dtype=np.float64)
        if self.durations.ndim != 1 or not np.all(np.isfinite(self.durations)) or np.any(self.durations < 0):
            raise ValueError("durations must be a 1-D sequence of finite seconds >= 0")
        self.max_batch_seconds = float(max_batch_seconds)
        self.num_replicas, self.rank, self.seed = int(num_replicas), int(rank), int(seed)
        self.shuffle, self.drop_last, self.max_batch_size, self.jitter = shuffle, drop_last, max_batch_size, jitter
        too_long = self.durations > self.max_batch_seconds
        self.dropped_indices = np.flatnonzero(too_long).tolist()
        self._kept = np.flatnonzero(~too_long)
        if self.dropped_indices:
            logger.warning(
                "LengthBucketBatchSampler: %d sample(s) longer than max_batch_seconds=%.1f are left out (e.g. index %d: %.1f s)",
                len(self.dropped_indices), self.max_batch_seconds, self.dropped_indices[0], self.durations[self.dropped_indices[0]],
            )
        if len(self._kept) < self.num_replicas:
            raise ValueError(f"{len(self._kept)} usable samples cannot feed {self.num_replicas} ranks")
        self.epoch = 0
        self._start = 0  # batches of this epoch already consumed (resume)
        self._yielded = 0
        self._cache: tuple[int, list[list[int]]] | None = None

    # --- planning -----------------------------------------------------------------------------
    def global_batches(self, epoch: int | None = None) -> list[list[int]]:
        """All ranks' batches of `epoch` in yield order (rank r takes items r, r+R, ...)."""
        epoch = self.epoch if epoch is None else epoch
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        d = self.durations
        idx = self._kept
        rng = np.random.default_rng([self.seed, epoch])
        if self.shuffle:
            noisy = d[idx] * np.exp(self.jitter * rng.uniform(-1.0, 1.0, len(idx)))
            order = idx[np.argsort(noisy, kind="stable")]
        else:
            order = idx[np.argsort(d[idx], kind="stable")]
        batches = pack_batches(order, d, self.max_batch_seconds, self.max_batch_size)
        batches = self._make_divisible(batches)
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        if self.drop_last and len(batches) % self.num_replicas:
            batches = batches[: len(batches) - len(batches) % self.num_replicas]
        self._cache = (epoch, batches)
        return batches

    def _make_divisible(self, batches: list[list[int]]) -> list[list[int]]:
        """Split the largest batches until every rank can get the same number (no duplicates)."""
        missing = -len(batches) % self.num_replicas
        if missing == 0 or self.drop_last:
            return batches
        heap = [(-len(b), i) for i, b in enumerate(batches)]
        heapq.heapify(heap)
        batches = list(batches)
        for _ in range(missing):
            size, i = heapq.heappop(heap)
            if -size < 2:  # only singletons left: fewer samples than needed to split
                raise ValueError("too few samples to give every rank the same number of batches; use drop_last=True")
            b = batches[i]
            half = len(b) // 2
            batches[i] = b[:half]
            batches.append(b[half:])
            heapq.heappush(heap, (-len(batches[i]), i))
            heapq.heappush(heap, (-len(batches[-1]), len(batches) - 1))
        return batches

    def rank_batches(self, epoch: int | None = None) -> list[list[int]]:
        """This rank's batches of `epoch`, from its start (resume offset not applied)."""
        return self.global_batches(epoch)[self.rank :: self.num_replicas]

    # --- Sampler protocol --------------------------------------------------------------------
    def __iter__(self) -> Iterator[list[int]]:
        batches = self.rank_batches()
        start, self._start = self._start, 0
        self._yielded = start
        for b in batches[start:]:
            self._yielded += 1
            yield list(b)

    def __len__(self) -> int:
        """Batches the next ``iter()`` yields (fewer than a full epoch right after a resume)."""
        return len(self.rank_batches()) - self._start

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (call before each epoch, as with DistributedSampler). Setting the epoch a
        resumed state is in keeps the resume position."""
        if epoch != self.epoch:
            self._start = 0
            self._yielded = 0
        self.epoch = int(epoch)

    def padding_fraction(self, epoch: int | None = None) -> float:
        """Padding share over all ranks' batches of `epoch` (see module-level :func:`padding_fraction`)."""
        return padding_fraction(self.global_batches(epoch), self.durations)

    # --- resume --------------------------------------------------------------------------------
    def _fingerprint(self) -> str:
        h = hashlib.sha1(self.durations.tobytes())
        h.update(repr((self.max_batch_seconds, self.max_batch_size, self.shuffle, self.drop_last, self.jitter)).encode())
        return h.hexdigest()

    def state_dict(self, batches_consumed: int | None = None) -> dict:
        """Position in the epoch. DataLoader workers prefetch, so the sampler may have handed out
        more batches than the training loop used: pass the loop's own count as
        `batches_consumed` (batches of this epoch, including those before a previous resume)."""
        return {
            "epoch": self.epoch,
            "batches_consumed": self._yielded if batches_consumed is None else int(batches_consumed),
            "seed": self.seed,
            "num_replicas": self.num_replicas,
            "fingerprint": self._fingerprint(),
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("fingerprint") != self._fingerprint() or state.get("num_replicas") != self.num_replicas:
            raise ValueError("sampler state is from different durations, budget or world size; cannot resume mid-epoch")
        if state.get("seed") != self.seed:
            raise ValueError(f"sampler state has seed {state.get('seed')}, this sampler {self.seed}")
        self.epoch = int(state["epoch"])
        self._start = min(int(state["batches_consumed"]), len(self.rank_batches()))
        self._yielded = self._start
