"""The benchmark scripts run as users run them (CPU, tiny sizes) and cannot report a table they did not measure.

Speeds are never asserted here (performance lives in benchmarks/); this keeps the scripts the GPU
runs depend on from rotting between GPU sessions. The GPU suite runs once in its --quick mode
(every part in miniature, ~90 CPU-seconds); its parts' JSON files are checked below.
"""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*command: str, check: bool = True) -> subprocess.CompletedProcess:
    # not the process group an earlier in-process test of this worker opened (its port is taken)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    done = subprocess.run([sys.executable, *command], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """benchmarks/gpu_suite.py --quick, run once: its folder."""
    out = tmp_path_factory.mktemp("gpu_suite")
    run("benchmarks/gpu_suite.py", "--quick", "--out", str(out))
    return out


def part(suite, name) -> dict:
    return json.loads((suite / f"{name}.json").read_text())


def test_gpu_suite_quick_runs_every_part_and_writes_its_summary(suite):
    report = part(suite, "suite")
    assert [p["part"] for p in report["parts"]] == [
        "gpu_check", "attention", "train_step_4k", "train_step_16k", "train_step_64k", "score_variants",
        "prepare", "pretrain", "pretrain_resume", "finetune_chromatin"]
    assert all(p["status"] == "ok" for p in report["parts"]), report["parts"]
    summary = (suite / "summary.md").read_text()
    for figure in ("kernels == float64 reference", "attention forward+backward, 256 x 1, bigbird-gather-64",
                   "MLM+NSP step, 256 x 1, bigbird-64", "variant scoring", "gbb pretrain", "gbb finetune chromatin"):
        assert figure in summary
    assert "FAIL" not in summary and summary.count("not judged (CPU)") >= 2


def test_gpu_check_kernels_agree_with_the_float64_reference_on_cpu(suite):
    report = part(suite, "gpu_check")
    assert report["failed"] == 0 and report["passed"] > 0 and report["problems"] == []
    assert {r["backend"] for r in report["results"] if "backend" in r} >= {"flex", "gather"}


@pytest.mark.parametrize("name, key, figure, baseline", [
    ("attention", "method", "median_ms", "dense-sdpa"),
    ("train_step_4096", "model", "tokens_per_s", "dense-sdpa"),
    ("train_step_65536", "model", "tokens_per_s", "dense-sdpa"),
    ("score_variants", "model", "variants_per_s", "full"),
])
def test_speed_benchmarks_time_the_baseline_and_ours_in_one_run(suite, name, key, figure, baseline):
    report = part(suite, name)
    assert report["problems"] == [] and report["baseline"] == baseline
    assert any(r[key] == baseline and finite(r.get(figure)) for r in report["results"])
    assert any(r[key].startswith("bigbird") and finite(r.get(figure)) for r in report["results"])


def test_score_variants_records_the_attention_hf_ran_not_the_one_requested(suite):
    # 600 bp windows are ~180 tokens, below HF's (5 + 2 x 2) x 32 = 288: HF switches itself to full attention
    hf = next(r for r in part(suite, "score_variants")["results"] if r["model"] == "hf-bigbird")
    assert hf["attention_requested"] == "block_sparse" and hf["attention_ran"] == ["original_full"]


def test_a_kernel_that_raises_fails_the_benchmark():
    # gather-64 raises: the run records the error, still times the others, and exits 1
    code = ("import sys, genomics_bigbird.model.attention.bigbird as bb, benchmarks.attention as a\n"
            "def broken(*args): raise RuntimeError('kernel broke')\n"
            "bb._gather_attention = broken\n"
            "sys.exit(a.main(['--quick', '--shapes', '128x1', '--methods', 'dense-sdpa,bigbird-gather-64']))")
    done = run("-c", code, check=False)
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["problems"] and "kernel broke" in report["problems"][0]
    assert finite(next(r for r in report["results"] if r["method"] == "dense-sdpa")["median_ms"])


def test_a_failed_flex_64_is_retimed_at_128_under_its_own_name():
    code = ("import sys, benchmarks.attention as a\n"
            "core = a.core_attention\n"
            "def failing(method, heads):\n"
            "    if method == 'bigbird-flex-64': raise RuntimeError('tiles refused')\n"
            "    return core(method, heads)\n"
            "a.core_attention = failing\n"
            "sys.exit(a.main(['--quick', '--shapes', '256x1', '--methods', 'dense-sdpa,bigbird-flex-64']))")
    done = run("-c", code, check=False)
    assert done.returncode == 1                               # our flex-64 row raised
    rows = {r["method"]: r for r in json.loads(done.stdout)["results"]}
    assert "error" in rows["bigbird-flex-64"] and "median_ms" not in rows["bigbird-flex-64"]
    stand_in = rows["bigbird-flex-128-for-64"]
    assert stand_in["block_size"] == 128 and finite(stand_in["median_ms"])


def test_windows_benchmark_reports_ours_against_raw_pysam():
    report = json.loads(run("benchmarks/windows.py", "--quick").stdout)
    assert report["problems"] == [] and report["pinned_core"] is not None and report["cpu_cores_usable"] == 1
    for label in ("plain", "bgzip"):
        assert finite(report["figures"][f"extract_windows_{label}_per_s"])
        assert finite(report["figures"][f"pysam_fetch_{label}_per_s"])


def test_tokenize_benchmark_reports_ours_against_raw_sentencepiece():
    report = json.loads(run("benchmarks/tokenize_throughput.py", "--quick").stdout)
    tokenize = report["tokenize_8kbp"]
    assert finite(tokenize["encode_mbp_s"]) and finite(tokenize["baseline_sentencepiece_encode_mbp_s"])
    assert finite(report["instances_4096"]["in_memory"]["instances_s"])


def test_startup_benchmark_reports_commands_against_the_python_and_torch_baselines():
    report = json.loads(run("benchmarks/startup.py", "--quick").stdout)
    assert report["problems"] == [] and report["pinned_core"] is not None
    assert all(finite(row["median_s"]) for row in report["baseline"].values())
    for name in ("corpus", "pretrain", "finetune promoter"):
        entry = report["commands"][name]
        assert "torch" not in entry["help"]["heavy_imports"] and finite(entry["help"]["median_rss_mb"])
        assert entry["first_input"]["exit"] == 2 and finite(entry["first_log_line_s"])


def test_a_gpu_suite_part_out_of_time_is_killed_with_its_children(tmp_path):
    # the part's command starts a grandchild; both sleep far past the 2 s budget
    pid_file = tmp_path / "grandchild.pid"
    sleeper = (f"import subprocess, time; p = subprocess.Popen(['sleep', '60']); "
               f"open({str(pid_file)!r}, 'w').write(str(p.pid)); time.sleep(60)")
    code = (f"import json, sys\nfrom pathlib import Path\nfrom benchmarks.gpu_suite import Part, Setting, run_part\n"
            f"part = Part('sleeper', 2, lambda s: [[sys.executable, '-c', {sleeper!r}]])\n"
            f"setting = Setting(Path({str(tmp_path)!r}), Path({str(tmp_path)!r}), True, False)\n"
            f"print(json.dumps(run_part(part, setting, 2)))")
    record = json.loads(run("-c", code).stdout)
    assert record["status"] == "timeout" and record["seconds"] < 10
    stat = Path(f"/proc/{pid_file.read_text()}/stat")
    assert not stat.exists() or stat.read_text().split(")")[-1].split()[0] in ("Z", "X")   # gone, or a zombie
