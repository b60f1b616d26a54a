"""Numerical check of the attention kernels on the GPU: flex == gather == float64 reference, and flex is sparse.

For BigBird (64- and 128-token blocks, at least 10 lengths on and off the block grid, with and
without padding) and Combiner (fixed, axial), in bf16 and fp32, compares each backend's output at
real query positions with the float64 reference, and flex gradients with gather gradients (CUDA
only: flex has no CPU backward). The lengths share one flex length step per block size, so the
compiled kernel must serve them all from a few graphs: the count is checked. A speed check then
times flex at 16k tokens against dense SDPA (at least 5x faster) and against flex over a full
layout (what a silently dense flex would cost). Prints one JSON document; exits 1 if any check fails.

    python benchmarks/gpu_check.py [--out gpu_check.json]   # CUDA: compiled flex
    python benchmarks/gpu_check.py --quick                  # CPU: eager flex forward, small sizes (speed not judged)
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

if __package__ in (None, ""):   # run as a file: make the repository's `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.harness import environment, finish  # noqa: E402
from genomics_bigbird.model.attention import (  # noqa: E402
    bigbird_layout, block_sparse_attention, combiner_attention, full_attention)
from genomics_bigbird.model.attention.bigbird import flex_block_count, flex_kernel_options  # noqa: E402
from genomics_bigbird.model.attention.reference import (  # noqa: E402
    bigbird_ref, combiner_axial_ref, combiner_fixed_ref)

# 11 lengths, 6 of them off the 64-token grid; at 64- and at 128-token blocks they all pad to one
# flex length step (32 and 16 blocks), so each block size needs one graph per dtype and grad mode.
CUDA_LENGTHS = (1537, 1600, 1664, 1700, 1777, 1792, 1850, 1920, 2000, 2047, 2048)
QUICK_LENGTHS = (1000, 1024)
SPEED_TARGET = 5.0   # flex at 16k tokens must beat dense SDPA by this factor
# max |out - ref| allowed, relative to max |ref| (bf16: output rounding plus bf16 probabilities)
TOLERANCE = {torch.float32: 2e-5, torch.bfloat16: 2e-2}


def inputs(batch, heads, length, dim, dtype, device, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, heads, length, dim, generator=generator).to(device=device, dtype=dtype)
            for _ in range(3)]


def padding_mask(batch, length, device):
    """Row 0 full, the others right-padded to 60% of the length."""
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[1:, int(0.6 * length):] = False
    return mask.to(device)


def relative_error(out, ref, mask) -> float:
    """max |out - ref| / max |ref| over real query positions."""
    real = (mask if mask is not None else torch.ones(out.shape[0], out.shape[2], dtype=torch.bool,
                                                     device=out.device))[:, None, :, None]
    diff = ((out.double() - ref.to(out.device)).abs() * real).max()
    return float(diff / (ref.to(out.device).abs() * real).max())


def bigbird_checks(device, lengths, heads, dim, batch) -> list[dict]:
    results = []
    for dtype in (torch.float32, torch.bfloat16):
        for block in (64, 128):
            for length in lengths:
                for padded in (False, True):
                    nb = -(-length // block)
                    layout = bigbird_layout(nb, heads, num_random_blocks=3, seed=1)
                    q, k, v = inputs(batch, heads, length, dim, dtype, device)
                    mask = padding_mask(batch, length, device) if padded else None
                    ref = bigbird_ref(q, k, v, layout, block, mask)
                    for backend in ("flex", "gather"):
                        case = {"kernel": "bigbird", "backend": backend, "dtype": str(dtype)[6:],
                                "block": block, "length": length, "padded": padded}
                        try:
                            out = block_sparse_attention(q, k, v, layout, block, mask, backend)
                            error = relative_error(out, ref, mask)
                            case.update(rel_error=error, finite=bool(torch.isfinite(out).all()),
                                        ok=error <= TOLERANCE[dtype] and bool(torch.isfinite(out).all()))
                        except Exception as exc:  # noqa: BLE001 - a failing kernel is a result
                            case.update(ok=False, error=f"{type(exc).__name__}: {exc}"[:400],
                                        traceback_tail=traceback.format_exc().splitlines()[-3:])
                        results.append(case)
                    if device.type == "cuda" and dtype == torch.float32:
                        results.append(gradient_check(q, k, v, layout, block, mask))
    return results


def gradient_check(q, k, v, layout, block, mask) -> dict:
    """Flex gradients == gather gradients (fp32, CUDA)."""
    case = {"kernel": "bigbird", "check": "grad flex vs gather", "block": block,
            "length": q.shape[2], "padded": mask is not None}
    try:
        weights = torch.randn_like(q)
        if mask is not None:
            weights = weights * mask[:, None, :, None]
        grads = {}
        for backend in ("flex", "gather"):
            leaves = [x.detach().clone().requires_grad_() for x in (q, k, v)]
            out = block_sparse_attention(*leaves, layout, block, mask, backend)
            grads[backend] = torch.autograd.grad((out * weights).sum(), leaves)
        error = max(float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))
                    for a, b in zip(grads["flex"], grads["gather"]))
        case.update(rel_error=error, ok=error <= 1e-4)
    except Exception as exc:  # noqa: BLE001
        case.update(ok=False, error=f"{type(exc).__name__}: {exc}"[:400])
    return case


def combiner_checks(device, length, heads, dim) -> list[dict]:
    results = []
    mask = padding_mask(2, length, device)
    for dtype in (torch.float32, torch.bfloat16):
        q, k, v = inputs(2, heads, length, dim, dtype, device)
        for plan, ref_fn in (("fixed", combiner_fixed_ref), ("axial", combiner_axial_ref)):
            out = combiner_attention(q, k, v, plan, 8, mask)
            ref = ref_fn(q.cpu(), k.cpu(), v.cpu(), 8, mask.cpu())
            error = relative_error(out, ref, mask)
            results.append({"kernel": "combiner", "plan": plan, "dtype": str(dtype)[6:],
                            "length": length, "rel_error": error,
                            "ok": error <= TOLERANCE[dtype] and bool(torch.isfinite(out).all())})
    return results


def timed_ms(call, device, warmup: int = 3, repeats: int = 10) -> float:
    """Median milliseconds of `call()` (synchronized on CUDA)."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        call()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def speed_check(device, length: int, heads: int, dim: int, dtype, judged: bool) -> dict:
    """Forward times at `length` tokens: flex (128-token blocks), flex over a full layout, dense SDPA."""
    case = {"check": "flex sparse speed", "length": length, "heads": heads, "dtype": str(dtype)[6:],
            "block": 128, "target_vs_dense_sdpa": SPEED_TARGET, "judged": judged}
    try:
        q, k, v = inputs(1, heads, length, dim, dtype, device)
        nb = length // 128
        sparse = bigbird_layout(nb, heads, num_random_blocks=3, seed=1)
        full = torch.ones_like(sparse)
        with torch.no_grad():
            case["flex_ms"] = timed_ms(lambda: block_sparse_attention(q, k, v, sparse, 128, backend="flex"), device)
            case["flex_full_layout_ms"] = timed_ms(
                lambda: block_sparse_attention(q, k, v, full, 128, backend="flex"), device)
            case["dense_sdpa_ms"] = timed_ms(lambda: full_attention(q, k, v), device)
        case["speedup_vs_dense_sdpa"] = case["dense_sdpa_ms"] / case["flex_ms"]
        case["speedup_vs_flex_full_layout"] = case["flex_full_layout_ms"] / case["flex_ms"]
        case["layout_density"] = float(sparse.float().mean())
        case["ok"] = case["speedup_vs_dense_sdpa"] >= SPEED_TARGET if judged else True
    except Exception as exc:  # noqa: BLE001 - a failing kernel is a result
        case.update(ok=False, error=f"{type(exc).__name__}: {exc}"[:400])
    return case


def graph_check(graphs: int, blocks: tuple[int, ...], lengths: tuple[int, ...]) -> dict:
    """The compiled flex graphs the BigBird checks made: one per (length step, block size, dtype, grad mode)."""
    steps = {(block, flex_block_count(-(-n // block))) for block in blocks for n in lengths}
    allowed = len(steps) * 3          # fp32 forward, bf16 forward, fp32 forward+backward
    return {"check": "compiled flex graphs", "lengths": len(lengths), "length_steps": len(steps),
            "graphs": graphs, "allowed": allowed, "ok": graphs <= allowed}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="run on CPU with small sizes")
    parser.add_argument("--lengths", help="comma list of sequence lengths (default: 11 on CUDA; 1000,1024 on CPU)")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available() and not args.quick
    device = torch.device("cuda" if cuda else "cpu")
    lengths = (tuple(int(n) for n in args.lengths.split(",")) if args.lengths
               else CUDA_LENGTHS if cuda else QUICK_LENGTHS)
    heads, dim, batch = (4, 64, 2) if cuda else (2, 16, 2)
    from torch._dynamo.utils import counters
    graphs_before = counters["stats"]["unique_graphs"]
    results = bigbird_checks(device, lengths, heads, dim, batch)
    if cuda:   # on CPU flex runs eagerly (no compiled graphs to count)
        results.append(graph_check(counters["stats"]["unique_graphs"] - graphs_before, (64, 128), lengths))
    results += combiner_checks(device, 60, 2, 16)
    results.append(speed_check(device, 16384, 12, 64, torch.bfloat16, judged=True) if cuda
                   else speed_check(device, 512, 2, 16, torch.float32, judged=False))
    failed = [r for r in results if not r["ok"]]
    report = {
        "check": "attention kernels vs float64 reference",
        **environment(device),
        "flex": "compiled" if cuda else "eager forward only",
        "flex_kernel_options": {"64": flex_kernel_options(64), "128": flex_kernel_options(128)},
        "lengths": list(lengths),
        "tolerance_relative": {"float32": TOLERANCE[torch.float32], "bfloat16": TOLERANCE[torch.bfloat16]},
        "passed": len(results) - len(failed),
        "failed": len(failed),
        "results": results,
    }
    return finish(report, args.out, [f"check failed: {r}" for r in failed])


if __name__ == "__main__":
    sys.exit(main())
