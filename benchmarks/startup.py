"""Start-up cost of `gbb` commands: wall time, peak RSS and the heavy libraries imported.

    python benchmarks/startup.py [--quick] [--repeats 5] [--out startup.json]

For every command: `gbb COMMAND --help`, and a run whose first input file does not exist, which
stops where the command first reads its input (what it carries before reading anything). For
`simulate`, `corpus`, `pretrain` and `finetune`: the time until the first log line of a real run
on tiny inputs. Baselines in the same run: `python -c pass` and `python -c "import torch"`.
Medians over `--repeats` runs, pinned to one core (the commands inherit the pinning). It fails
(exit status 1, reasons under "problems") when `--help` does not exit 0, a missing input is not
the one-line error (exit 2), or a run shows no log line.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):   # run as a file: make the repository's `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.harness import ROOT, environment, finish, pin_one_core  # noqa: E402
HEAVY = ("torch", "deepspeed", "transformers", "pandas", "matplotlib", "sklearn", "scipy", "h5py", "pyarrow",
         "sentencepiece", "pysam", "tensorboard", "pooch")
# Runs `gbb` in-process, then reports which heavy libraries it had imported (stderr, last line).
PROBE = ("import json, sys\nfrom pipelines import cli\ntry:\n    code = cli.main(sys.argv[1:])\n"
         "except SystemExit as stop:\n    code = stop.code or 0\n"
         "print(json.dumps(sorted(m for m in %r if m in sys.modules)), file=sys.stderr)\nsys.exit(code)\n" % (HEAVY,))

# A first input that does not exist, per command ("M" = missing file, "O" = an output path).
FIRST_INPUT = {
    ("windows",): ["--fasta", "M.fa", "--bed", "M.bed", "--out", "O/w.fa"],
    ("liftover",): ["--chain", "M.chain", "--bed", "M.bed", "--out", "O/l.bed", "--unmapped", "O/u.bed"],
    ("corpus",): ["--fasta", "M.fa", "--out", "O"],
    ("tokenizer", "train"): ["--corpus", "M", "--out", "O/tok"],
    ("shards",): ["--corpus", "M", "--tokenizer", "M.model", "--out", "O"],
    ("pretrain",): ["--config", str(ROOT / "configs/pretrain/tiny.yaml"), "data.tokenizer=M.model", "out_dir=O"],
    ("promoter", "prepare"): ["--bed", "M.bed", "--fasta", "M.fa", "--out", "O"],
    ("chromatin", "prepare"): ["--deepsea-dir", "M", "--out", "O"],
    ("finetune", "promoter"): ["--data", "M.h5", "--tokenizer", "M.model", "--out", "O",
                               "--config", str(ROOT / "configs/finetune/tiny_promoter.yaml")],
    ("evaluate",): ["--checkpoint", "M", "--data", "M.h5", "--tokenizer", "M.model", "--out", "O"],
    ("score-variants",): ["--vcf", "M.vcf", "--fasta", "M.fa", "--checkpoint", "M", "--tokenizer", "M.model",
                          "--out", "O/s.tsv"],
    ("data", "verify"): ["--dest", "M", "hg19"],
}


def run_measured(argv: list[str], cwd: Path) -> dict:
    """Wall time, peak RSS and heavy imports of one `gbb` process."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", PROBE, *argv], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    return {"s": seconds, "rss_mb": usage.ru_maxrss / 1024, "exit": proc.returncode,
            "heavy": json.loads(err.strip().splitlines()[-1])}


def median_of(argv: list[str], cwd: Path, repeats: int) -> dict:
    runs = [run_measured(argv, cwd) for _ in range(repeats)]
    return {"median_s": round(statistics.median(r["s"] for r in runs), 3),
            "median_rss_mb": round(statistics.median(r["rss_mb"] for r in runs), 1),
            "exit": runs[-1]["exit"], "heavy_imports": runs[-1]["heavy"]}


def baseline(code: str, repeats: int) -> dict:
    times, rss = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", code])
        _, _, usage = os.wait4(proc.pid, 0)
        times.append(time.perf_counter() - start)
        rss.append(usage.ru_maxrss / 1024)
    return {"median_s": round(statistics.median(times), 3), "median_rss_mb": round(statistics.median(rss), 1)}


def tiny_inputs(work: Path) -> dict[tuple[str, ...], list[str]]:
    """Real tiny inputs for the first-log-line runs: a simulated genome, shards, a promoter data set."""
    import numpy as np

    from genomics_bigbird.data.corpus import corpus_files, write_corpus
    from genomics_bigbird.data.labeled import LabeledWriter
    from genomics_bigbird.data.shards import write_shards
    from genomics_bigbird.genome import ReferenceGenome
    from genomics_bigbird.genome.simulate import simulate
    from genomics_bigbird.tokenizer import DNATokenizer

    genome = simulate(work / "sim", seed=0, scale=0.05)
    write_corpus(ReferenceGenome(genome.fasta), work / "corpus", passes=1, seed=0)
    tokenizer = DNATokenizer.train(corpus_files(work / "corpus"), vocab_size=64, model_prefix=work / "tok" / "bpe",
                                   seed=0)
    write_shards(corpus_files(work / "corpus"), tokenizer, work / "shards")
    rng = np.random.default_rng(0)
    with LabeledWriter(work / "promoter.h5", window=200, feature_names=["promoter"], feature_groups=["promoter"],
                       task="promoter", scheme="replace", source="benchmark", seed=0) as out:
        for split in ("train", "valid", "test"):
            out.append(["".join(rng.choice(list("ACGT"), 200)) for _ in range(16)],
                       np.array([[1], [0]] * 8), [split] * 16)
    model = {"config": str(ROOT / "configs/model/tiny.yaml"), "vocab_size": len(tokenizer), "hidden_size": 32,
             "num_layers": 1, "num_heads": 2, "intermediate_size": 64}
    # RUN: replaced by a fresh output directory for each repeat
    return {
        ("simulate",): ["--out", "RUN", "--scale", "0.05"],
        ("corpus",): ["--fasta", str(genome.fasta), "--out", "RUN", "--passes", "1"],
        ("pretrain",): ["--config", str(ROOT / "configs/pretrain/tiny.yaml"), f"data.shards={work / 'shards'}",
                        f"data.tokenizer={tokenizer.path}", "data.max_length=128", "out_dir=RUN",
                        *(f"model.{key}={value}" for key, value in model.items() if key != "config")],
        ("finetune", "promoter"): ["--data", str(work / "promoter.h5"), "--tokenizer", str(tokenizer.path),
                                   "--out", "RUN", "--config", str(ROOT / "configs/finetune/tiny_promoter.yaml"),
                                   f"model={json.dumps(model)}"],
    }


def first_log_line(argv: list[str], cwd: Path) -> float | None:
    """Seconds from process start to the first `[gbb.*]` log line on stderr (the run is then stopped);
    None when the command ended without one."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", *argv], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if line.startswith("[gbb."):
                return round(time.perf_counter() - start, 3)
        return None
    finally:
        proc.kill()
        proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repeat, three commands (for the test suite)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    from pipelines import cli

    core = pin_one_core()
    repeats = 1 if args.quick else args.repeats
    commands = list(cli._available())
    if args.quick:
        commands = [c for c in commands if c in (("corpus",), ("pretrain",), ("finetune", "promoter"))]
    report = {"benchmark": "startup", **environment(), "pinned_core": core,
              "config": {"repeats": repeats, "statistic": "median", "quick": args.quick},
              "baseline": {"python -c pass": baseline("pass", repeats),
                           "python -c 'import torch'": baseline("import torch", repeats)},
              "commands": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for words in commands:
            entry = {"help": median_of([*words, "--help"], work, repeats)}
            if words in FIRST_INPUT:
                entry["first_input"] = median_of([*words, *FIRST_INPUT[words], "--quiet"], work, repeats)
            report["commands"][" ".join(words)] = entry
        for words, argv in tiny_inputs(work).items():
            if words in commands:
                times = [first_log_line([*words, *(a.replace("RUN", str(work / f"run{i}")) for a in argv)], work)
                         for i in range(repeats)]
                report["commands"][" ".join(words)]["first_log_line_s"] = (
                    None if None in times else round(statistics.median(times), 3))
    reasons = []
    for name, entry in report["commands"].items():
        if entry["help"]["exit"] != 0:
            reasons.append(f"gbb {name} --help exited {entry['help']['exit']}")
        if "first_input" in entry and entry["first_input"]["exit"] != 2:
            reasons.append(f"gbb {name} with a missing input exited {entry['first_input']['exit']}, not 2")
        if "first_log_line_s" in entry and entry["first_log_line_s"] is None:
            reasons.append(f"gbb {name} ended without a log line")
    return finish(report, args.out, reasons)


if __name__ == "__main__":
    sys.exit(main())
