"""Samplers whose order depends on (seed, epoch) only, and exact (unpadded) evaluation sharding.

The training order of an epoch is a function of ``(seed, epoch)`` only, so a
resumed run sees the same batches as an uninterrupted one; the epoch is set with ``set_data_epoch``
(deliberately **not** ``set_epoch``, which Lightning Fabric's loader wrapper would call with its own
``iter()`` count that restarts at 0 after a resume). Evaluation shards without padding so that each
sample is counted exactly once.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

__all__ = ["TrainSampler", "EvalShardSampler"]


class TrainSampler(Sampler[int]):
    """Seeded shuffling sampler sharded over ranks; order = f(seed, epoch).

    Each epoch draws one global permutation of the ``N`` indices from ``torch.Generator`` seeded with
    ``seed + epoch * 1_000_003``; it is cut to ``N - N % world_size`` entries and rank ``r`` takes
    positions ``r, r + W, r + 2W, ...``. With a per-rank batch ``b``, the union of the ranks' i-th
    batches is therefore exactly the i-th batch of ``W·b`` a single process would draw.

    Args:
        num_samples: dataset length ``N``.
        seed: base seed.
        rank: this process's rank.
        world_size: number of processes ``W``.
        shuffle: False keeps the natural order (still sharded).

    Raises:
        ValueError: ``rank`` outside ``[0, world_size)`` or ``num_samples < world_size``.

    Deviations:
        Unlike ``DistributedSampler`` it drops up to ``W - 1`` trailing samples of the permutation
        instead of padding with repeats, so no image is seen twice in an epoch.
    """

    def __init__(
        self, num_samples: int, *, seed: int = 0, rank: int = 0, world_size: int = 1, shuffle: bool = True
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        if num_samples < world_size:
            raise ValueError(f"{num_samples} samples cannot be sharded over {world_size} processes")
        self.num_samples, self.seed, self.rank, self.world_size = num_samples, seed, rank, world_size
        self.shuffle, self.data_epoch = shuffle, 0

    def set_data_epoch(self, epoch: int) -> None:
        """Select the epoch whose permutation :meth:`__iter__` yields next."""
        self.data_epoch = int(epoch)

    def indices(self, epoch: int | None = None) -> list[int]:
        """This rank's indices for ``epoch`` (default: the current data epoch)."""
        e = self.data_epoch if epoch is None else epoch
        if self.shuffle:
            g = torch.Generator().manual_seed(int(self.seed) + int(e) * 1_000_003)
            perm = torch.randperm(self.num_samples, generator=g).tolist()
        else:
            perm = list(range(self.num_samples))
        total = self.num_samples - self.num_samples % self.world_size
        return perm[self.rank : total : self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices())

    def __len__(self) -> int:
        return self.num_samples // self.world_size


class EvalShardSampler(Sampler[int]):
    """Rank ``r`` of ``W`` takes indices ``r, r + W, ...`` of ``N``: no padding, no repeats.

    Shards differ in length by at most one; the loop sums ``(loss, correct@1, correct@5, count)`` and
    all-reduces them, so the total count equals ``N`` exactly.

    Args:
        num_samples: dataset length ``N``.
        rank: this process's rank.
        world_size: number of processes ``W``.
    """

    def __init__(self, num_samples: int, *, rank: int = 0, world_size: int = 1):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.num_samples, self.rank, self.world_size = num_samples, rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.num_samples, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.num_samples, self.world_size))
