"""DeepSpeed engine set-up, training checkpoints with exact resume, and weight export.

The only module that imports deepspeed, and only inside the functions that start or use it:
the batch arithmetic and the checkpoint bookkeeping are plain Python, so a pipeline can check
its configuration (and `gbb --help` can start) without DeepSpeed's two seconds of imports.
DeepSpeed prints to stdout when it starts (an accelerator warning, op-build messages); those
lines, and its logger, are routed into this module's logger, so they reach the job's log file
and are silent under `--quiet`.

One process on CPU works without a launcher (`init_distributed` fills in the single-process
environment); `torchrun` and the `deepspeed` launcher set the variables themselves.
"""
from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import os
import random
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
import torch.distributed as dist

from genomics_bigbird.atomic import atomic_write
from genomics_bigbird.errors import InputError
from genomics_bigbird.train.deepspeed_config import INFO_FILE, checkpoint_info, latest_checkpoint_tag
from genomics_bigbird.train.schedule import lr_lambda

log = logging.getLogger(__name__)

RANK_FILE = "rank{rank}_state.pt"
RANK_STATE = "rank_state"  # key of a rank's own saved state in what load_training_checkpoint returns


@contextlib.contextmanager
def _output_to_log(source: str) -> Iterator[None]:
    """Send what `source` prints to stdout/stderr, from Python or from C, to `log` instead.

    Both the file descriptors and the Python streams are swapped: DeepSpeed prints with print(),
    through a logging handler bound to sys.stdout, and from compiled op builders.
    """
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    python_text = io.StringIO()
    with tempfile.TemporaryFile() as native:
        try:
            for fd in saved:
                os.dup2(native.fileno(), fd)
            with contextlib.redirect_stdout(python_text), contextlib.redirect_stderr(python_text):
                yield
        finally:
            for fd, original in saved.items():
                os.dup2(original, fd)
                os.close(original)
            native.seek(0)
            text = python_text.getvalue() + native.read().decode("utf-8", "replace")
            for line in text.splitlines():
                if line.strip():
                    log.info("%s: %s", source, line.strip())


class _ToLogger(logging.Handler):
    """Hands DeepSpeed's log records to one of our loggers (and so to the job's handlers)."""

    def __init__(self, target: logging.Logger):
        super().__init__()
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        if self.target.isEnabledFor(record.levelno):
            self.target.handle(record)


@functools.cache
def _deepspeed():
    """The deepspeed module, imported once with its start-up output and its logger sent to `log`."""
    with _output_to_log("DeepSpeed"):
        import deepspeed
        from deepspeed.utils import logger as deepspeed_logger
    for handler in list(deepspeed_logger.handlers):
        deepspeed_logger.removeHandler(handler)
    deepspeed_logger.addHandler(_ToLogger(log))
    deepspeed_logger.propagate = False
    return deepspeed


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits: its rank among `world_size` and the device it trains on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def free_port() -> int:
    """Return a TCP port that is free on this host right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def init_distributed(backend: str | None = None) -> DistributedContext:
    """Join (or create) the process group: gloo on CPU, nccl on CUDA.

    Without a launcher (no RANK in the environment) this is a one-process group on a free
    local port; DeepSpeed would otherwise look for MPI and fail.
    """
    if "RANK" not in os.environ:
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(free_port()))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        deepspeed = _deepspeed()
        with _output_to_log("DeepSpeed"):  # on CPU it builds and announces a shared-memory op
            deepspeed.init_distributed(dist_backend=backend or ("nccl" if use_cuda else "gloo"),
                                       auto_mpi_discovery=False, verbose=False)
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    return DistributedContext(dist.get_rank(), dist.get_world_size(), local_rank, device)


def set_deepspeed_log_level(level: int) -> None:
    """Quiet (or restore) DeepSpeed's own logger, which prints a lot at start-up."""
    _deepspeed()
    logging.getLogger("DeepSpeed").setLevel(level)


def adamw_param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups as in BERT: no weight decay on biases and normalization weights (1-D tensors)."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_engine(model: torch.nn.Module, ds_config: Mapping[str, Any], *, lr: float, weight_decay: float,
                 warmup_steps: int, total_steps: int, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-6):
    """Wrap `model` in a DeepSpeed engine with AdamW and warmup + linear decay of the lr.

    AdamW is PyTorch's (no op to compile); DeepSpeed steps the scheduler once per optimizer step,
    i.e. after each full global batch.
    """
    optimizer = torch.optim.AdamW(adamw_param_groups(model, weight_decay), lr=lr, betas=betas, eps=eps)
    schedule = lr_lambda(warmup_steps, total_steps)
    engine, _, _, _ = _deepspeed().initialize(
        model=model, optimizer=optimizer, config=dict(ds_config),
        lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, schedule))
    return engine


def current_lr(engine) -> float:
    """The learning rate the next optimizer step will use."""
    return float(engine.lr_scheduler.get_last_lr()[0])


def rng_state() -> dict[str, Any]:
    """This process's torch/CUDA/numpy/python RNG states (dropout draws from torch's)."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what `rng_state` returned."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_checkpoint(engine, directory: str | os.PathLike, tag: str,
                             client_state: Mapping[str, Any], rank_state: Any = None) -> Path:
    """Save weights, optimizer, scheduler, `client_state` and every rank's RNG (call on all ranks).

    `client_state` is rank 0's (DeepSpeed keeps one copy); `rank_state` is this rank's own
    (e.g. metric sums since the last log line) and comes back under `RANK_STATE` on load.
    DeepSpeed writes `directory/latest` only after every file of the tag is written, so an
    interrupted save never becomes the checkpoint a resume picks up.
    """
    directory = Path(directory)
    tag_dir = directory / tag
    tag_dir.mkdir(parents=True, exist_ok=True)
    # rank files and info first: `latest` (written by DeepSpeed last) must never point at a tag without them
    torch.save({"rng": rng_state(), RANK_STATE: rank_state}, tag_dir / RANK_FILE.format(rank=dist.get_rank()))
    if dist.get_rank() == 0:
        info = {"world_size": dist.get_world_size(), "client_state": dict(client_state)}
        with atomic_write(tag_dir / INFO_FILE) as handle:
            json.dump(info, handle, indent=2, default=str)
    dist.barrier()
    engine.save_checkpoint(str(directory), tag=tag, client_state=dict(client_state))
    return tag_dir


def prune_checkpoints(directory: str | os.PathLike, keep: int) -> list[str]:
    """Delete all but the `keep` newest complete checkpoints (never the `latest` one); rank 0 deletes.

    Returns the deleted tags. Call on every rank after a save.
    """
    directory = Path(directory)
    latest = latest_checkpoint_tag(directory)
    tags = sorted((p for p in directory.iterdir() if p.is_dir() and (p / INFO_FILE).is_file()),
                  key=lambda p: p.stat().st_mtime)
    doomed = [p for p in tags[:max(len(tags) - keep, 0)] if p.name != latest] if keep > 0 else []
    if dist.get_rank() == 0:
        for path in doomed:
            shutil.rmtree(path, ignore_errors=True)
    dist.barrier()
    return [p.name for p in doomed]


def load_training_checkpoint(engine, directory: str | os.PathLike, tag: str | None = None) -> dict[str, Any]:
    """Restore what `save_training_checkpoint` saved; return the client state, with this rank's
    own saved state under `RANK_STATE`.

    The RNG of this rank is restored when its file is present (same world size); otherwise the
    RNG keeps its current state and the resume is exact only up to dropout draws.
    """
    tag = tag or latest_checkpoint_tag(directory)
    if tag is None:
        raise InputError("no checkpoint to resume from (no 'latest' file)", directory)
    info = checkpoint_info(directory, tag)
    if info is not None and info["world_size"] != dist.get_world_size():
        raise InputError(f"checkpoint {tag!r} was saved by {info['world_size']} process(es) and this run has "
                         f"{dist.get_world_size()}; resume with {info['world_size']} (e.g. torchrun "
                         f"--nproc_per_node {info['world_size']}) so the optimizer shards and data order "
                         f"match, or start a new run from the exported weights", directory)
    path, client_state = engine.load_checkpoint(str(directory), tag=tag)
    if path is None:
        raise InputError(f"checkpoint {tag!r} could not be loaded", directory)
    rank_file = Path(directory) / tag / RANK_FILE.format(rank=dist.get_rank())
    client_state = dict(client_state or {})
    if rank_file.is_file():
        saved = torch.load(rank_file, weights_only=False)
        set_rng_state(saved["rng"])
        client_state[RANK_STATE] = saved[RANK_STATE]
    else:
        log.warning("no RNG state for rank %d in %s: dropout draws will differ from the saved run",
                    dist.get_rank(), rank_file.parent)
        client_state[RANK_STATE] = None
    return client_state


def consolidated_state_dict(engine, prefix: str = "") -> dict[str, torch.Tensor]:
    """Full fp32 weights of the unwrapped module on CPU, for ZeRO 0-3 (call on all ranks).

    Parameters come from DeepSpeed's fp32 master copy where one exists (ZeRO 1-3, bf16/fp16),
    so partitioned or low-precision training still exports exact fp32 weights. `prefix`
    keeps only keys under it (e.g. "encoder.") and strips it. Tied weights keep every name.
    """
    from deepspeed.utils import safe_get_full_fp32_param

    module = engine.module
    by_param: dict[int, torch.Tensor] = {}
    for param in module.parameters():
        full = safe_get_full_fp32_param(param)  # collective under ZeRO-3
        by_param[id(param)] = (param.detach() if full is None else full).float().cpu().clone()
    out = {}
    for name, value in module.state_dict(keep_vars=True).items():
        if not name.startswith(prefix):
            continue
        tensor = by_param.get(id(value))
        out[name[len(prefix):]] = tensor if tensor is not None else value.detach().cpu().clone()
    return out


def export_weights(engine, directory: str | os.PathLike,
                   save: Callable[[dict[str, torch.Tensor], Path], Any], prefix: str = "") -> Path | None:
    """Gather the full fp32 weights and let rank 0 write them with `save(state_dict, directory)`.

    Call on every rank (ZeRO-3 gathers collectively). Unlike a DeepSpeed checkpoint, the result
    loads into any world size, on CPU or GPU, for fine-tuning and inference.
    """
    state = consolidated_state_dict(engine, prefix)
    directory = Path(directory)
    if dist.get_rank() == 0:
        save(state, directory)
    dist.barrier()
    return directory if dist.get_rank() == 0 else None
