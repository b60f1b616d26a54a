"""Pieces every training pipeline shares: the per-rank data order, metric sums, the finite-loss check.

Plain functions and one small accumulator; the pipelines (pretrain, finetune) write the loop.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from genomics_bigbird.errors import TrainingError


@dataclass(frozen=True)
class DataPosition:
    """Where the data stream stands: `batches_done` micro-batches of `epoch` already consumed."""

    epoch: int = 0
    batches_done: int = 0


def rank_batches(num_items: int, micro_batch_size: int, *, seed: int, epoch: int, rank: int,
                 world_size: int) -> list[list[int]]:
    """This rank's micro-batches of item indices for one epoch.

    The order is torch's `DistributedSampler` (shuffled from (seed, epoch), every rank the same
    number of items, the tail dropped), so it depends only on these arguments: a resumed run
    and an uninterrupted one see the same items in the same order.
    """
    sampler = DistributedSampler(range(num_items), num_replicas=world_size, rank=rank, shuffle=True,
                                 seed=seed, drop_last=True)
    sampler.set_epoch(epoch)
    indices = list(sampler)
    usable = len(indices) - len(indices) % micro_batch_size
    return [indices[i:i + micro_batch_size] for i in range(0, usable, micro_batch_size)]


def micro_batches(dataset: Dataset, collate_fn: Callable, micro_batch_size: int, *, seed: int, rank: int,
                  world_size: int, start: DataPosition = DataPosition(),
                  num_workers: int = 0) -> Iterator[tuple[DataPosition, Any]]:
    """Endless (position after the batch, collated batch) pairs, epoch after epoch, from `start`.

    `dataset.set_epoch(epoch)` (dynamic masking) is called before each epoch's loader starts, so
    worker processes, created per epoch, see the right epoch too.
    """
    epoch, skip = start.epoch, start.batches_done
    while True:
        batches = rank_batches(len(dataset), micro_batch_size, seed=seed, epoch=epoch, rank=rank,
                               world_size=world_size)
        if not batches:
            raise TrainingError(f"{len(dataset)} training instances cannot fill one micro-batch of "
                                f"{micro_batch_size} on each of {world_size} ranks; build more shards "
                                f"or lower train.micro_batch_size")
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        # its own generator: creating a loader must not draw from the global RNG that dropout uses
        generator = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0]))
        loader = DataLoader(dataset, batch_sampler=batches[skip:], collate_fn=collate_fn,
                            num_workers=num_workers, generator=generator)
        for done, batch in enumerate(loader, start=skip + 1):
            yield DataPosition(epoch, done), batch
        epoch, skip = epoch + 1, 0


def check_finite(loss: torch.Tensor, step: int, hint: str) -> None:
    """Raise TrainingError on every rank when any rank's loss is NaN or infinite.

    The flag is summed over ranks so no rank is left waiting in a collective for one that stopped.
    """
    bad = torch.tensor([0.0 if math.isfinite(loss.item()) else 1.0], device=loss.device)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(bad)
    if bad.item() > 0:
        raise TrainingError(f"the loss became NaN or infinite at step {step}; {hint}")


@dataclass
class MetricSums:
    """Sums over the micro-batches since the last report; `reduce` averages them over all ranks."""

    sums: dict[str, float] = field(default_factory=dict)

    def add(self, **values: float) -> None:
        """Add to named sums (losses weighted 1 per micro-batch, counts as counts)."""
        for name, value in values.items():
            self.sums[name] = self.sums.get(name, 0.0) + float(value)

    def reduce(self, device: torch.device | str = "cpu") -> dict[str, float]:
        """Sum every entry over all ranks (in a fixed key order) and reset."""
        names = sorted(self.sums)
        totals = torch.tensor([self.sums[name] for name in names], dtype=torch.float64, device=device)
        if dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(totals)
        self.sums = {}
        return dict(zip(names, totals.tolist()))
