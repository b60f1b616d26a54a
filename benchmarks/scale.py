"""How time and memory of every data step grow with input size, extrapolated to GRCh37 and the DeepSEA bundle.

    flock /work/cpu.lock python benchmarks/scale.py --out benchmarks/results   # ~35 min on 2 cores
    python benchmarks/scale.py --quick --out /tmp/scale                        # seconds (the test suite)

Inputs are generated at growing sizes in the real formats (benchmarks/scale_inputs.py): genomes of
25, 100 and 300 Mbp (chr1 of the largest: 210 Mbp, chr1's size class), bins BEDs with 919-column
label matrices, DeepSEA `train.mat` files in MATLAB v7.3 layout, bgzipped VCFs and a tiny
random-weight chromatin model. Each step runs as `gbb` runs it, one fresh interpreter per command
(`--quick`: forked from this one, so the test suite skips the imports), and is measured by
benchmarks/scale_measure.py: wall time, throughput, and peak RSS of the process tree.

Per step: growth exponents b of wall time and of peak RSS against size (log-log least squares);
"RSS at 10x" = 10^b_rss (acceptance: <= 1.5x, or a stated reason). Time is also fitted as
fixed + size / throughput (least squares): the fixed part is start-up (imports, loading a model,
training the tokenizer on its fixed sample), and the exponent of the rest over the last decade
measured tells whether the step is linear. Extrapolation to the step's target (GRCh37 at 10
corpus passes: 31 Gbp of documents; the DeepSEA bundle: 4.4M rows) follows that line, or the
power law when the rest clearly grows faster than linearly. This run makes 1 corpus pass (10 are
extrapolated linearly: each pass is an independent walk over the genome). 16 cores: Amdahl's law
with the parallel fraction p that the measured 2-worker speedup S2 (fixed part subtracted)
implies, p = 2 (1 - 1/S2); the corpus is also bounded by its largest contig (GRCh37's chr1 is 8%
of the genome: at most 12.4x). Steps without `--workers` count as one core.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
import scale_inputs as inputs  # noqa: E402  (a sibling script, also when run as `python benchmarks/scale.py`)
from scale_measure import Measurement, measure  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GRCH37_BP, GRCH37_CHR1_BP, PASSES = 3.1e9, 249.25e6, 10
TARGETS = {  # step -> (what, size in the step's unit)
    "corpus": ("GRCh37, 10 passes (31 Gbp)", GRCH37_BP * PASSES),
    "tokenizer": ("GRCh37, 10 passes (31 Gbp)", GRCH37_BP * PASSES),
    "shards": ("GRCh37, 10 passes (31 Gbp)", GRCH37_BP * PASSES),
    "windows": ("4.4M windows (DeepSEA's bins)", 4.4e6),
    "chromatin_bins": ("4.4M bins x 919 (DeepSEA size)", 4.4e6),
    "chromatin_deepsea": ("DeepSEA train.mat, 4.4M rows", 4.4e6),
    "evaluate": ("4.4M windows (DeepSEA size)", 4.4e6),
    "score_variants": ("10M variants", 1e7),
}
UNITS = {"corpus": "bp", "tokenizer": "bp", "shards": "bp", "windows": "windows", "chromatin_bins": "bins",
         "chromatin_deepsea": "rows", "evaluate": "windows", "score_variants": "variants"}
MEMORY_REASONS = {  # steps whose output is itself held in memory
    "evaluate": "holds the split's labels and predictions (windows x 919 x 3 strands, float32) for the "
                "metrics and predictions.h5: the output itself",
}


@dataclasses.dataclass(frozen=True)
class Plan:
    genome_mbp: tuple[float, ...]
    largest_contig_fraction: float  # chr1 of the largest genome
    vocab_size: int
    tokenizer_sentences: int
    windows: tuple[int, ...]
    window_bp: int
    bins: tuple[int, ...]
    bin_width: int
    deepsea_rows: tuple[int, ...]
    evaluate_windows: tuple[int, ...]  # evaluated on the bins data sets of these sizes
    variants: tuple[int, ...]
    variant_width: int
    workers_at: dict  # step -> the size at which 1 and 2 workers are compared
    features: int = inputs.N_FEATURES
    corpus_passes_compared: int = 5  # the corpus's 1-vs-2-worker runs: enough work to time beside start-up


FULL = Plan((25, 100, 300), 0.7, 4096, 20_000, (1000, 10_000, 100_000), 8000, (1000, 10_000, 100_000, 1_000_000),
            1000, (10_000, 100_000, 1_000_000), (1000, 10_000, 100_000), (10_000, 100_000, 1_000_000), 200,
            {"corpus": 100, "shards": 100, "chromatin_bins": 100_000, "chromatin_deepsea": 100_000,
             "evaluate": 10_000, "score_variants": 100_000})
QUICK = Plan((0.2, 0.6), 0.7, 300, 2000, (200, 800), 8000, (200, 800), 1000, (400, 2000), (200, 800),
             (100, 400), 200, {"corpus": 0.6, "shards": 0.6, "chromatin_bins": 800, "chromatin_deepsea": 2000,
                               "evaluate": 200, "score_variants": 400}, features=16, corpus_passes_compared=2)


class Bench:
    """Generates inputs in `work`, runs and measures the steps, and keeps every measurement."""

    def __init__(self, plan: Plan, work: Path, in_process: bool, seed: int = 0):
        self.plan, self.work, self.in_process, self.seed = plan, work, in_process, seed
        self.runs: list[dict] = []
        if in_process:  # import every pipeline once here, so that forked commands start at once
            from pipelines import cli

            for module in [module for module, _ in cli.COMMANDS.values()] + ["torch"]:  # torch: imported in run()
                importlib.import_module(module)

    def run(self, step: str, size: float, argv: list[str], workers: int = 1, series: bool | None = None) -> Measurement:
        """Measure one command. Runs with one worker form the step's size series, unless `series=False`."""
        label = f"{step}_{size:g}_w{workers}"
        result = measure([*argv, "--quiet"], self.work / f"{label}.log", self.in_process)
        record = {"step": step, "size": size, "unit": UNITS[step], "workers": workers,
                  "series": workers == 1 if series is None else series, **dataclasses.asdict(result)}
        self.runs.append(record)
        print(f"[scale] {label}: {result.wall_s:.1f} s, {result.peak_rss_mb:.0f} MB", file=sys.stderr, flush=True)
        return result

    def genome(self, mbp: float) -> Path:
        path = self.work / f"genome_{mbp:g}.fa"
        if not path.exists():
            total = int(mbp * 1e6)
            largest = int(total * self.plan.largest_contig_fraction) if mbp == max(self.plan.genome_mbp) else None
            inputs.write_genome(path, inputs.contig_sizes(total, largest), self.seed)
        return path


def genome_steps(bench: Bench) -> None:
    plan, work = bench.plan, bench.work
    for mbp in plan.genome_mbp:
        fasta, size = bench.genome(mbp), mbp * 1e6
        if plan.workers_at["corpus"] == mbp:  # 1 pass is too little work to time workers on: a few passes
            passes = plan.corpus_passes_compared
            for workers in (1, 2):
                bench.run("corpus", size * passes, [
                    "corpus", "--fasta", str(fasta), "--out", str(work / f"corpus_{mbp:g}x{passes}"),
                    "--passes", str(passes), "--threads", str(workers), "--workers", str(workers)], workers,
                    series=False)
            shutil.rmtree(work / f"corpus_{mbp:g}x{passes}")
        bench.run("corpus", size, ["corpus", "--fasta", str(fasta), "--out", str(work / f"corpus_{mbp:g}"),
                                   "--passes", "1", "--threads", "1", "--workers", "1"])
        bench.run("tokenizer", size, ["tokenizer", "train", "--corpus", str(work / f"corpus_{mbp:g}"), "--out",
                                      str(work / f"tok_{mbp:g}" / "bpe"), "--vocab-size", str(plan.vocab_size),
                                      "--input-sentence-size", str(plan.tokenizer_sentences), "--threads", "1"])
        tokenizer = work / f"tok_{min(plan.genome_mbp):g}" / "bpe.model"  # one model: the same work per base
        for workers in (1, 2) if plan.workers_at["shards"] == mbp else (1,):
            out = work / f"shards_{mbp:g}_w{workers}"
            bench.run("shards", size, ["shards", "--corpus", str(work / f"corpus_{mbp:g}"), "--tokenizer",
                                       str(tokenizer), "--out", str(out), "--threads", str(workers),
                                       "--workers", str(workers)], workers)
            shutil.rmtree(out)
        if mbp != min(plan.genome_mbp):
            shutil.rmtree(work / f"corpus_{mbp:g}")


def window_steps(bench: Bench) -> None:
    plan, work = bench.plan, bench.work
    fasta = bench.genome(max(plan.genome_mbp))
    for n in plan.windows:
        bed = work / f"windows_{n}.bed"
        inputs.write_bins(bed, None, fasta, n, bench.seed)
        bench.run("windows", n, ["windows", "--fasta", str(fasta), "--bed", str(bed), "--out",
                                 str(work / f"windows_{n}.h5"), "--width", str(plan.window_bp), "--threads", "1"])
        (work / f"windows_{n}.h5").unlink()
    features = inputs.write_feature_table(work / "features.tsv", plan.features)
    for n in plan.bins:
        bed, labels = inputs.write_bins(work / f"bins_{n}.bed", work / f"labels_{n}.npy", fasta, n, bench.seed,
                                        plan.features)
        for workers in (1, 2) if plan.workers_at["chromatin_bins"] == n else (1,):
            bench.run("chromatin_bins", n, [
                "chromatin", "prepare", "--bins", str(bed), "--labels", str(labels), "--features", str(features),
                "--fasta", str(fasta), "--width", str(plan.bin_width), "--out", str(work / f"bins_{n}_w{workers}"),
                "--threads", str(workers), "--workers", str(workers)], workers)
        labels.unlink()
    for rows in plan.deepsea_rows:
        bundle = inputs.write_deepsea_bundle(work / f"deepsea_{rows}", rows, bench.seed)  # always 919 labels
        for workers in (1, 2) if plan.workers_at["chromatin_deepsea"] == rows else (1,):
            out = work / f"deepsea_{rows}_w{workers}"
            bench.run("chromatin_deepsea", rows, ["chromatin", "prepare", "--deepsea-dir", str(bundle), "--out",
                                                  str(out), "--threads", str(workers), "--workers", str(workers)],
                      workers)
            shutil.rmtree(out)
        shutil.rmtree(bundle)


def loader_workers(cores: int) -> list[str]:
    """Options of evaluate / score-variants on `cores` cores: 1, all in one process; 2, two DataLoader
    workers (evaluate: tokenizing while the main process runs the tiny model; score-variants on CPU:
    each worker also runs the model on its own groups)."""
    return ["--threads", "1", "--workers", "0" if cores == 1 else str(cores)]


def model_steps(bench: Bench) -> None:
    plan, work = bench.plan, bench.work
    tokenizer = work / f"tok_{min(plan.genome_mbp):g}" / "bpe.model"
    checkpoint = inputs.write_tiny_classifier(work / "model", tokenizer, bench.seed, plan.features)
    for n in plan.evaluate_windows:
        for cores in (1, 2) if plan.workers_at["evaluate"] == n else (1,):
            out = work / f"evaluate_{n}_w{cores}"
            bench.run("evaluate", n, [
                "evaluate", "--checkpoint", str(checkpoint), "--data", str(work / f"bins_{n}_w1" / "chromatin.h5"),
                "--tokenizer", str(tokenizer), "--split", "train", "--out", str(out), "--device", "cpu",
                "--batch-size", "64", "--max-length", "64", *loader_workers(cores)], cores)
            shutil.rmtree(out)
    fasta = bench.genome(min(plan.genome_mbp))
    for n in plan.variants:
        vcf = inputs.write_vcf(work / f"variants_{n}.vcf.gz", fasta, n, bench.seed)
        for cores in (1, 2) if plan.workers_at["score_variants"] == n else (1,):
            out = work / f"scores_{n}_w{cores}.tsv"
            bench.run("score_variants", n, [
                "score-variants", "--vcf", str(vcf), "--fasta", str(fasta), "--checkpoint", str(checkpoint),
                "--tokenizer", str(tokenizer), "--width", str(plan.variant_width), "--out", str(out),
                "--batch-size", "64", "--device", "cpu", *loader_workers(cores)], cores)
            out.unlink()


def exponent(sizes: list[float], values: list[float]) -> float:
    """b of values ~ sizes^b, least squares in log-log (0 for a single size)."""
    if len(sizes) < 2:
        return 0.0
    return float(np.polyfit(np.log(sizes), np.log(np.maximum(values, 1e-9)), 1)[0])


def cores16_speedup(step: str, speedup2: float | None) -> float:
    """Amdahl's law at 16 workers from the 2-worker speedup (corpus: also at most genome / largest contig)."""
    if speedup2 is None:
        return 1.0
    parallel = min(1.0, max(0.0, 2 * (1 - 1 / speedup2)))
    speedup = 1 / ((1 - parallel) + parallel / 16)
    return min(speedup, GRCH37_BP / GRCH37_CHR1_BP) if step == "corpus" else speedup


def linear_fit(sizes: list[float], times: list[float]) -> tuple[float, float]:
    """(fixed seconds, seconds per unit) of t = fixed + per_unit x, least squares, fixed in [0, fastest run]."""
    if len(sizes) < 2:
        return 0.0, times[0] / sizes[0]
    per_unit, fixed = np.polyfit(sizes, times, 1)
    fixed = float(min(max(fixed, 0.0), min(times)))
    return fixed, max(float(per_unit), 1e-12)


def summarize(step: str, runs: list[dict]) -> dict:
    """Growth exponents, fixed cost and throughput, RSS at 10x, the 2-worker speedup and the extrapolations."""
    series = sorted((r for r in runs if r["step"] == step and r.get("series", r["workers"] == 1)),
                    key=lambda r: r["size"])
    sizes, wall = [r["size"] for r in series], [r["wall_s"] for r in series]
    rss = [r["peak_rss_mb"] for r in series]
    fixed, per_unit = linear_fit(sizes, wall)  # fixed: start-up (imports, model and tokenizer loading, sampling)
    variable = [max(t - fixed, 1e-3) for t in wall]
    # the growth of the variable part over the last decade measured, where the fixed cost matters least
    b_wall, b_variable, b_rss = exponent(sizes, wall), exponent(sizes[-2:], variable[-2:]), exponent(sizes, rss)
    compared = {r["workers"]: r for r in runs if r["step"] == step
                and any(o["step"] == step and o["size"] == r["size"] and o["workers"] == 2 for o in runs)}
    speedup2 = speedup2_wall = None
    if {1, 2} <= set(compared):  # the work itself (fixed cost subtracted), and the whole command
        speedup2 = max(compared[1]["wall_s"] - fixed, 1e-3) / max(compared[2]["wall_s"] - fixed, 1e-3)
        speedup2_wall = compared[1]["wall_s"] / compared[2]["wall_s"]
    what, target = TARGETS[step]
    # a power law extrapolates only a clearly superlinear step, not noise on a small variable part
    superlinear = b_variable > 1.1 and variable[-1] >= 0.5 * wall[-1]
    one_core = fixed + (variable[-1] * (target / sizes[-1]) ** b_variable if superlinear else per_unit * target)
    rss_10x = 10 ** b_rss
    return {
        "step": step, "unit": UNITS[step], "sizes": sizes, "wall_s": wall, "peak_rss_mb": rss,
        "max_process_rss_mb": [r["max_process_rss_mb"] for r in series],
        "time_exponent": round(b_wall, 3), "time_exponent_minus_fixed": round(b_variable, 3),
        "fixed_s": round(fixed, 2), "throughput_per_s": round(1 / per_unit, 1), "rss_exponent": round(b_rss, 3),
        "rss_ratio_10x": round(rss_10x, 3), "rss_ratio_measured": round(rss[-1] / rss[0], 3),
        "size_ratio": round(sizes[-1] / sizes[0], 2), "rss_growth_mb": round(rss[-1] - rss[0], 1),
        "bounded_memory": rss_10x <= 1.5, "memory_reason": MEMORY_REASONS.get(step),
        "target": what, "target_size": target, "extrapolation": "power law" if superlinear else "linear",
        "extrapolated_rss_mb": round(rss[-1] * (target / sizes[-1]) ** max(0.0, b_rss), 1),
        "speedup_2_workers": None if speedup2 is None else round(speedup2, 3),
        "speedup_2_workers_wall": None if speedup2_wall is None else round(speedup2_wall, 3),
        "extrapolated_s": {"1_core": round(one_core, 1),
                           "16_cores": round(fixed + (one_core - fixed) / cores16_speedup(step, speedup2), 1)},
    }


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def table(steps: list[dict]) -> str:
    """The README's markdown table."""
    lines = ["| step | sizes | time exp. | fixed + throughput (1 core) | peak RSS, smallest -> largest | RSS at 10x "
             "| 2 vs 1 workers | target | 1 core | 16 cores |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for s in steps:
        sizes = ", ".join(f"{x / 1e6:g}M" if x >= 1e6 else f"{x / 1e3:g}k" if x >= 1e3 else f"{x:g}"
                          for x in s["sizes"])
        memory = f"{s['rss_ratio_10x']:.2f}x" + ("" if s["bounded_memory"] else
                                                  " (holds its output)" if s["memory_reason"] else " **unbounded**")
        speedup = "-" if s["speedup_2_workers"] is None else (
            f"{s['speedup_2_workers']:.2f}x ({s['speedup_2_workers_wall']:.2f}x wall)")
        lines.append(
            f"| {s['step']} | {sizes} {s['unit']} | {s['time_exponent']:.2f} ({s['time_exponent_minus_fixed']:.2f}) "
            f"| {s['fixed_s']:.1f} s + {s['throughput_per_s']:,.0f} {s['unit']}/s "
            f"| {s['peak_rss_mb'][0]:,.0f} -> {s['peak_rss_mb'][-1]:,.0f} MB | {memory} | {speedup} | {s['target']} "
            f"| {duration(s['extrapolated_s']['1_core'])} | {duration(s['extrapolated_s']['16_cores'])} |")
    return "\n".join(lines)


def environment() -> dict:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "load_average_at_start": os.getloadavg(), "commit": commit or None,
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def write_report(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2)
    (out / "scale.json").write_text(text + "\n")
    (out / "scale.md").write_text(table(report["steps"]) + "\n")
    print(table(report["steps"]), file=sys.stderr)
    print(text)


def resummarize(path: Path, out: Path) -> dict:
    """The steps and table of a recorded run, recomputed from its runs (e.g. after changing `summarize`)."""
    report = json.loads(path.read_text())
    report["steps"] = [summarize(step, report["runs"]) for step in TARGETS]
    write_report(report, out)
    return report


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, commands forked from this process")
    parser.add_argument("--out", type=Path, required=True, help="writes scale.json and scale.md here")
    parser.add_argument("--work", type=Path, help="inputs and outputs (default: a temporary directory, removed)")
    parser.add_argument("--subprocess", action="store_true", help="with --quick: fresh interpreters, as the full run")
    parser.add_argument("--summarize", type=Path, metavar="JSON",
                        help="no measuring: recompute the steps and the table from a run's scale.json")
    args = parser.parse_args(argv)
    if args.summarize:
        return resummarize(args.summarize, args.out)
    plan = QUICK if args.quick else FULL
    work = args.work or Path(tempfile.mkdtemp(prefix="gbb_scale_"))
    work.mkdir(parents=True, exist_ok=True)
    bench = Bench(plan, work, in_process=args.quick and not args.subprocess)
    started = time.perf_counter()
    env = environment()
    try:
        genome_steps(bench)
        window_steps(bench)
        model_steps(bench)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    steps = [summarize(step, bench.runs) for step in TARGETS]
    report = {"benchmark": "scale", "mode": "quick" if args.quick else "full",
              "command": "python benchmarks/scale.py " + " ".join(sys.argv[1:] if argv is None else argv),
              **env, "in_process": bench.in_process, "plan": dataclasses.asdict(plan),
              "corpus_passes_measured": 1, "corpus_passes_extrapolated": PASSES,
              "seconds": round(time.perf_counter() - started, 1), "steps": steps, "runs": bench.runs}
    write_report(report, args.out)
    return report


if __name__ == "__main__":
    main()
