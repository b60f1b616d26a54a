"""Fine-tuning pieces: strand augmentation of labeled windows, the step count, one classification step.

The `gbb finetune` pipeline writes the loop; these are the parts a user's own fine-tuning script
would take as they are.
"""
from __future__ import annotations

import math
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset

from genomics_bigbird.train.loop import DataPosition, MetricSums, check_finite
from genomics_bigbird.train.losses import bce_with_pos_weight

# BigBird F.3 up-weights the sparse chromatin positives by 8; promoter classes are balanced.
DEFAULT_POS_WEIGHT = {"chromatin": 8.0, "promoter": 1.0}


class StrandAugmented(Dataset):
    """Each window read on a random strand: item i of epoch e comes from `reverse` when a coin from
    (seed, epoch, i) says so, else from `forward` (two datasets over the same rows).

    The coin depends only on its arguments, so a resumed run draws the same strands.
    """

    def __init__(self, forward: Dataset, reverse: Dataset, seed: int):
        if len(forward) != len(reverse):
            raise ValueError(f"forward ({len(forward)}) and reverse ({len(reverse)}) datasets differ in length")
        self.forward = forward
        self.reverse = reverse
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def is_reverse(self, item: int) -> bool:
        """Whether item `item` is read on the reverse strand this epoch."""
        return bool(np.random.default_rng([self.seed, self.epoch, item]).random() < 0.5)

    def __len__(self) -> int:
        return len(self.forward)

    def __getitem__(self, item: int) -> Any:
        return (self.reverse if self.is_reverse(item) else self.forward)[item]


def steps_for_epochs(epochs: float, num_examples: int, global_batch_size: int) -> int:
    """Optimizer steps that pass over `num_examples` training windows `epochs` times (at least 1)."""
    if epochs <= 0:
        raise ValueError(f"epochs must be positive, got {epochs}")
    return max(1, math.ceil(epochs * num_examples / global_batch_size))


def classification_step(engine, batches: Iterator[tuple[DataPosition, dict]], accumulation: int,
                        sums: MetricSums, step: int, device: torch.device, pos_weight: float,
                        nan_hint: str) -> DataPosition:
    """One optimizer step of a sequence classifier: `accumulation` micro-batches, positive-weighted BCE.

    Each batch holds `input_ids`, `attention_mask` (batch, length) and `labels` (batch, features).
    Returns the data position after the last micro-batch; NaN/inf loss raises TrainingError.
    """
    position = None
    for _ in range(accumulation):
        position, batch = next(batches)
        input_ids = batch["input_ids"].to(device, non_blocking=True)
        attention_mask = batch["attention_mask"].to(device, non_blocking=True)
        labels = batch["labels"].to(device, non_blocking=True)
        logits = engine(input_ids, attention_mask)  # (batch, features)
        loss = bce_with_pos_weight(logits, labels, pos_weight)
        check_finite(loss.detach(), step, nan_hint)
        engine.backward(loss)
        engine.step()
        sums.add(loss=loss.item(), micro_batches=1, examples=len(labels),
                 tokens=int(attention_mask.sum()))
    return position
