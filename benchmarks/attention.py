"""Attention core, forward + backward: median time and peak memory per kernel and input shape.

Times BigBird (flex and gather backends, 64- and 128-token blocks), Combiner-Fixed/Axial and the
dense SDPA baseline, plus HF `BigBirdBlockSparseAttention` (64-token blocks, its own q/k/v
projections included) when `transformers` is importable. 12 heads x 64 dims, bf16 on CUDA.

    python benchmarks/attention.py --out attention.json        # GPU: 4k x 4, 16k, 32k, 64k, 128k
    python benchmarks/attention.py --shapes 65536x1 --methods bigbird-flex-128,dense-sdpa
    python benchmarks/attention.py --quick                     # CPU: tiny sizes, checks the script

Times are medians over `--repeats` steps. On CPU FlexAttention has no backward, so flex rows
there time the forward only (`"pass"` says which). Compiled flex refuses 64-token blocks with its
default 128 tiles; the 64-block rows pass `kernel_options` with 64-wide tiles. If compiling still
fails, the 64 row keeps its error (and the run fails), and 128-token blocks are timed in a row of
their own, `bigbird-flex-128-for-64`: a 128-block figure never appears under the 64 label.
Out of memory is recorded as an outcome (`"out_of_memory": true`); any other exception of the
baseline or of our kernels is an error and the script exits 1.
"""
from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

import torch

if __package__ in (None, ""):   # run as a file: make the repository's `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.harness import environment, finish, problems  # noqa: E402
from genomics_bigbird.model.attention import build_attention  # noqa: E402
from genomics_bigbird.model.attention.bigbird import flex_kernel_options  # noqa: E402

FULL_SHAPES = [(4096, 4), (16384, 1), (32768, 1), (65536, 1), (131072, 1)]
QUICK_SHAPES = [(256, 2), (512, 1)]
METHODS = ["dense-sdpa", "bigbird-flex-128", "bigbird-flex-64", "bigbird-gather-128",
           "bigbird-gather-64", "combiner-fixed", "combiner-axial", "hf-bigbird"]
BASELINE = "dense-sdpa"
OURS = ("bigbird-", "combiner-")
FLEX64_STAND_IN = "bigbird-flex-128-for-64"


def parse_shapes(text: str) -> list[tuple[int, int]]:
    """'4096x4,16384x1' -> [(4096, 4), (16384, 1)] as (tokens, batch)."""
    return [tuple(int(part) for part in item.lower().split("x")) for item in text.split(",")]


def core_attention(method: str, heads: int) -> Callable:
    """(q, k, v) -> out for one of our kernels, through the same builder the encoder uses."""
    if method == "dense-sdpa":
        module = build_attention("full", layer_idx=0, num_heads=heads)
    elif method.startswith("bigbird-"):
        _, backend, block = method.split("-")
        module = build_attention("bigbird", layer_idx=0, num_heads=heads, block_size=int(block),
                                 backend=backend)
    else:
        module = build_attention(method, layer_idx=0, num_heads=heads)
    return lambda q, k, v: module(q, k, v, None)


def hf_attention(heads: int, dim: int, length: int, batch: int, device, dtype) -> Callable:
    """HF BigBirdBlockSparseAttention on hidden states (B, L, heads*dim); masks made once."""
    from transformers import BigBirdConfig
    from transformers.models.big_bird.modeling_big_bird import (
        BigBirdBlockSparseAttention, BigBirdModel)
    config = BigBirdConfig(hidden_size=heads * dim, num_attention_heads=heads, block_size=64,
                           num_random_blocks=3, attention_type="block_sparse",
                           max_position_embeddings=length)
    layer = BigBirdBlockSparseAttention(config, seed=0).to(device=device, dtype=dtype).train()
    mask = torch.ones(batch, length, device=device, dtype=dtype)
    blocked, band, from_mask, to_mask = BigBirdModel.create_masks_for_block_sparse_attn(mask, 64)

    def run(hidden):
        out = layer(hidden, band_mask=band, from_mask=from_mask, to_mask=to_mask,
                    from_blocked_mask=blocked, to_blocked_mask=blocked)
        return out[0] if isinstance(out, tuple) else out
    return run


def time_steps(step: Callable[[], None], device: torch.device, warmup: int, repeats: int) -> dict:
    """Median wall time of `step` in ms and the peak memory allocated over the timed steps."""
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1000)
    result = {"median_ms": round(statistics.median(times), 3), "min_ms": round(min(times), 3)}
    if device.type == "cuda":
        result["peak_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2 ** 30, 3)
    return result


def measure(method: str, length: int, batch: int, heads: int, dim: int, device, dtype,
            warmup: int, repeats: int) -> dict:
    """Forward + backward of one kernel on random inputs (forward only where flex has no backward)."""
    generator = torch.Generator(device=device).manual_seed(0)
    backward = not (method.startswith("bigbird-flex") and device.type != "cuda")
    if method == "hf-bigbird":
        hidden = torch.randn(batch, length, heads * dim, device=device, dtype=dtype,
                             generator=generator, requires_grad=True)
        run = hf_attention(heads, dim, length, batch, device, dtype)
        inputs, call = [hidden], lambda: run(hidden)
    else:
        inputs = [torch.randn(batch, heads, length, dim, device=device, dtype=dtype,
                              generator=generator, requires_grad=backward) for _ in range(3)]
        kernel = core_attention(method, heads)
        call = lambda: kernel(*inputs)  # noqa: E731
    grad = None

    def step():
        nonlocal grad
        out = call()
        if backward:
            grad = torch.ones_like(out) if grad is None else grad
            out.backward(grad)
            for x in inputs:
                x.grad = None
    return {"pass": "forward+backward" if backward else "forward", **time_steps(step, device, warmup, repeats)}


def run_benchmark(shapes, methods, heads, dim, device, dtype, warmup, repeats) -> list[dict]:
    """Every (shape, method) pair; failures (OOM, missing package) are recorded, not raised."""
    rows = []
    for length, batch in shapes:
        for method in methods:
            row = {"method": method, "tokens": length, "batch": batch}
            rows.append(measured(row, method, length, batch, heads, dim, device, dtype, warmup, repeats))
    return rows


def measured(row: dict, method: str, length: int, batch: int, heads: int, dim: int, device, dtype,
             warmup: int, repeats: int) -> dict:
    """`row` with the timing of `method`, or with what stopped it: skipped (no package), out of memory, error."""
    try:
        row.update(measure(method, length, batch, heads, dim, device, dtype, warmup, repeats))
    except ImportError as error:
        row["skipped"] = f"{type(error).__name__}: {error}"
    except torch.OutOfMemoryError:
        row["out_of_memory"] = True
    except Exception as error:  # noqa: BLE001 - recorded, and the run exits 1
        row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:300] if str(error) else ''}"
        row["traceback_tail"] = traceback.format_exc().splitlines()[-3:]
    if device.type == "cuda":
        torch.cuda.empty_cache()
    gc.collect()
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def add_speedups(rows: list[dict]) -> None:
    """speedup_vs_dense = baseline median / this median, for rows of the same shape."""
    base = {(r["tokens"], r["batch"]): r["median_ms"] for r in rows
            if r["method"] == BASELINE and "median_ms" in r}
    for row in rows:
        key = (row["tokens"], row["batch"])
        if "median_ms" in row and key in base and row["pass"] == "forward+backward":
            row["speedup_vs_dense"] = round(base[key] / row["median_ms"], 3)


def flex_block64_stand_ins(rows, heads, dim, device, dtype, warmup, repeats) -> str:
    """If flex failed on 64-token blocks, time 128-token blocks in rows of their own and say so."""
    failed = [r for r in rows if r["method"] == "bigbird-flex-64" and "error" in r]
    for row in failed:
        stand_in = {"method": FLEX64_STAND_IN, "tokens": row["tokens"], "batch": row["batch"], "block_size": 128}
        rows.append(measured(stand_in, "bigbird-flex-128", row["tokens"], row["batch"], heads, dim, device, dtype,
                             warmup, repeats))
    if failed:
        return f"flex with 64-token blocks failed; 128-token blocks timed as {FLEX64_STAND_IN}"
    if device.type != "cuda":
        return "not compiled on CPU (eager forward only)"
    return f"compiled with kernel_options {flex_kernel_options(64)}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes on CPU, float32")
    parser.add_argument("--shapes", help="tokensxbatch list, e.g. 4096x4,16384x1")
    parser.add_argument("--methods", help=f"comma list out of {','.join(METHODS)}")
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args(argv)

    device = torch.device("cpu" if args.quick or not torch.cuda.is_available() else "cuda")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    shapes = parse_shapes(args.shapes) if args.shapes else (QUICK_SHAPES if args.quick else FULL_SHAPES)
    heads, dim = (2, 16) if args.quick else (args.heads, args.head_dim)
    repeats, warmup = (2, 1) if args.quick else (args.repeats, args.warmup)
    methods = args.methods.split(",") if args.methods else METHODS
    unknown = set(methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods: {', '.join(sorted(unknown))}")

    rows = run_benchmark(shapes, methods, heads, dim, device, dtype, warmup, repeats)
    block64 = (flex_block64_stand_ins(rows, heads, dim, device, dtype, warmup, repeats)
               if "bigbird-flex-64" in methods else "not run")
    add_speedups(rows)
    report = {
        "benchmark": "attention forward+backward",
        **environment(device),
        "config": {"heads": heads, "head_dim": dim, "dtype": str(dtype).removeprefix("torch."),
                   "repeats": repeats, "warmup": warmup, "quick": args.quick,
                   "hf_includes_qkv_projections": True},
        "baseline": BASELINE,
        "flex_block64": block64,
        "results": rows,
    }
    return finish(report, args.out, problems(rows, name="method", baseline=BASELINE, ours=OURS, figure="median_ms"))


if __name__ == "__main__":
    sys.exit(main())
