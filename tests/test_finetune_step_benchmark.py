"""benchmarks/finetune_step.py runs as users run it (`--quick`, CPU) and reports both lengths against its baseline.

Speeds are not asserted (performance lives in benchmarks/); this keeps the script from rotting.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_finetune_step_reports_short_and_long_windows_in_one_run():
    # not the process group an earlier in-process test of this worker opened (its port is taken)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    done = subprocess.run([sys.executable, "benchmarks/finetune_step.py", "--quick"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    rows = report["results"]
    assert [r["tokens"] for r in rows] == [100, 1600] and report["baseline"] == "finetune-100"
    assert report["problems"] == [] and report["pinned_core"] is not None
    assert rows[0]["ratio_vs_baseline"] == 1.0
    for row in rows:
        assert row["tokens_per_s"] > 0 and 0 <= row["data_ms"] < row["step_ms"]
        # every window is cut to exactly the row's length: tokens/s counts real tokens, not padding
        assert row["tokens_per_s"] * row["step_ms"] / 1000 == pytest.approx(row["tokens"] * row["batch"])
