"""Wall time and peak memory of one `gbb` command and every process it starts.

Peak RSS of the process tree is sampled: a thread sums the resident set (VmRSS) of the command
and of all its descendants (found through /proc/PID/task/TID/children) every SAMPLE_S seconds.
A sum is what a machine must hold while worker processes run side by side, which
`resource.getrusage(RUSAGE_CHILDREN)` cannot give: its `ru_maxrss` is per process, and on Linux
a forked child starts from its parent's high-water mark, so after this script once held a 1 GB
input every later command would report 1 GB. The sum counts pages that forked workers share with
their parent once per process, so it is an upper bound. Sampling can miss a spike shorter than
SAMPLE_S, so each process's own kernel high-water mark since its exec (VmHWM) is read at every
sample too; the reported peak is the larger of the summed RSS and the largest VmHWM.

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


@dataclass
class Measurement:
    """One command: wall time, peak RSS of its process tree (sampled sum), the largest process's high-water mark."""

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


def _memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB; (0, 0) once it has exited."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return rss, hwm


class TreeSampler(threading.Thread):
    """Samples the summed RSS of a process and its descendants until `stop()`."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_kib = 0          # summed VmRSS of the tree
        self.max_process_kib = 0   # largest VmHWM of one process
        self.max_processes = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            tree, frontier = [], [self.pid]
            while frontier:
                pid = frontier.pop()
                tree.append(pid)
                frontier += _children(pid)
            memory = [_memory_kib(pid) for pid in tree]
            self.peak_kib = max(self.peak_kib, sum(rss for rss, _ in memory))
            self.max_process_kib = max([self.max_process_kib] + [hwm for _, hwm in memory])
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
        process.returncode = process.returncode if process.returncode is not None else 0  # reaped by waitpid


def _wait(pid: int, start: float, log: Path, what: str) -> Measurement:
    sampler = TreeSampler(pid)
    sampler.start()
    _, status = os.waitpid(pid, 0)
    wall = time.perf_counter() - start
    sampler.stop()
    returncode = os.waitstatus_to_exitcode(status)
    if returncode != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{what} exited {returncode}:\n{tail}")
    return Measurement(round(wall, 3), round(max(sampler.peak_kib, sampler.max_process_kib) / 1024, 1),
                       round(sampler.max_process_kib / 1024, 1), sampler.max_processes, returncode)
