"""Ordered, bounded fan-out of CPU-bound work over worker processes.

`ordered_map(function, tasks, workers)` yields `function(task)` for every task, in task order,
whatever the number of workers: outputs built from it are the same bytes with 1 worker or 16.
At most `in_flight` tasks are queued or running at once, so a producer that reads a 30 Gbp
corpus never runs ahead of the workers (multiprocessing's `Pool.imap` would read it all into
its task queue). With one worker the function runs in this process, without a pool.

`function` is installed in each worker once, when the pool starts (on Linux the workers are
forked, so a tokenizer or an open genome it holds is inherited, not pickled per task); only the
tasks and the results travel between processes.
"""
from __future__ import annotations

import collections
import multiprocessing
from typing import Callable, Iterable, Iterator, TypeVar

Task = TypeVar("Task")
Result = TypeVar("Result")

_worker_function: Callable | None = None  # the function a worker process runs (set by _install)


def _install(function: Callable) -> None:
    global _worker_function
    _worker_function = function


def _run(task):
    return _worker_function(task)


def ordered_map(function: Callable[[Task], Result], tasks: Iterable[Task], workers: int = 1,
                in_flight: int | None = None) -> Iterator[Result]:
    """Yield `function(task)` for each task in order, computed by `workers` processes (1: in this one).

    `in_flight` (default 2 x workers) bounds the tasks submitted but not yet yielded, so memory
    holds at most that many tasks and results. An exception in a worker is raised here, and the
    pool is shut down when the iteration ends early.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if workers == 1:
        yield from map(function, tasks)
        return
    limit = max(1, in_flight or 2 * workers)
    with multiprocessing.Pool(workers, initializer=_install, initargs=(function,)) as pool:
        pending: collections.deque = collections.deque()
        for task in tasks:
            pending.append(pool.apply_async(_run, (task,)))
            if len(pending) >= limit:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
