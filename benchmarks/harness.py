"""What every benchmark shares: the machine it ran on, pinning to one core, median timing, JSON out, exit status.

Benchmarks run from the repository root as `python benchmarks/NAME.py` or `python -m benchmarks.NAME`.
A benchmark fails (exit status 1, reasons under "problems" in its JSON) when its baseline or any
row of ours raised, or when either has no finite figure: a table with a missing row cannot pass
for a measured one.
"""
from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

ROOT = Path(__file__).resolve().parents[1]


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (platform.processor() is often empty on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def pin_one_core() -> int | None:
    """Pin this process to the first core it may use and return that core (None where Linux affinity is missing).

    A figure quoted for "1 core" is then measured on one core, whatever else runs on the machine.
    """
    if not hasattr(os, "sched_setaffinity"):
        return None
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return core


def cores_in_use() -> int | None:
    """How many cores this process may run on now (after any pinning)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def median_rate(work: Callable[[], Any], amount: float, repeats: int) -> float:
    """Median over `repeats` calls of `work()` of amount per second."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        rates.append(amount / (time.perf_counter() - start))
    return statistics.median(rates)


def environment(device=None) -> dict:
    """Device, library versions and commit; `device` is a torch.device, or None for a CPU-only benchmark."""
    env = {"device": cpu_name(), "cpu_cores_usable": cores_in_use(), "python": platform.python_version()}
    if device is not None:
        import torch
        if device.type == "cuda":
            env["device"] = torch.cuda.get_device_name(device)
        env.update(torch=torch.__version__, cuda=torch.version.cuda, torch_threads=torch.get_num_threads())
        try:
            import transformers
            env["transformers"] = transformers.__version__
        except ImportError:
            env["transformers"] = None
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    env["commit"] = commit or None
    return env


def is_finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def problems(rows: Iterable[dict], *, name: str, baseline: str, ours: tuple[str, ...], figure: str) -> list[str]:
    """Why a benchmark's table cannot be trusted: the baseline or a row of ours raised, or either has no finite figure.

    Rows are dicts named by `rows[name]`; ours are those whose name starts with one of `ours`.
    An "error" field means the kernel or model raised; out of memory is a measured outcome, not an error.
    """
    rows = list(rows)
    reasons = [f"{row[name]}{_shape(row)} raised {row['error']}" for row in rows
               if "error" in row and (row[name] == baseline or row[name].startswith(ours))]
    if not any(row[name] == baseline and is_finite(row.get(figure)) for row in rows):
        reasons.append(f"the baseline {baseline} has no finite {figure}")
    if not any(row[name].startswith(ours) and is_finite(row.get(figure)) for row in rows):
        reasons.append(f"no row of ours ({', '.join(ours)}) has a finite {figure}")
    return reasons


def _shape(row: dict) -> str:
    return f" at {row['tokens']} x {row['batch']}" if "tokens" in row and "batch" in row else ""


def write_report(report: dict, out: str | os.PathLike | None) -> None:
    """Print the JSON document and, with `out`, write it there too (atomically)."""
    from genomics_bigbird.atomic import atomic_write

    text = json.dumps(report, indent=2)
    print(text)
    if out:
        with atomic_write(out) as handle:
            handle.write(text + "\n")


def finish(report: dict, out: str | os.PathLike | None, reasons: list[str]) -> int:
    """Record `reasons` in the report, write it, and return the exit status (1 when there are reasons)."""
    report["problems"] = reasons
    write_report(report, out)
    for reason in reasons:
        print(f"benchmark problem: {reason}", file=sys.stderr)
    return 1 if reasons else 0
