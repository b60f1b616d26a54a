"""Learning-rate schedule: linear warmup, then linear decay to zero (BERT / BigBird pretraining)."""
from __future__ import annotations

from functools import partial

import torch


def warmup_linear_decay(step: int, warmup_steps: int, total_steps: int) -> float:
    """Multiplier of the peak lr at optimizer step `step` (0-based).

    Rises as step / warmup_steps over the warmup, is 1.0 at step == warmup_steps, then falls
    linearly to 0.0 at step == total_steps and stays there.
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"warmup_steps must be in [0, total_steps={total_steps}], got {warmup_steps}")
    if step < warmup_steps:
        return step / warmup_steps
    if total_steps == warmup_steps:
        return 1.0 if step == warmup_steps else 0.0
    return max(0.0, (total_steps - step) / (total_steps - warmup_steps))


def lr_lambda(warmup_steps: int, total_steps: int):
    """A picklable `LambdaLR` lr_lambda for warmup then linear decay (checked once, here)."""
    warmup_linear_decay(0, warmup_steps, total_steps)
    return partial(warmup_linear_decay, warmup_steps=warmup_steps, total_steps=total_steps)


def warmup_linear_decay_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int,
                                  total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """`LambdaLR` with linear warmup to the optimizer's lr, then linear decay to zero."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(warmup_steps, total_steps))
