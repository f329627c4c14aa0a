import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from modeling_mlpl.data.sampler import LengthBucketBatchSampler, pack_batches, padding_fraction, random_batches


def cv_like(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(np.log(4.5), 0.35, n), 1.0, 10.0)


DURATIONS = cv_like()


def all_ranks(world, epoch=0, **kw):
    out = []
    for rank in range(world):
        s = LengthBucketBatchSampler(DURATIONS, 35.0, num_replicas=world, rank=rank, **kw)
        s.set_epoch(epoch)
        out.append(list(s))
    return out


def test_padded_seconds_never_exceed_the_budget():
    for b in LengthBucketBatchSampler(DURATIONS, 35.0, max_batch_size=6):
        assert len(b) * DURATIONS[b].max() <= 35.0
        assert len(b) <= 6


@pytest.mark.parametrize("world", [1, 2, 3, 8])
@pytest.mark.parametrize("epoch", [0, 1])
def test_ranks_get_equal_disjoint_shards_covering_every_sample(world, epoch):
    per_rank = all_ranks(world, epoch)
    assert len({len(batches) for batches in per_rank}) == 1
    flat = [i for batches in per_rank for b in batches for i in b]
    assert sorted(flat) == list(range(len(DURATIONS)))  # nothing lost, nothing duplicated


def test_drop_last_drops_whole_batches_only():
    per_rank = all_ranks(3, drop_last=True)
    assert len({len(b) for b in per_rank}) == 1
    flat = [i for batches in per_rank for b in batches for i in b]
    assert len(flat) == len(set(flat)) and len(flat) <= len(DURATIONS)


def test_deterministic_per_seed_and_epoch_and_different_across_epochs():
    assert all_ranks(2, epoch=3, seed=7) == all_ranks(2, epoch=3, seed=7)
    assert all_ranks(2, epoch=3, seed=7) != all_ranks(2, epoch=4, seed=7)
    assert all_ranks(2, epoch=3, seed=7) != all_ranks(2, epoch=3, seed=8)


def test_padding_waste_is_below_five_percent_and_far_below_random_batching():
    s = LengthBucketBatchSampler(DURATIONS, 35.0)
    ours = s.padding_fraction()
    naive = padding_fraction(random_batches(DURATIONS, 35.0, seed=0), DURATIONS)
    assert ours < 0.05
    assert naive > 4 * ours


def test_unshuffled_batches_come_in_length_order():
    s = LengthBucketBatchSampler(DURATIONS, 35.0, shuffle=False)
    maxima = [DURATIONS[b].max() for b in s]
    assert maxima == sorted(maxima)


@pytest.mark.parametrize("world,stop", [(1, 7), (2, 0), (3, 11)])
def test_resume_mid_epoch_repeats_and_skips_nothing(world, stop):
    for rank in range(world):
        ref = LengthBucketBatchSampler(DURATIONS, 35.0, num_replicas=world, rank=rank, seed=3)
        ref.set_epoch(2)
        full = list(ref)
        s = LengthBucketBatchSampler(DURATIONS, 35.0, num_replicas=world, rank=rank, seed=3)
        s.set_epoch(2)
        it = iter(s)
        seen = [next(it) for _ in range(stop)]
        state = s.state_dict()
        resumed = LengthBucketBatchSampler(DURATIONS, 35.0, num_replicas=world, rank=rank, seed=3)
        resumed.load_state_dict(state)
        resumed.set_epoch(2)  # the training loop sets the epoch again: the position is kept
        assert len(resumed) == len(full) - stop
        assert seen + list(resumed) == full
        resumed.set_epoch(3)  # the next epoch starts from its beginning
        assert len(list(resumed)) == len(resumed.rank_batches(3))


def test_resume_with_the_loop_count_when_workers_prefetch():
    s = LengthBucketBatchSampler(DURATIONS, 35.0)
    loader = DataLoader(torch.arange(len(DURATIONS)), batch_sampler=s, num_workers=0)
    consumed = []
    for i, batch in enumerate(loader):
        consumed.append(batch.tolist())
        if i == 4:
            break
    state = s.state_dict(batches_consumed=len(consumed))
    resumed = LengthBucketBatchSampler(DURATIONS, 35.0)
    resumed.load_state_dict(state)
    assert consumed + list(resumed) == list(LengthBucketBatchSampler(DURATIONS, 35.0))


def test_resume_refuses_a_different_dataset():
    state = LengthBucketBatchSampler(DURATIONS, 35.0).state_dict()
    with pytest.raises(ValueError, match="different"):
        LengthBucketBatchSampler(DURATIONS[:-1], 35.0).load_state_dict(state)


def test_too_long_samples_are_left_out_with_a_warning(caplog):
    d = np.array([1.0, 2.0, 50.0, 3.0])
    s = LengthBucketBatchSampler(d, 10.0)
    assert s.dropped_indices == [2]
    assert sorted(i for b in s for i in b) == [0, 1, 3]
    assert "longer than max_batch_seconds" in caplog.text


def test_invalid_arguments_are_rejected():
    with pytest.raises(ValueError):
        LengthBucketBatchSampler([1.0, 2.0], 0)
    with pytest.raises(ValueError):
        LengthBucketBatchSampler([1.0, 2.0], 10, num_replicas=2, rank=2)
    with pytest.raises(ValueError):
        LengthBucketBatchSampler([1.0], 10, num_replicas=2, rank=0)


def test_pack_batches_of_no_items_is_no_batches():
    assert pack_batches([], [], 10.0) == []
    assert pack_batches([], [], 10.0, padded=False) == []


@pytest.mark.parametrize("padded", [True, False])
def test_pack_batches_gives_an_item_over_the_budget_a_batch_of_its_own(padded):
    durations = [3.0, 12.0, 2.0, 4.0]
    assert pack_batches([0, 1, 2, 3], durations, 10.0, padded=padded) == [[0], [1], [2, 3]]


def test_pack_batches_padded_counts_the_longest_item_per_slot():
    durations = [4.0, 1.0, 1.0, 1.0]
    # padded: 2 x 4 s = 8 s fits 10 s, a third slot would hold 12 s; summed, 4 + 1 + 1 + 1 = 7 s fits.
    assert pack_batches([0, 1, 2, 3], durations, 10.0) == [[0, 1], [2, 3]]
    assert pack_batches([0, 1, 2, 3], durations, 10.0, padded=False) == [[0, 1, 2, 3]]


def test_pack_batches_keeps_the_given_order_and_caps_the_batch_size():
    durations = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    batches = pack_batches([4, 2, 0, 1, 3], durations, 100.0, max_batch_size=2, padded=False)
    assert batches == [[4, 2], [0, 1], [3]]


def test_pack_batches_fills_a_batch_up_to_exactly_the_budget():
    assert pack_batches([0, 1], [5.0, 5.0], 10.0) == [[0, 1]]
    assert pack_batches([0, 1, 2], [5.0, 3.0, 2.0], 10.0, padded=False) == [[0, 1, 2]]
