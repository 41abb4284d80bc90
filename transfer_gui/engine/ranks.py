"""What one process of a torchrun job shares with the others: a :class:`Dist` handle for the
collectives the engine uses (its single-process form :data:`SINGLE` does nothing) and the
sampler that gives every rank its share of each batch.

Equal results: the sampler draws one global permutation per epoch (the same one a single
process draws) and gives rank r every world-th sample of it, so the union of the ranks'
k-th batches is the single process's k-th batch. With ``train.batch_size`` as the global
batch, DDP's gradient averaging then gives the same update as one process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as tdist
from torch.utils.data import Sampler


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.active:
            tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
        return t

    def gather_sharded(self, part: torch.Tensor, n: int) -> torch.Tensor:
        """Reassemble rows computed as ``rows[rank::world]`` on every rank into all ``n`` rows."""
        if not self.active:
            return part
        sizes = [len(range(r, n, self.world)) for r in range(self.world)]
        width = max(sizes)
        padded = torch.zeros((width, *part.shape[1:]), dtype=part.dtype, device=part.device)
        padded[: len(part)] = part
        pieces = [torch.empty_like(padded) for _ in range(self.world)]
        tdist.all_gather(pieces, padded)
        full = torch.empty((n, *part.shape[1:]), dtype=part.dtype, device=part.device)
        for r, (piece, size) in enumerate(zip(pieces, sizes)):
            full[r::self.world] = piece[:size]
        return full

    def gather_objects(self, items: list) -> list:
        if not self.active:
            return items
        out: list = [None] * self.world
        tdist.all_gather_object(out, items)
        return [x for part in out for x in part]

    def broadcast_object(self, obj):
        if not self.active:
            return obj
        box = [obj]
        tdist.broadcast_object_list(box, src=0)
        return box[0]


SINGLE = Dist()


class ShardedSampler(Sampler[int]):
    """Per epoch: one permutation (seeded by seed and epoch), rank r takes every world-th item.

    Training drops the last ``n % world`` items of the permutation so every rank runs the same
    number of equal batches (DDP would hang otherwise); validation keeps every item once.
    """

    def __init__(self, n: int, shuffle: bool, seed: int, dist: Dist = SINGLE, drop_uneven: bool = True,
                 weights: torch.Tensor | None = None):
        self.n, self.shuffle, self.seed, self.dist = n, shuffle, seed, dist
        self.drop_uneven = drop_uneven
        self.weights = weights  # class-balancing: draw n indices with these weights, with replacement
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> list[int]:
        if self.shuffle and self.weights is not None and self.n:
            g = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
            order = torch.multinomial(self.weights, self.n, replacement=True, generator=g).tolist()
        elif self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        if self.drop_uneven and self.dist.world > 1:
            order = order[: self.n - self.n % self.dist.world]
        return order[self.dist.rank::self.dist.world]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices())

    def __len__(self) -> int:
        n = self.n - self.n % self.dist.world if self.drop_uneven and self.dist.world > 1 else self.n
        return len(range(self.dist.rank, n, self.dist.world))
