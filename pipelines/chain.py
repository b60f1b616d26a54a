"""Run `gbb` commands in-process as a chain: what `gbb demo` and `gbb experiment` are made of.

Each command line is logged and appended to a shell script as it runs (so the chain can be rerun
by hand or on real data), timed, and the chain stops at the first failure.
"""
from __future__ import annotations

import contextlib
import os
import shlex
import time
from pathlib import Path
from typing import Any, Sequence

from genomics_bigbird.atomic import atomic_write
from genomics_bigbird.errors import InputError
from pipelines import cli
from pipelines.job import Job

_DISTRIBUTED_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def simulated_valid_region(scale: float) -> str:
    """Validation bins of the simulated genome: the middle half of chr7 at `scale` (BigBird holds out part of chr7)."""
    from genomics_bigbird.genome.simulate import CONTIG_LENGTHS

    length = round(CONTIG_LENGTHS["chr7"] * scale)
    return f"chr7:{length // 4 + 1}-{3 * length // 4}"


def chain_device(requested: str) -> str:
    """The device a chain's models run on: `auto` is cuda when a GPU is visible, else cpu."""
    if requested != "auto":
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@contextlib.contextmanager
def training_device(device: str):
    """`gbb pretrain` / `finetune` take every GPU they see; device "cpu" hides them for the chain.

    Yields the lines a script needs to do the same.
    """
    if device != "cpu":
        yield []
        return
    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    try:
        yield ["export CUDA_VISIBLE_DEVICES=  # --device cpu: train on the CPU too"]
    finally:
        if before is None:
            del os.environ["CUDA_VISIBLE_DEVICES"]
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = before


class CommandChain:
    """Runs `gbb` commands in-process, stops at the first failure, records each command line."""

    def __init__(self, job: Job, script: Path, preamble: list[str], title: str = "gbb demo"):
        self.job, self.script, self.timings = job, script, {}
        self.lines = ["#!/usr/bin/env bash", f"# The commands `{title}` ran, in order.", "set -euo pipefail",
                      *preamble]

    def __call__(self, step: str, *argv: Any) -> None:
        words = self._record(step, argv)
        start = time.time()
        code = cli.main(words)
        self.timings[step] = round(time.time() - start, 1)
        if code != 0:
            raise InputError(f"step {step!r} failed (exit {code}): gbb {shlex.join(words)}; see the log in its "
                             f"output directory")

    def _record(self, step: str, argv, note: str = "") -> list[str]:
        words = [str(a) for a in argv]
        line = "gbb " + shlex.join(words)
        self.lines.append(line + note)
        with atomic_write(self.script) as handle:
            handle.write("\n".join(self.lines) + "\n")
        self.job.log.info("[%s] %s", step, line)
        return words

    def parallel(self, groups: Sequence[Sequence[tuple[str, Sequence[Any]]]], workers: int, threads: int) -> None:
        """Run each group's commands in order, up to `workers` groups at once, each in its own process.

        A worker gets `threads // workers` CPU threads (at least 1); on a machine with several
        GPUs each worker sees one, round-robin. Every group runs to its end or first failure;
        then a failure raises, naming the first failed step.
        """
        import subprocess
        import sys
        from concurrent.futures import ThreadPoolExecutor

        gpus = [g for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
        per_worker = max(1, threads // workers)

        def run_group(index: int, group) -> str | None:
            # each worker is its own one-process group: not the port of this process's group, if it has one
            env = {k: v for k, v in os.environ.items() if k not in _DISTRIBUTED_VARS}
            env["OMP_NUM_THREADS"] = str(per_worker)
            if len(gpus) > 1:
                env["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
            for step, argv in group:
                words = [str(a) for a in argv]
                start = time.time()
                done = subprocess.run([sys.executable, "-m", "pipelines.cli", *words, "--threads", str(per_worker)],
                                      env=env, capture_output=True, text=True)
                self.timings[step] = round(time.time() - start, 1)
                if done.returncode != 0:
                    self.job.log.error("[%s] failed (exit %d): %s", step, done.returncode,
                                       done.stderr.strip().splitlines()[-1:] or "")
                    return step
            return None

        for index, group in enumerate(groups):
            for step, argv in group:
                self._record(step, argv, f"  # worker {index % workers + 1} of {workers}")
        with ThreadPoolExecutor(max_workers=workers) as pool:
            failed = [f for f in pool.map(run_group, range(len(groups)), groups) if f is not None]
        if failed:
            raise InputError(f"step {failed[0]!r} failed; see the log in its output directory")
