"""The DeepSpeed JSON config (batch arithmetic, precision, ZeRO stage) and the bookkeeping of saved
training checkpoints, in plain Python: a pipeline checks its settings and finds the checkpoint it
resumes from before torch or DeepSpeed is imported (`train.engine` does the rest).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from genomics_bigbird.errors import InputError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
INFO_FILE = "checkpoint_info.json"


def resolve_precision(precision: str, device) -> str:
    """`auto` means bf16 on a GPU and fp32 on CPU (bf16 matmuls are slow on CPUs).

    `device` is a torch.device or its type ("cuda", "cpu").
    """
    if precision not in PRECISIONS:
        raise InputError(f"train.precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return "bf16" if getattr(device, "type", device) == "cuda" else "fp32"
    return precision


def gradient_accumulation_steps(global_batch_size: int, micro_batch_size: int, world_size: int) -> int:
    """Micro-batches each rank accumulates so that micro x accumulation x ranks = global batch."""
    per_step = micro_batch_size * world_size
    if micro_batch_size < 1 or global_batch_size < 1:
        raise InputError(f"batch sizes must be positive (global {global_batch_size}, micro {micro_batch_size})")
    if global_batch_size % per_step:
        raise InputError(f"train.global_batch_size={global_batch_size} is not a multiple of "
                         f"micro_batch_size x world size = {micro_batch_size} x {world_size}; "
                         f"choose a global batch divisible by {per_step}")
    return global_batch_size // per_step


def deepspeed_config(*, global_batch_size: int, micro_batch_size: int, world_size: int,
                     zero_stage: int, precision: str, gradient_clipping: float,
                     extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The DeepSpeed JSON config; batch fields are derived here and nowhere else.

    precision is already resolved (fp32/bf16/fp16). `extra` (e.g. configs/deepspeed/zero2.json)
    adds tuning keys such as bucket sizes; it must not contradict the ZeRO stage.
    """
    if zero_stage not in (0, 1, 2, 3):
        raise InputError(f"train.zero_stage must be 0, 1, 2 or 3, got {zero_stage}")
    extra = dict(extra or {})
    zero = dict(extra.pop("zero_optimization", {}))
    if zero.setdefault("stage", zero_stage) != zero_stage:
        raise InputError(f"the DeepSpeed JSON sets ZeRO stage {zero['stage']} but train.zero_stage is {zero_stage}")
    derived = ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps",
               "bf16", "fp16", "gradient_clipping", "optimizer", "scheduler")
    clashing = sorted(set(extra) & set(derived))
    if clashing:
        raise InputError(f"the DeepSpeed JSON sets {clashing}, which come from the training config; remove them")
    config = {
        "train_batch_size": global_batch_size,
        "train_micro_batch_size_per_gpu": micro_batch_size,
        "gradient_accumulation_steps": gradient_accumulation_steps(global_batch_size, micro_batch_size, world_size),
        "gradient_clipping": float(gradient_clipping),
        "zero_optimization": zero,
        "bf16": {"enabled": precision == "bf16"},
        "fp16": {"enabled": precision == "fp16"},
        "steps_per_print": 1 << 30,  # our own metrics log replaces DeepSpeed's prints
        "wall_clock_breakdown": False,
    }
    config.update(extra)
    return config


def load_deepspeed_json(path: str | os.PathLike) -> dict[str, Any]:
    """Read a DeepSpeed JSON fragment (configs/deepspeed/zero*.json)."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError("DeepSpeed config not found", path) from None
    except json.JSONDecodeError as err:
        raise InputError(f"not valid JSON: {err.msg}", path, err.lineno) from None


def latest_checkpoint_tag(directory: str | os.PathLike) -> str | None:
    """The tag of the last complete checkpoint in `directory`, or None if there is none."""
    latest = Path(directory) / "latest"
    return latest.read_text().strip() if latest.is_file() else None


def checkpoint_info(directory: str | os.PathLike, tag: str | None = None) -> dict[str, Any] | None:
    """World size and client state of a saved checkpoint (the last one by default), read without
    loading any weights; None when there is no checkpoint."""
    tag = tag or latest_checkpoint_tag(directory)
    path = Path(directory) / tag / INFO_FILE if tag else None
    if path is None or not path.is_file():
        return None
    return json.loads(path.read_text())
