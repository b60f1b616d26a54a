"""Numerical check of the attention kernels on the GPU: flex == gather == float64 reference.

For BigBird (64- and 128-token blocks, lengths on and off the block grid, with and without
padding) and Combiner (fixed, axial), in bf16 and fp32, compares each backend's output at real
query positions with the float64 reference, and flex gradients with gather gradients (CUDA only:
flex has no CPU backward). Prints one JSON document; exits 1 if any check fails.

    python benchmarks/gpu_check.py            # CUDA: compiled flex
    python benchmarks/gpu_check.py --quick    # CPU: eager flex forward, small sizes
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import traceback

import torch

from genomics_bigbird.model.attention import (
    bigbird_layout, block_sparse_attention, combiner_attention)
from genomics_bigbird.model.attention.bigbird import flex_kernel_options
from genomics_bigbird.model.attention.reference import (
    bigbird_ref, combiner_axial_ref, combiner_fixed_ref)

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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="run on CPU with small sizes")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available() and not args.quick
    device = torch.device("cuda" if cuda else "cpu")
    lengths = (1000, 2048) if cuda else (1000, 1024)
    heads, dim, batch = (4, 64, 2) if cuda else (2, 16, 2)
    results = bigbird_checks(device, lengths, heads, dim, batch)
    results += combiner_checks(device, 60, 2, 16)
    failed = [r for r in results if not r["ok"]]
    report = {
        "check": "attention kernels vs float64 reference",
        "device": torch.cuda.get_device_name() if cuda else platform.processor() or "cpu",
        "versions": {"torch": torch.__version__, "cuda": torch.version.cuda},
        "flex": "compiled" if cuda else "eager forward only",
        "flex_kernel_options": {"64": flex_kernel_options(64), "128": flex_kernel_options(128)},
        "tolerance_relative": {"float32": TOLERANCE[torch.float32], "bfloat16": TOLERANCE[torch.bfloat16]},
        "passed": len(results) - len(failed),
        "failed": len(failed),
        "results": results,
    }
    print(json.dumps(report, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
