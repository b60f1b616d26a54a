"""`--workers N`: the processes a data-preparation step fans out over, and how they share `--threads`.

`--threads` (every command, pipelines/threads.py) is the command's CPU budget. A step that fans
out over processes splits it: `--workers` processes, each running its libraries (sentencepiece,
torch) with `threads // workers` threads (at least 1). Without `--workers`, corpus, shards and
chromatin prepare run one single-threaded worker per thread of the budget, which on a free
machine is every usable core. With one worker the step runs in its own process, as before.

Workers take consecutive pieces of the input (documents, contigs, row blocks) and the parent
writes their results in input order, so outputs are the same bytes for any worker count.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

from genomics_bigbird.errors import InputError


@dataclass(frozen=True)
class WorkerPlan:
    """How a step runs: `workers` processes with `threads_per_worker` threads each."""

    workers: int
    threads_per_worker: int

    def describe(self) -> str:
        if self.workers == 1:
            return f"1 process with {self.threads_per_worker} thread{'s' if self.threads_per_worker > 1 else ''}"
        return f"{self.workers} worker processes x {self.threads_per_worker} thread" + (
            "s" if self.threads_per_worker > 1 else "")


def add_workers_argument(parser: argparse.ArgumentParser, unit: str) -> None:
    """Add `--workers N` to a command whose work splits into `unit` (e.g. "contigs")."""
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help=f"processes working on {unit} in parallel (default: one per --threads); "
                             "the output is the same for any N")


def plan_workers(requested: int | None, threads: int) -> WorkerPlan:
    """`--workers` (None: one per thread) and the threads each worker gets from the `--threads` budget."""
    if requested is not None and requested < 1:
        raise InputError(f"--workers must be at least 1, got {requested}")
    workers = requested if requested is not None else max(1, threads)
    return WorkerPlan(workers, max(1, threads // workers))
