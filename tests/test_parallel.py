"""ordered_map: results in task order from worker processes, a bounded queue, errors that keep their file and line."""
import os
import time

import pytest

from genomics_bigbird.errors import InputError
from genomics_bigbird.parallel import ordered_map


def slow_square(task):
    number, delay = task
    time.sleep(delay)
    return number * number, os.getpid()


def fail_on_three(number):
    if number == 3:
        raise InputError("bad record", "input.bed", 4)
    return number


def test_results_come_in_task_order_from_several_processes():
    tasks = [(n, 0.05 if n % 2 == 0 else 0.0) for n in range(12)]  # even tasks finish last
    results = list(ordered_map(slow_square, tasks, workers=2))
    assert [square for square, _ in results] == [n * n for n in range(12)]
    assert len({pid for _, pid in results} - {os.getpid()}) == 2
    assert {pid for _, pid in ordered_map(slow_square, tasks[:3], workers=1)} == {os.getpid()}  # 1: in process


def test_tasks_are_drawn_only_as_results_are_taken():
    drawn = []

    def tasks():
        for n in range(20):
            drawn.append(n)
            yield (n, 0.0)

    results = ordered_map(slow_square, tasks(), workers=2, in_flight=3)
    next(results)
    assert len(drawn) <= 4  # the queue holds at most in_flight tasks: a 30 Gbp corpus is not read ahead
    assert len(list(results)) == 19


def test_an_input_error_in_a_worker_keeps_its_file_and_line():
    with pytest.raises(InputError) as caught:
        list(ordered_map(fail_on_three, range(6), workers=2))
    assert (caught.value.path, caught.value.line, str(caught.value)) == ("input.bed", 4, "input.bed:4: bad record")
