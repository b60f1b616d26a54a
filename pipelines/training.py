"""What `gbb pretrain` and `gbb finetune` share: the DeepSpeed set-up, checked before DeepSpeed
starts, and the checkpoints a run resumes from or has already finished with.

Everything a user can get wrong (batch sizes, ZeRO stage, an out_dir holding another run) is
checked before DeepSpeed is imported and before the output directory is touched, so an error is
the one line the CLI prints and nothing else.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genomics_bigbird.errors import InputError
from pipelines.config import find_config


@dataclass(frozen=True)
class DeepSpeedPlan:
    """The DeepSpeed configuration of a run, derived from its `train` section and the launcher."""

    world_size: int
    precision: str
    config: dict

    @property
    def accumulation(self) -> int:
        return self.config["gradient_accumulation_steps"]

    def describe(self) -> dict:
        """What the manifest records about it."""
        return {"world_size": self.world_size, "gradient_accumulation_steps": self.accumulation,
                "precision": self.precision, "deepspeed": self.config}


def launcher_rank() -> int:
    """This process's rank as the launcher set it (torchrun, deepspeed); 0 without a launcher."""
    return int(os.environ.get("RANK", "0"))


def deepspeed_extra(train) -> dict:
    """The DeepSpeed JSON fragment (tuning keys) for the chosen ZeRO stage; a missing file is an error."""
    from genomics_bigbird.train.deepspeed_config import load_deepspeed_json

    return load_deepspeed_json(find_config(train.deepspeed_json or f"configs/deepspeed/zero{train.zero_stage}.json"))


def plan_deepspeed(train, device_type: str) -> DeepSpeedPlan:
    """Check `train`'s batch, precision and ZeRO settings against the launcher's world size.

    `train` is a PretrainTrain or a FinetuneTrain (they share these fields); `device_type` is
    "cuda" or "cpu" (it only decides what precision=auto means), so the settings can be checked
    before torch is imported.
    """
    from genomics_bigbird.train.deepspeed_config import deepspeed_config, resolve_precision

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    precision = resolve_precision(train.precision, device_type)
    config = deepspeed_config(global_batch_size=train.global_batch_size, micro_batch_size=train.micro_batch_size,
                              world_size=world_size, zero_stage=train.zero_stage, precision=precision,
                              gradient_clipping=train.gradient_clipping, extra=deepspeed_extra(train))
    return DeepSpeedPlan(world_size, precision, config)


def start_deepspeed(plan: DeepSpeedPlan):
    """Join the process group (importing DeepSpeed); return the distributed context."""
    from genomics_bigbird.train import engine as ds

    ctx = ds.init_distributed()
    ds.set_deepspeed_log_level(logging.WARNING)
    if ctx.world_size != plan.world_size:
        raise RuntimeError(f"the launcher set WORLD_SIZE={plan.world_size} but the process group has "
                           f"{ctx.world_size} processes")
    return ctx


def saved_checkpoint(out_dir: Path, checkpoints: Path, resume: bool) -> dict | None:
    """The client state of the checkpoint a run continues from (None: it starts at step 0).

    An out_dir that holds a run is refused unless `resume` is set, so nothing is overwritten.
    """
    from genomics_bigbird.train.deepspeed_config import checkpoint_info

    info = checkpoint_info(checkpoints)
    if info is not None and not resume:
        raise InputError("holds checkpoints of an earlier run; pass --resume (train.resume=true) to "
                         "continue it, or choose another out_dir", out_dir)
    return None if info is None else info["client_state"]


def finished_outputs(out_dir: Path, saved: dict | None, steps: int) -> dict[str, Any] | None:
    """The outputs of a run in `out_dir` that already reached `steps` (None if it has not).

    The manifest is written last, after the final checkpoint and the exported weights, so one
    that records `steps` together with a checkpoint at `steps` means nothing is left to do.
    A checkpoint beyond `steps` is an error: resuming could only go backwards.
    """
    if saved is None:
        return None
    if saved["step"] > steps:
        raise InputError(f"its last checkpoint is at step {saved['step']}, past train.steps={steps}; raise "
                         f"train.steps to train further, or choose another out_dir", out_dir)
    manifest = out_dir / "manifest.json"
    if saved["step"] < steps or not manifest.is_file():
        return None
    outputs = json.loads(manifest.read_text()).get("outputs", {})
    return outputs if outputs.get("steps") == steps else None


def log_finished(job, steps: int, kept: str) -> None:
    """Leave a finished run as it is (no new manifest) and say so in its log."""
    job.manifest_name = None
    job.log.info("already finished at step %d: its metrics, %s and manifest are kept as they are; raise "
                 "train.steps to train further", steps, kept)


def same_on_all_ranks(value: float, device) -> float:
    """Rank 0's value everywhere, so every rank takes the same decision (e.g. which model is best)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(tensor, src=0)
    return float(tensor.item())


@dataclass
class Resumed:
    """Where a run continues: its step, data position, this rank's metric sums since the last
    log line, and the rest of the client state saved with the checkpoint (e.g. the best so far)."""

    step: int = 0
    epoch: int = 0
    batches_done: int = 0
    pending_sums: dict = field(default_factory=dict)
    state: dict = field(default_factory=dict)


def resume(engine, checkpoints: Path, saved: dict | None, log: logging.Logger) -> Resumed:
    """Load the checkpoint `saved_checkpoint` found into `engine` (weights, optimizer, schedule, RNG)."""
    from genomics_bigbird.train import engine as ds

    if saved is None:
        return Resumed()
    state = ds.load_training_checkpoint(engine, checkpoints)
    rank_state = state.pop(ds.RANK_STATE) or {}
    resumed = Resumed(state.pop("step"), state.pop("epoch"), state.pop("batches_done"),
                      dict(rank_state.get("metric_sums", {})), state)
    log.info("resumed from step %d (epoch %d, %d micro-batches into it)", resumed.step, resumed.epoch,
             resumed.batches_done)
    return resumed


def save_checkpoint(engine, checkpoints: Path, step: int, position, sums, keep: int, **state: Any) -> None:
    """Checkpoint after `step` (all ranks): the data position, each rank's unlogged metric sums and
    `state`, so a resumed run logs and decides exactly as an uninterrupted one; keep the newest `keep`."""
    from genomics_bigbird.train import engine as ds

    client = {"step": step, "epoch": position.epoch, "batches_done": position.batches_done, **state}
    ds.save_training_checkpoint(engine, checkpoints, f"step{step}", client,
                                rank_state={"metric_sums": dict(sums.sums)})
    ds.prune_checkpoints(checkpoints, keep)
