import json
import os
import subprocess
import sys
import time

import pytest

from pipelines import cli, threads


def test_threads_option_sets_torch_logs_the_choice_and_records_it(tmp_path):
    import torch

    out = tmp_path / "sim"
    assert cli.main(["simulate", "--out", str(out), "--scale", "0.05", "--threads", "2", "--quiet"]) == 0
    assert torch.get_num_threads() == 2
    assert os.environ["OMP_NUM_THREADS"] == "2"      # inherited by workers and child processes
    assert "using 2 CPU threads (--threads" in (out / "simulate.log").read_text()
    assert json.loads((out / "manifest.json").read_text())["runtime"]["threads"] == 2


def test_threads_must_be_positive(capsys):
    assert cli.main(["simulate", "--out", "unused", "--threads", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["gbb simulate: error: --threads must be at least 1, got 0"]


def test_default_obeys_omp_num_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.default_threads() == threads.ThreadChoice(3, "from OMP_NUM_THREADS")


def test_default_leaves_out_a_core_that_another_process_keeps_busy():
    """The oversubscription case: one other busy process on our cores costs us a thread."""
    cpus = threads.usable_cpus()
    if cpus < 2:
        pytest.skip("needs two usable CPUs to show a busy one left out")
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
        probe = "from pipelines import threads; print(threads.default_threads().threads)"
        time.sleep(0.5)   # let the spinner reach full speed
        chosen = int(subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                                    text=True, check=True).stdout)
    finally:
        spinner.kill()
    assert 1 <= chosen <= cpus - 1
