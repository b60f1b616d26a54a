"""Tiny-model fine-tuning step on CPU: tokens/s of short and long windows, measured in one run; prints JSON.

Each row times the path `gbb finetune chromatin` runs, on windows of the simulated genome: rows read
from the labeled-windows HDF5, tokenized (`[CLS] window [SEP]`, cut to exactly TOKENS tokens),
collated, then one DeepSpeed step of the classifier (forward, positive-weighted BCE, backward,
AdamW; `classification_step`). The baseline is the shortest row: a long-context model is usable
on CPU when its long windows keep at least half the baseline's tokens/s.

    python benchmarks/finetune_step.py --out finetune_step.json            # 100 and 1,600 tokens, batch 16
    python benchmarks/finetune_step.py --quick                             # batch 4, fewer steps
    python -m benchmarks.train_step --quick --finetune                     # the same rows in train_step's JSON

Threads: one (pinned to one core) unless --threads says otherwise, so the ratio is not a
measure of how busy the other core was.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import statistics
import sys
import tempfile
import time
import traceback
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BASELINE_TOKENS = 100


def build_inputs(root: Path, vocab_size: int, rows: int, token_counts: list[int]) -> tuple:
    """(tokenizer, {tokens: labeled-windows path}) on the simulated genome: windows long enough to be cut."""
    from genomics_bigbird.data.labeled import LabeledWriter
    from genomics_bigbird.genome import ReferenceGenome
    from genomics_bigbird.genome.simulate import simulate
    from genomics_bigbird.tokenizer import DNATokenizer

    sim = simulate(root / "sim", seed=0, scale=0.2)
    genome = ReferenceGenome(sim.fasta)
    sentences = [genome.fetch(c, s, s + 1000) for c, n in sim.contigs.items() for s in range(0, n - 1000, 1000)]
    tokenizer = DNATokenizer.train(sentences, vocab_size=vocab_size, model_prefix=root / "bpe", seed=0)
    bp_per_token = tokenizer.bp_per_token(sentences[::10])
    bins = [line.split("\t") for line in sim.chromatin_bins.read_text().splitlines()]
    labels = np.load(sim.chromatin_labels)
    picks = np.random.default_rng(0).choice(len(bins), size=rows, replace=False)
    paths = {}
    for tokens in token_counts:
        width = 2 * math.ceil(0.75 * tokens * bp_per_token)   # 1.5x the bases: every window is cut to `tokens`
        sequences = []
        for i in picks:
            contig, start, _ = bins[i]
            center = int(start) + 100
            sequences.append(genome.fetch_padded(contig, center - width // 2, center + width // 2))
        paths[tokens] = root / f"windows_{tokens}.h5"
        with LabeledWriter(paths[tokens], window=width, feature_names=sim.feature_names,
                           feature_groups=["TF"] * sim.n_features, task="chromatin") as writer:
            writer.append(sequences, labels[picks], ["train"] * rows)
    genome.close()
    return tokenizer, paths, bp_per_token


def time_row(tokenizer, path: Path, tokens: int, batch: int, steps: int, warmup: int, model_yaml: Path) -> dict:
    """Time `steps` fine-tuning steps (after `warmup`) on windows of exactly `tokens` tokens."""
    import torch

    from genomics_bigbird.data.labeled import LabeledWindows, TokenizedWindows, collate_windows
    from genomics_bigbird.model import EncoderConfig, build_classifier
    from genomics_bigbird.train import engine as ds
    from genomics_bigbird.train.deepspeed_config import deepspeed_config
    from genomics_bigbird.train.finetune import classification_step
    from genomics_bigbird.train.loop import MetricSums, micro_batches
    from pipelines.config import load_config

    config = dataclasses.replace(load_config(EncoderConfig, model_yaml), vocab_size=len(tokenizer),
                                 attention_backend="gather")
    labeled = LabeledWindows(path)
    windows = TokenizedWindows(labeled, tokenizer, "train", max_length=tokens)
    collate = partial(collate_windows, pad_id=tokenizer.pad_id, pad_to_multiple_of=config.block_size)
    batches = micro_batches(windows, collate, batch, seed=0, rank=0, world_size=1)
    torch.manual_seed(0)
    model = build_classifier(config, len(labeled.feature_names))
    ds_config = deepspeed_config(global_batch_size=batch, micro_batch_size=batch, world_size=1, zero_stage=2,
                                 precision="fp32", gradient_clipping=1.0)
    engine = ds.build_engine(model, ds_config, lr=1e-4, weight_decay=0.01, warmup_steps=0,
                             total_steps=warmup + steps)
    sums = MetricSums()
    timed_batches = _TimedIterator(batches)
    for step in range(warmup):
        classification_step(engine, timed_batches, 1, sums, step + 1, torch.device("cpu"), 8.0, "")
    sums.reduce()
    timed_batches.seconds = 0.0
    step_seconds = []
    for step in range(steps):
        start = time.perf_counter()
        classification_step(engine, timed_batches, 1, sums, warmup + step + 1, torch.device("cpu"), 8.0, "")
        step_seconds.append(time.perf_counter() - start)
    totals = sums.reduce()
    median = statistics.median(step_seconds)
    return {"model": f"finetune-{tokens}", "tokens": tokens, "batch": batch, "attention": config.attention,
            "block_size": config.block_size, "step_ms": 1000 * median,
            "data_ms": 1000 * timed_batches.seconds / steps, "tokens_per_s": totals["tokens"] / steps / median,
            "examples_per_s": totals["examples"] / steps / median}


class _TimedIterator:
    """Wraps the batch iterator and adds up the time spent reading, tokenizing and collating."""

    def __init__(self, iterator):
        self.iterator, self.seconds = iterator, 0.0

    def __iter__(self):
        return self

    def __next__(self):
        start = time.perf_counter()
        try:
            return next(self.iterator)
        finally:
            self.seconds += time.perf_counter() - start


@contextlib.contextmanager
def _stdout_to_stderr():
    """DeepSpeed prints to stdout (also from C++): keep stdout for the JSON alone."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def finetune_rows(*, quick: bool, token_counts: list[int] | None = None, batch: int | None = None,
                  steps: int | None = None, threads: int = 1) -> dict:
    """The rows, settings and problems of one run (every row shares the tokenizer, model config and threads).

    With one thread the process is pinned to one core, so `benchmarks/train_step.py --finetune`
    and this script time the same thing.
    """
    import torch

    from benchmarks.harness import pin_one_core, problems

    token_counts = token_counts or [BASELINE_TOKENS, 1600]
    batch = batch or (4 if quick else 16)
    steps = steps or (2 if quick else 8)
    warmup = 1
    vocab_size = 1024 if quick else 4096
    model_yaml = ROOT / "configs" / "model" / "tiny_8k.yaml"
    pinned = pin_one_core() if threads == 1 else None
    torch.set_num_threads(threads)
    with _stdout_to_stderr(), tempfile.TemporaryDirectory() as tmp:
        from genomics_bigbird.train.engine import init_distributed, set_deepspeed_log_level

        init_distributed()
        set_deepspeed_log_level(40)
        tokenizer, paths, bp_per_token = build_inputs(Path(tmp), vocab_size, max(batch * (steps + warmup), 32),
                                                      token_counts)
        results = []
        for n in token_counts:
            try:
                results.append(time_row(tokenizer, paths[n], n, batch, steps, warmup, model_yaml))
            except Exception as err:  # recorded, and the run exits 1; the other rows still run
                traceback.print_exc(file=sys.stderr)
                results.append({"model": f"finetune-{n}", "tokens": n, "batch": batch,
                                "error": f"{type(err).__name__}: {err}"})
    baseline = results[0]
    for row in results:
        if "tokens_per_s" in row and "tokens_per_s" in baseline:
            row["ratio_vs_baseline"] = row["tokens_per_s"] / baseline["tokens_per_s"]
    return {"baseline": baseline["model"], "bp_per_token": bp_per_token, "vocab_size": vocab_size,
            "model_config": str(model_yaml), "steps": steps, "warmup": warmup, "threads": threads,
            "pinned_core": pinned, "results": results,
            "problems": problems(results, name="model", baseline=baseline["model"], ours=("finetune-",),
                                 figure="tokens_per_s")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 4, 2 timed steps, vocab 1024")
    parser.add_argument("--tokens", default=None, help=f"comma list of window lengths in tokens; the first is the "
                        f"baseline (default {BASELINE_TOKENS},1600)")
    parser.add_argument("--batch", type=int, help="windows per step (default 16; quick 4)")
    parser.add_argument("--steps", type=int, help="timed steps per row (default 8; quick 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, pinned to one core)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    import torch

    from benchmarks.harness import environment, finish

    tokens = [int(t) for t in args.tokens.split(",")] if args.tokens else None
    rows = finetune_rows(quick=args.quick, token_counts=tokens, batch=args.batch, steps=args.steps,
                         threads=args.threads)
    report = {"benchmark": "finetune_step", **environment(torch.device("cpu")), "dtype": "float32",
              "timing": "median step time", **rows}
    return finish(report, args.out, rows["problems"])


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
