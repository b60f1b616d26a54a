"""benchmarks/scale.py: its measurements count child processes, and `--quick` runs every step at two sizes.

Nothing here asserts a speed: the figures live in benchmarks/results/scale.json.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from scale import cores16_speedup, exponent, linear_fit  # noqa: E402
from scale_measure import measure_command  # noqa: E402

PARENT_AND_CHILD = """
import subprocess, sys, time
held = b"\\x01" * (150 << 20)  # written, so resident
child = subprocess.Popen([sys.executable, "-c", "import time; b = b'\\\\x01' * (100 << 20); time.sleep(0.6)"])
child.wait()
"""


def test_peak_memory_is_the_sum_over_the_process_tree(tmp_path):
    result = measure_command([sys.executable, "-c", PARENT_AND_CHILD], tmp_path / "log")
    assert result.max_processes == 2
    assert 150 < result.max_process_rss_mb < 240         # the largest process alone (its VmHWM)
    assert result.peak_rss_mb > 250                      # parent and child at once (sampled sum)


def test_exponents_and_the_16_core_rule():
    sizes = [1e3, 1e4, 1e5]
    assert exponent(sizes, [2 * s for s in sizes]) == pytest.approx(1.0)
    assert exponent(sizes, [300.0, 300.0, 300.0]) == pytest.approx(0.0, abs=1e-9)
    assert linear_fit(sizes, [3 + s / 500 for s in sizes]) == pytest.approx((3.0, 1 / 500))  # 3 s + 500 units/s
    assert linear_fit([1e3, 1e4], [0.5, 20.0])[0] == 0.0  # a negative intercept is no fixed cost
    assert cores16_speedup("shards", 2.0) == pytest.approx(16.0)  # all parallel
    assert cores16_speedup("shards", 1.0) == pytest.approx(1.0)   # nothing parallel
    assert cores16_speedup("corpus", 2.0) == pytest.approx(3.1e9 / 249.25e6)  # at most genome / chr1
    assert cores16_speedup("windows", None) == 1.0


@pytest.mark.slow  # ~20 s: 20 forked gbb commands on tiny generated inputs
def test_quick_run_measures_every_step_at_two_sizes_and_extrapolates(tmp_path):
    done = subprocess.run([sys.executable, "benchmarks/scale.py", "--quick", "--out", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    steps = {s["step"]: s for s in report["steps"]}
    assert list(steps) == ["corpus", "tokenizer", "shards", "windows", "chromatin_bins", "chromatin_deepsea",
                           "evaluate", "score_variants"]
    for step in steps.values():
        assert len(step["sizes"]) >= 2 and all(w > 0 for w in step["wall_s"]) and min(step["peak_rss_mb"]) > 0
        assert np.isfinite([step["time_exponent"], step["rss_exponent"]]).all()
        assert step["extrapolated_s"]["16_cores"] <= step["extrapolated_s"]["1_core"]
    for step in ("corpus", "shards", "chromatin_bins", "chromatin_deepsea", "evaluate"):
        assert steps[step]["speedup_2_workers"] is not None, step  # 1 and 2 workers, measured in this run
    table = (tmp_path / "scale.md").read_text().splitlines()
    assert len(table) == 2 + len(steps) and json.loads((tmp_path / "scale.json").read_text())["steps"]
