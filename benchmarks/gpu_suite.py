"""One-shot GPU suite: every GPU figure of the project in one command and one folder, in 8 minutes on one H100/H200.

    python benchmarks/gpu_suite.py --out DIR            # CUDA: the parts below, then DIR/summary.md
    python benchmarks/gpu_suite.py --quick --out DIR    # CPU: every part in miniature (the test suite runs it)

Parts, in order, each a subprocess with its own time budget (seconds on the GPU, summed <= 480),
so one slow part cannot eat the others'. A part that fails or runs out of time is recorded and the
suite goes on; the exit status is 1 if any part failed or any target was missed.
- gpu_check (60): flex compiled == gather == float64 reference, fp32 and bf16, 11 lengths (6 off
  the block grid), compiled-graph count; flex at 16k tokens >= 5x faster than dense SDPA.
- attention (55): forward + backward at 4k x 4, 16k, 64k; every kernel, dense SDPA, HF BigBird.
- train_step_4k / _16k / _64k (70 / 45 / 50): MLM+NSP step, base config, 4k x 8, 16k x 2, 64k x 1;
  bigbird-128, bigbird-64, combiner-fixed, combiner-axial, dense SDPA; HF BigBird and BERT at 4k.
  The encoder runs eagerly around the compiled flex kernel: compiling the whole encoder anew for
  every shape and variant would not fit 8 minutes (`--compile-encoder` turns it on).
- score_variants (45): base, 8 kbp windows, RC-ensembled; ours, dense, HF BigBird (the attention
  HF actually ran is read back).
- prepare (20): simulated genome -> corpus -> BPE -> shards, chromatin windows (8 kbp).
- pretrain (50) and pretrain_resume (35): `gbb pretrain`, base, 4k tokens, bf16, ZeRO-2, 30 steps,
  checkpoint; then `--resume` for 5 more steps. The loss must fall and the steps continue 31..35.
- finetune_chromatin (45): `gbb finetune chromatin` from that checkpoint, 20 steps, validated.

DIR receives each part's JSON and log, suite.json and summary.md (our figures beside the in-run
baselines, the issue's H100 anchors and the targets, pass or fail). Scratch data (genome, corpus,
checkpoints) goes to a temporary folder, deleted at the end.

Wheels the GPU machine's Python lacks (its image has torch, transformers, sentencepiece, h5py,
pandas, scikit-learn, einops, safetensors...): deepspeed (and its hjson, pydantic, pydantic-core,
annotated-types, typing-inspection), pysam, pyliftover. `bash benchmarks/gpu_wheels.sh` builds
them into .whl/ (git-ignored, about 9 MB); the `run` command line is in the README (Benchmarks).
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

if __package__ in (None, ""):   # run as a file: make the repository's `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.gpu_summary import derive_outputs, summary_rows, write_summary  # noqa: E402
from benchmarks.harness import ROOT, write_report  # noqa: E402

GBB = (sys.executable, "-m", "pipelines.cli")
SUITE_BUDGET_S = 480


@dataclass
class Setting:
    """Where a suite run writes, and how big it is."""

    out: Path
    work: Path
    quick: bool
    compile_encoder: bool


@dataclass
class Part:
    name: str
    budget_s: float                                   # on the GPU
    commands: Callable[[Setting], list[list[str]]]    # argv lists, run in order within the budget


def benchmark(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", f"benchmarks.{module}", *args]


def gpu_check(s: Setting) -> list[list[str]]:
    sizes = ["--quick", "--lengths", "130"] if s.quick else []
    return [benchmark("gpu_check", "--out", str(s.out / "gpu_check.json"), *sizes)]


def attention(s: Setting) -> list[list[str]]:
    if s.quick:
        sizes = ["--quick", "--shapes", "256x1",
                 "--methods", "dense-sdpa,bigbird-gather-64,bigbird-flex-64,combiner-fixed"]
    else:
        sizes = ["--shapes", "4096x4,16384x1,65536x1"]
    return [benchmark("attention", "--out", str(s.out / "attention.json"), *sizes)]


def train_step(shape: str, quick_shape: str, hf: bool) -> Callable[[Setting], list[list[str]]]:
    def commands(s: Setting) -> list[list[str]]:
        out = ["--out", str(s.out / f"train_step_{shape.split('x')[0]}.json")]
        if s.quick:
            return [benchmark("train_step", *out, "--quick", "--shapes", quick_shape, "--hf-shapes", quick_shape,
                              "--steps", "1", "--variants", "bigbird-64,dense-sdpa" + (",hf-bigbird" if hf else ""))]
        variants = "bigbird-128,bigbird-64,combiner-fixed,combiner-axial,dense-sdpa"
        variants += ",hf-bigbird,hf-bert" if hf else ""
        compiled = [] if s.compile_encoder else ["--no-compile"]
        return [benchmark("train_step", *out, "--shapes", shape, "--hf-shapes", shape, "--variants", variants,
                          "--steps", "5", "--warmup", "2", *compiled)]
    return commands


def score_variants(s: Setting) -> list[list[str]]:
    sizes = (["--quick", "--variants", "2", "--warmup", "1"] if s.quick
             else ["--variants", "1000", "--warmup", "64"])
    return [benchmark("score_variants", "--out", str(s.out / "score_variants.json"), *sizes)]


def prepare(s: Setting) -> list[list[str]]:
    from genomics_bigbird.genome.simulate import CONTIG_LENGTHS
    scale, width, vocab = (0.1, 200, 128) if s.quick else (0.5, 8000, 4096)
    chr7 = round(CONTIG_LENGTHS["chr7"] * scale)
    w, sim = s.work, s.work / "simulated"
    return [[*GBB, "simulate", "--out", str(sim), "--scale", str(scale), "--quiet"],
            [*GBB, "corpus", "--fasta", str(sim / "genome.fa"), "--out", str(w / "corpus"), "--passes", "2", "--quiet"],
            [*GBB, "tokenizer", "train", "--corpus", str(w / "corpus"), "--out", str(w / "tok" / "dna_bpe"),
             "--vocab-size", str(vocab), "--quiet"],
            [*GBB, "shards", "--corpus", str(w / "corpus"), "--tokenizer", str(w / "tok" / "dna_bpe.model"),
             "--out", str(w / "shards"), "--quiet"],
            [*GBB, "chromatin", "prepare", "--bins", str(sim / "chromatin_bins.bed"),
             "--labels", str(sim / "chromatin_labels.npy"), "--features", str(sim / "chromatin_features.tsv"),
             "--fasta", str(sim / "genome.fa"), "--width", str(width),
             "--valid-region", f"chr7:{chr7 // 4 + 1}-{3 * chr7 // 4}", "--out", str(w / "chromatin"), "--quiet"]]


def pretrain_argv(s: Setting, steps: int) -> list[str]:
    """`gbb pretrain`: base at 4k tokens, bf16, ZeRO-2 (quick: tiny, 64 tokens); a checkpoint at step 30 (quick: 6)."""
    config, length, batch, every = (("tiny", 64, 4, 6) if s.quick else ("base", 4096, 8, 30))
    tokenizer = s.work / "tok" / "dna_bpe.model"
    return [*GBB, "pretrain", "--config", str(ROOT / "configs" / "pretrain" / f"{config}.yaml"), "--quiet",
            f"model.vocab_size={128 if s.quick else 4096}", f"data.shards={s.work / 'shards'}",
            f"data.tokenizer={tokenizer}", f"data.max_length={length}", f"out_dir={s.work / 'pretrain'}",
            f"train.steps={steps}", f"train.global_batch_size={batch}", f"train.micro_batch_size={batch}",
            "train.lr=5e-4" if not s.quick else "train.lr=3e-3", "train.warmup_steps=3",
            f"train.checkpoint_every={every}", "train.log_every=1", "train.zero_stage=2",
            f"train.precision={'auto' if s.quick else 'bf16'}"]


PRETRAIN_STEPS = {False: (30, 35), True: (6, 8)}   # (first run, after the resume), by quick


def pretrain(s: Setting) -> list[list[str]]:
    return [pretrain_argv(s, PRETRAIN_STEPS[s.quick][0])]


def pretrain_resume(s: Setting) -> list[list[str]]:
    return [[*pretrain_argv(s, PRETRAIN_STEPS[s.quick][1]), "--resume"]]


def finetune_chromatin(s: Setting) -> list[list[str]]:
    config, steps, batch, length = ("tiny_chromatin", 4, 4, 64) if s.quick else ("chromatin", 20, 8, 4096)
    return [[*GBB, "finetune", "chromatin", "--data", str(s.work / "chromatin" / "chromatin.h5"),
             "--tokenizer", str(s.work / "tok" / "dna_bpe.model"), "--pretrained", str(s.work / "pretrain" / "final"),
             "--config", str(ROOT / "configs" / "finetune" / f"{config}.yaml"), "--out", str(s.work / "finetune"),
             "--quiet", f"train.steps={steps}", "train.epochs=null", f"train.global_batch_size={batch}",
             f"train.micro_batch_size={batch}", f"train.eval_every={steps}", "train.log_every=1",
             "train.warmup_steps=1", f"data.max_length={length}", "data.num_workers=0"]]


PARTS = [
    Part("gpu_check", 60, gpu_check),
    Part("attention", 55, attention),
    Part("train_step_4k", 70, train_step("4096x8", "128x2", hf=True)),
    Part("train_step_16k", 45, train_step("16384x2", "192x1", hf=False)),
    Part("train_step_64k", 50, train_step("65536x1", "256x1", hf=False)),
    Part("score_variants", 45, score_variants),
    Part("prepare", 20, prepare),
    Part("pretrain", 50, pretrain),
    Part("pretrain_resume", 35, pretrain_resume),
    Part("finetune_chromatin", 45, finetune_chromatin),
]
assert sum(part.budget_s for part in PARTS) <= SUITE_BUDGET_S


def _children_cpu_s() -> float:
    """CPU seconds (user + system) of the finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _kill_group(process: subprocess.Popen) -> None:
    """Kill the process group a command started (its own session) and reap the command."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def run_part(part: Part, setting: Setting, budget_s: float) -> dict:
    """Run a part's commands within `budget_s`; its whole process group is killed when time runs out."""
    log_path = setting.out / f"{part.name}.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "PYTHONUNBUFFERED": "1"}
    start, record = time.monotonic(), {"part": part.name, "budget_s": budget_s, "status": "ok", "commands": []}
    with open(log_path, "w") as log:
        for argv in part.commands(setting):
            began, left = time.monotonic(), budget_s - (time.monotonic() - start)
            cpu_before = _children_cpu_s()
            log.write(f"$ {' '.join(argv)}\n")
            log.flush()
            process = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env,
                                       start_new_session=True)
            try:
                code = process.wait(timeout=max(left, 0.1))
            except subprocess.TimeoutExpired:
                code = None
            _kill_group(process)   # what is left of it too (compile workers, data loaders)
            record["commands"].append({"argv": " ".join(argv[1:]), "seconds": round(time.monotonic() - began, 1),
                                       "cpu_s": round(_children_cpu_s() - cpu_before, 1), "exit_code": code})
            if code is None:
                record.update(status="timeout", error=f"out of time after {budget_s:.0f} s")
                break
            if code != 0:
                record.update(status="failed", error=f"exit {code}: {' '.join(argv[2:5])}")
                break
    record["seconds"] = round(time.monotonic() - start, 1)
    record["log"] = log_path.name
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the JSON files, logs and summary.md")
    parser.add_argument("--quick", action="store_true", help="CPU, every part in miniature")
    parser.add_argument("--compile-encoder", action="store_true",
                        help="torch.compile the whole encoder in train_step (needs far more than 8 minutes)")
    parser.add_argument("--parts", help=f"comma list out of {','.join(p.name for p in PARTS)} (default: all)")
    parser.add_argument("--work", type=Path, help="keep the scratch data (genome, corpus, checkpoints) here")
    args = parser.parse_args(argv)
    chosen = [p for p in PARTS if not args.parts or p.name in args.parts.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work.resolve() if args.work else Path(tempfile.mkdtemp(prefix="gpu_suite_"))
    setting = Setting(args.out.resolve(), work, args.quick, args.compile_encoder)
    scale = 3 if args.compile_encoder else 1
    records = []
    try:
        for part in chosen:
            budget = 120 if args.quick else part.budget_s * (scale if part.name.startswith("train_step") else 1)
            records.append(run_part(part, setting, budget))
            print(f"{part.name}: {records[-1]['status']} in {records[-1]['seconds']} s", file=sys.stderr, flush=True)
        derive_outputs(setting.out, work, PRETRAIN_STEPS[args.quick])
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    rows = summary_rows(setting.out, judged=not args.quick)
    suite = {"suite": "gpu", "quick": args.quick, "encoder_compiled": args.compile_encoder, "parts": records,
             "figures": rows}
    write_report(suite, setting.out / "suite.json")
    write_summary(setting.out / "summary.md", suite)
    failed = [r["part"] for r in records if r["status"] != "ok"] + [r["figure"] for r in rows if r["result"] == "FAIL"]
    for name in failed:
        print(f"gpu suite: {name} did not pass", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
