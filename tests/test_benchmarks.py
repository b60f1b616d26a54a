"""The benchmark scripts run as users run them (`--quick`, CPU) and print JSON with their in-run baseline.

Speeds are never asserted here (DEVELOPERS: performance lives in benchmarks/); this keeps the
scripts the GPU runs depend on from rotting between GPU sessions.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_quick(*command: str) -> dict:
    done = subprocess.run([sys.executable, *command, "--quick"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_gpu_check_kernels_agree_with_the_float64_reference_on_cpu():
    report = run_quick("benchmarks/gpu_check.py")
    assert report["failed"] == 0 and report["passed"] > 0
    assert {r["backend"] for r in report["results"] if "backend" in r} >= {"flex", "gather"}


@pytest.mark.parametrize("command, baseline", [
    (("benchmarks/attention.py",), "dense-sdpa"),
    (("-m", "benchmarks.train_step"), "dense-sdpa"),
    (("benchmarks/score_variants.py",), "full"),
])
def test_speed_benchmarks_measure_ours_and_the_baseline_in_one_run(command, baseline):
    report = run_quick(*command)
    names = {r.get("method") or r.get("model") or r.get("attention") for r in report["results"]}
    assert any(name.startswith(baseline) for name in names), names
    assert any(name.startswith("bigbird") for name in names), names


def test_tokenize_benchmark_reports_ours_against_raw_sentencepiece():
    report = run_quick("benchmarks/tokenize_throughput.py")
    tokenize = report["tokenize_8kbp"]
    assert tokenize["encode_mbp_s"] > 0 and tokenize["baseline_sentencepiece_encode_mbp_s"] > 0
    assert report["instances_4096"]["in_memory"]["instances_s"] > 0
