"""How many CPU threads a `gbb` command uses: `--threads`, else `OMP_NUM_THREADS`, else the free cores.

torch starts one OpenMP thread per core. When another process is already busy on those cores,
the threads wait on each other at every parallel region: on 2 cores with one other busy process,
fine-tuning the tiny model ran about 10x slower than with one thread. So the default counts the
cores this process may run on (its CPU affinity and cgroup quota) and leaves out the ones that
other work keeps busy, measured over a short sample of /proc/stat. A scheduler or launcher that
sets OMP_NUM_THREADS (torchrun does, one per process) is obeyed.

The choice is made once per process: it is written back to OMP_NUM_THREADS, which DataLoader
workers and child processes inherit, and a later command in the same process (`gbb demo` runs
its steps in-process) keeps it instead of counting its own earlier work as contention.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

SAMPLE_SECONDS = 0.1
_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass(frozen=True)
class ThreadChoice:
    """The thread count a command runs with, and why."""

    threads: int
    reason: str

    def describe(self) -> str:
        return f"{self.threads} CPU thread{'s' if self.threads != 1 else ''} ({self.reason}; --threads to change)"


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity set, capped by a cgroup v2 CPU quota."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def _cpu_times(cpu_ids: set[int]) -> tuple[int, int] | None:
    """(busy, total) jiffies summed over `cpu_ids`, from /proc/stat; None where it is unreadable."""
    busy = total = 0
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        name, *values = line.split()
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpu_ids:
            continue
        ticks = [int(v) for v in values[:8]]   # user nice system idle iowait irq softirq steal
        total += sum(ticks)
        busy += sum(ticks) - ticks[3] - ticks[4]
    return (busy, total) if total else None


def busy_cpus(sample_seconds: float = SAMPLE_SECONDS) -> float:
    """How many of this process's CPUs other work keeps busy, averaged over `sample_seconds`."""
    cpu_ids = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    before = _cpu_times(cpu_ids)
    if before is None:
        return 0.0
    time.sleep(sample_seconds)
    after = _cpu_times(cpu_ids)
    if after is None or after[1] <= before[1]:
        return 0.0
    return len(cpu_ids) * (after[0] - before[0]) / (after[1] - before[1])


def default_threads() -> ThreadChoice:
    """The thread count when `--threads` is not given (see the module docstring)."""
    from_env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if from_env.isdigit() and int(from_env) > 0:
        return ThreadChoice(int(from_env), "from OMP_NUM_THREADS")
    cpus = usable_cpus()
    busy = busy_cpus()
    threads = max(1, min(cpus, cpus - round(busy)))
    return ThreadChoice(threads, f"{cpus} usable CPUs, {busy:.1f} busy with other work")


def apply_threads(requested: int | None) -> ThreadChoice:
    """Choose the thread count (`requested`, or the default) and set it for torch and child processes."""
    if requested is not None and requested < 1:
        raise ValueError(f"--threads must be at least 1, got {requested}")
    choice = ThreadChoice(requested, "--threads") if requested is not None else default_threads()
    for name in _ENV_VARS:
        os.environ[name] = str(choice.threads)
    if "torch" in sys.modules:   # imported already: the environment variable is read only at start-up
        sys.modules["torch"].set_num_threads(choice.threads)
    global _current
    _current = choice
    return choice


_current: ThreadChoice | None = None


def current() -> ThreadChoice | None:
    """The choice `apply_threads` made last in this process (None before `gbb` parsed a command)."""
    return _current
