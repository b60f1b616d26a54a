"""Whole-model MLM + NSP training step: tokens/s and peak memory, per attention kind and input shape.

Each run times the same encoder with BigBird (flex backend, 128- and 64-token blocks), Combiner-Fixed,
Combiner-Axial and the dense SDPA baseline, plus HF `BigBirdForMaskedLM` (block_sparse) and
`BertForMaskedLM` (SDPA) when `transformers` is importable, and prints one JSON document.

    python -m benchmarks.train_step --out train_step.json                 # GPU: base config, bf16, compiled
    python -m benchmarks.train_step --variants bigbird-128,dense-sdpa --shapes 65536x1
    python -m benchmarks.train_step --quick                               # CPU: tiny config, checks the script

One step = forward (bf16 autocast on CUDA), MLM loss at the masked positions + NSP loss, backward,
AdamW step. Step times are medians over the timed steps. The batch is fixed across steps (15% of
tokens masked), so compiled graphs do not recompile. Peak memory is measured over the timed steps
(weights, AdamW state and activations). Out of memory is a recorded outcome; any other exception
of the baseline or of our variants is an error and the script exits 1.
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import logging
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
from genomics_bigbird.model import EncoderConfig, build_pretraining_model  # noqa: E402
from genomics_bigbird.train.losses import IGNORE_INDEX, pretraining_loss  # noqa: E402
from pipelines.config import load_config, to_dict  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("train_step")

# name -> changes to the model config (None: an HF model, built by `hf_step`)
VARIANTS: dict[str, dict | None] = {
    "bigbird-128": {"attention": "bigbird", "block_size": 128},
    "bigbird-64": {"attention": "bigbird", "block_size": 64},
    "combiner-fixed": {"attention": "combiner-fixed"},
    "combiner-axial": {"attention": "combiner-axial"},
    "dense-sdpa": {"attention": "full"},
    "hf-bigbird": None,
    "hf-bert": None,
}
BASELINE = "dense-sdpa"
OURS = ("bigbird-", "combiner-")


def parse_shapes(text: str) -> list[tuple[int, int]]:
    """'4096x8,16384x2' -> [(4096, 8), (16384, 2)] as (tokens, batch)."""
    shapes = []
    for item in text.split(","):
        length, batch = item.lower().split("x")
        shapes.append((int(length), int(batch)))
    return shapes


def make_batch(length: int, batch: int, vocab_size: int, device: torch.device, seed: int = 0) -> dict:
    """Random token ids with 15% of positions chosen for MLM, two segments, random NSP labels."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, vocab_size, (batch, length), generator=generator)
    chosen = torch.rand(batch, length, generator=generator) < 0.15
    chosen[:, 0] = False
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    segment_ids = torch.zeros_like(input_ids)
    segment_ids[:, length // 2:] = 1
    values = dict(input_ids=input_ids, attention_mask=torch.ones(batch, length, dtype=torch.bool),
                  segment_ids=segment_ids, mlm_positions=chosen, mlm_labels=labels,
                  is_next=torch.randint(0, 2, (batch,), generator=generator))
    return {key: value.to(device) for key, value in values.items()}


def project_step(config: EncoderConfig, data: dict, device: torch.device, compile_model: bool,
                 autocast: bool) -> Callable[[], None]:
    """One training step of our pretraining model (encoder + tied MLM head + NSP head)."""
    model = build_pretraining_model(config).to(device).train()
    if compile_model:
        # The boolean gather of masked positions sits between the two compiled graphs.
        model.encoder.compile()
        model.mlm_head.compile()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    masked_labels = data["mlm_labels"][data["mlm_positions"]]

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            mlm_logits, nsp_logits = model(data["input_ids"], data["attention_mask"], data["segment_ids"],
                                           data["mlm_positions"])
        loss = pretraining_loss(mlm_logits, masked_labels, nsp_logits, data["is_next"]).total
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def hf_step(name: str, config: EncoderConfig, data: dict, device: torch.device,
            autocast: bool) -> Callable[[], None]:
    """One MLM training step of an HF model of the same shape (HF computes logits at every position)."""
    import transformers

    common = dict(vocab_size=config.vocab_size, hidden_size=config.hidden_size,
                  num_hidden_layers=config.num_layers, num_attention_heads=config.num_heads,
                  intermediate_size=config.intermediate_size, max_position_embeddings=config.max_position,
                  type_vocab_size=config.type_vocab_size, hidden_dropout_prob=config.dropout,
                  attention_probs_dropout_prob=config.dropout)
    if name == "hf-bigbird":
        hf_config = transformers.BigBirdConfig(**common, attention_type="block_sparse", block_size=64,
                                               num_random_blocks=3)
        model = transformers.BigBirdForMaskedLM(hf_config)
    else:
        hf_config = transformers.BertConfig(**common, attn_implementation="sdpa")
        model = transformers.BertForMaskedLM(hf_config)
    model = model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            out = model(input_ids=data["input_ids"], attention_mask=data["attention_mask"].long(),
                        token_type_ids=data["segment_ids"], labels=data["mlm_labels"])
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def measure(step: Callable[[], None], steps: int, warmup: int, device: torch.device) -> dict:
    """Run `warmup` untimed steps (compilation happens here), then time `steps` steps one by one; median step time."""
    start = time.perf_counter()
    for _ in range(warmup):
        step()
    synchronize(device)
    warmup_s = time.perf_counter() - start
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {"step_ms": 1000 * statistics.median(times), "step_ms_min": 1000 * min(times), "warmup_s": warmup_s,
            "peak_memory_gib": peak}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def release(device: torch.device) -> None:
    """Free the previous model's memory and compiled graphs before the next measurement."""
    gc.collect()
    torch._dynamo.reset()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run_one(name: str, base: EncoderConfig, length: int, batch: int, args, device: torch.device) -> dict:
    changes = VARIANTS[name]
    config = dataclasses.replace(base, max_position=max(base.max_position, length), **(changes or {}))
    result = {"model": name, "tokens": length, "batch": batch, "attention": config.attention if changes else name,
              "block_size": config.block_size if changes is not None and config.attention == "bigbird" else None}
    data = make_batch(length, batch, config.vocab_size, device)
    autocast = device.type == "cuda"
    try:
        if changes is None:
            step = hf_step(name, config, data, device, autocast)
        else:
            step = project_step(config, data, device, args.compile, autocast)
        result.update(measure(step, args.steps, args.warmup, device))
        result["tokens_per_s"] = length * batch * 1000 / result["step_ms"]
    except torch.OutOfMemoryError:
        result["out_of_memory"] = True
    except Exception as err:  # recorded, and the run exits 1; the other variants still run
        traceback.print_exc(file=sys.stderr)
        result["error"] = f"{type(err).__name__}: {err}"
    finally:
        step = data = None
        release(device)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CPU check: tiny config, short inputs, 2 steps")
    parser.add_argument("--config", type=Path, help="model YAML (default: configs/model/base.yaml, tiny with --quick)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {', '.join(VARIANTS)}")
    parser.add_argument("--shapes", help="comma list of TOKENSxBATCH (default 4096x8,16384x2,65536x1)")
    parser.add_argument("--hf-shapes", default="4096x8", help="shapes the HF models run at ('all' for every shape)")
    parser.add_argument("--steps", type=int, help="timed steps (default 10, 2 with --quick)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default 3, 1 with --quick)")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip torch.compile on CUDA")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--finetune", action="store_true", help="also the tiny classifier's CPU fine-tuning step at "
                        "100 and 1,600 tokens (benchmarks/finetune_step.py), under the key `finetune`")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)

    device = torch.device("cuda" if torch.cuda.is_available() and not args.quick else "cpu")
    args.compile = args.compile and device.type == "cuda"
    config_path = args.config or ROOT / "configs" / "model" / ("tiny.yaml" if args.quick else "base.yaml")
    base = load_config(EncoderConfig, config_path)
    shapes = parse_shapes(args.shapes or ("256x2,512x1" if args.quick else "4096x8,16384x2,65536x1"))
    hf_shapes = shapes if args.hf_shapes == "all" else parse_shapes(args.hf_shapes)
    args.steps = args.steps or (2 if args.quick else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    names = [name.strip() for name in args.variants.split(",") if name.strip()]
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    env = environment(device)

    results = []
    for length, batch in shapes:
        for name in names:
            if VARIANTS[name] is None and ((length, batch) not in hf_shapes or env["transformers"] is None):
                continue
            log.info("%s at %d tokens x %d", name, length, batch)
            results.append(run_one(name, base, length, batch, args, device))
            log.info("  %s", json.dumps(results[-1]))
    for result in results:
        baseline = next((r for r in results if r["model"] == BASELINE and r["tokens"] == result["tokens"]
                         and r["batch"] == result["batch"] and "tokens_per_s" in r), None)
        if baseline and "tokens_per_s" in result:
            result["speedup_vs_dense_sdpa"] = result["tokens_per_s"] / baseline["tokens_per_s"]

    report = {"benchmark": "train_step", **env, "dtype": "bfloat16 autocast" if device.type == "cuda" else "float32",
              "compiled": args.compile, "steps": args.steps, "warmup": args.warmup, "step_time": "median",
              "config": to_dict(base), "config_path": str(config_path), "baseline": BASELINE,
              "skipped_hf": None if env["transformers"] else "transformers is not importable",
              "results": results}
    reasons = problems(results, name="model", baseline=BASELINE, ours=OURS, figure="tokens_per_s")
    if args.finetune:
        from benchmarks.finetune_step import finetune_rows

        report["finetune"] = finetune_rows(quick=args.quick)
        reasons += report["finetune"]["problems"]
    return finish(report, args.out, reasons)


if __name__ == "__main__":
    sys.exit(main())
