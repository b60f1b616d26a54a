"""Wall time and peak memory of one `gbb` command and every process it starts.

Peak RSS of the process tree is sampled: a thread sums the resident set of the command and of
all its descendants (found through /proc/PID/task/TID/children) every SAMPLE_S seconds. A sum is
what a machine must hold while worker processes run side by side, which
`resource.getrusage(RUSAGE_CHILDREN)` cannot give (its `ru_maxrss` is the largest single
process). The sum counts pages that forked workers share with their parent once per process, so
it is an upper bound. Sampling can miss a spike shorter than SAMPLE_S, so the kernel's own
high-water mark (`os.wait4`'s `ru_maxrss`, per process, never missed) is recorded beside it and
the reported peak is the larger of the two.

The command runs as `python -m pipelines.cli ARGV` (a fresh interpreter, as a user runs it), or,
with `in_process=True`, in a forked copy of this interpreter calling `pipelines.cli.main(ARGV)`:
the same code path without the seconds of imports, for `--quick` in the test suite.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_S = 0.02
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Measurement:
    """One command: wall time, peak RSS of its process tree (sampled sum), the kernel's per-process high-water mark."""

    wall_s: float
    peak_rss_mb: float
    max_process_rss_mb: float
    max_processes: int
    returncode: int


def _children(pid: int) -> list[int]:
    found = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as handle:
                found += [int(x) for x in handle.read().split()]
    except (OSError, ValueError):
        pass
    return found


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as handle:
            return int(handle.read().split()[1]) * PAGE
    except (OSError, ValueError, IndexError):
        return 0


class TreeSampler(threading.Thread):
    """Samples the summed RSS of a process and its descendants until `stop()`."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_bytes = 0
        self.max_processes = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            tree, frontier = [], [self.pid]
            while frontier:
                pid = frontier.pop()
                tree.append(pid)
                frontier += _children(pid)
            self.peak_bytes = max(self.peak_bytes, sum(map(_rss_bytes, tree)))
            self.max_processes = max(self.max_processes, len(tree))
            self._stop_event.wait(SAMPLE_S)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def _fork_cli(argv: list[str], log: Path) -> int:
    """Fork; the child runs `pipelines.cli.main(argv)` with stdout/stderr in `log` and exits with its status."""
    from pipelines import cli

    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    status = 1
    try:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        status = cli.main(argv)
    except BaseException:  # the child must never return into the benchmark
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def measure(argv: list[str], log: Path, in_process: bool = False) -> Measurement:
    """Run `gbb ARGV` (stdout and stderr to `log`) and measure it; a failure is a RuntimeError with the log's tail."""
    if not in_process:
        return measure_command([sys.executable, "-m", "pipelines.cli", *argv], log)
    start = time.perf_counter()
    return _wait(_fork_cli(argv, log), start, log, " ".join(argv))


def measure_command(command: list[str], log: Path) -> Measurement:
    """Run any command (the project on PYTHONPATH, stdout and stderr to `log`) and measure it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    with open(log, "w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    try:
        return _wait(process.pid, start, log, " ".join(command))
    finally:
        process.returncode = process.returncode if process.returncode is not None else 0  # reaped by wait4


def _wait(pid: int, start: float, log: Path, what: str) -> Measurement:
    sampler = TreeSampler(pid)
    sampler.start()
    _, status, usage = os.wait4(pid, 0)  # its rusage: the kernel's high-water mark over the tree's processes
    wall = time.perf_counter() - start
    sampler.stop()
    returncode = os.waitstatus_to_exitcode(status)
    if returncode != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{what} exited {returncode}:\n{tail}")
    max_process = usage.ru_maxrss * 1024  # KiB on Linux
    return Measurement(round(wall, 3), round(max(sampler.peak_bytes, max_process) / 2**20, 1),
                       round(max_process / 2**20, 1), sampler.max_processes, returncode)
