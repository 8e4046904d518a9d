"""The in-memory loader: full coverage, seeded shuffling, DDP shards and resumable position."""

import torch

from src.datamodules.in_memory_loader import InMemoryLoader


def epoch_indices(loader: InMemoryLoader) -> list[int]:
    return [int(i) for (batch,) in loader for i in batch]


def test_each_epoch_covers_every_sample_once_in_a_new_seeded_order() -> None:
    data = torch.arange(10)
    loader = InMemoryLoader((data,), batch_size=3, shuffle=True, seed=1)
    assert len(loader) == 4
    first, second = epoch_indices(loader), epoch_indices(loader)
    assert sorted(first) == sorted(second) == list(range(10))
    assert first != second
    again = InMemoryLoader((data,), batch_size=3, shuffle=True, seed=1)
    assert epoch_indices(again) == first and epoch_indices(again) == second


def test_unshuffled_batches_are_slices_in_order_and_drop_last_works() -> None:
    loader = InMemoryLoader((torch.arange(10),), batch_size=4, drop_last=True)
    assert [b.tolist() for (b,) in loader] == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_ddp_ranks_get_disjoint_shards_that_cover_the_data() -> None:
    data = torch.arange(10)
    shards = [epoch_indices(InMemoryLoader((data,), 2, shuffle=True, seed=3, rank=r, world_size=2)) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 5
    assert sorted(shards[0] + shards[1]) == list(range(10))


def test_an_iterator_that_is_never_advanced_does_not_use_up_an_epoch() -> None:
    loader = InMemoryLoader((torch.arange(6),), batch_size=2, shuffle=True, seed=0)
    iter(loader)
    first = epoch_indices(loader)
    assert loader.epoch == 0 and first == epoch_indices(InMemoryLoader((torch.arange(6),), 2, shuffle=True, seed=0))


def test_a_position_mid_epoch_replays_exactly_the_remaining_batches() -> None:
    data = torch.arange(12)
    reference = InMemoryLoader((data,), batch_size=3, shuffle=True, seed=5)
    epoch_indices(reference)
    second_epoch = [b.tolist() for (b,) in reference]
    resumed = InMemoryLoader((data,), batch_size=3, shuffle=True, seed=5, position=lambda: (1, 1))
    assert [b.tolist() for (b,) in resumed] == second_epoch[1:]
