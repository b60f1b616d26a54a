"""Variant scoring throughput (variants/s) and ISM throughput (positions/s) at 8 kbp, ours vs baselines; prints JSON.

Each variant is four windows (ref, alt and their reverse complements). The timed path is the one
`gbb score-variants` runs: VCF record -> FASTA windows -> tokenization -> model -> scores
(`genomics_bigbird.score.score_variants`), with a random-weight classifier of 919 features.
In-silico mutagenesis is timed on the path `gbb ism` runs (`SaturationSource` -> the same
`score_variants` -> `saturation_map`): a position is three SNVs, whose reference windows are
shared, so about 8 windows per position.
Models: our encoder with BigBird (config block size) and with dense SDPA attention (`full`), and
HF transformers `BigBirdForSequenceClassification` (block_sparse, 3 random blocks) of the same
shape behind the same path, when `transformers` is importable. Target: >= 300 variants/s on one
H100 for the base config.

    python benchmarks/score_variants.py --out score_variants.json          # GPU: base config, 8 kbp
    python benchmarks/score_variants.py --tokenizer out/dna_bpe.model       # a real 32k BPE
    python benchmarks/score_variants.py --quick                             # CPU: tiny config, checks the script
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import logging
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):   # run as a file: make the repository's `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.harness import environment, finish, problems  # noqa: E402
from genomics_bigbird.genome import ReferenceGenome  # noqa: E402
from genomics_bigbird.genome.mutagenesis import SaturationSource  # noqa: E402
from genomics_bigbird.genome.variants import VariantSource  # noqa: E402
from genomics_bigbird.model import EncoderConfig, build_classifier  # noqa: E402
from genomics_bigbird.score import score_variants  # noqa: E402
from genomics_bigbird.score.ism import saturation_map  # noqa: E402
from genomics_bigbird.tokenizer import DNATokenizer  # noqa: E402
from pipelines.config import load_config, to_dict  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("score_variants")
MODELS = ("bigbird", "full", "hf-bigbird")
BASELINE = "full"
TARGET_VARIANTS_PER_S = 300.0


def make_inputs(root: Path, n_variants: int, width: int, seed: int) -> tuple[Path, Path]:
    """A random two-contig genome and a VCF of SNVs (REF from the genome), spaced so windows differ."""
    rng = np.random.default_rng(seed)
    contig_length = max(4 * width, n_variants * 600 // 2 + 2 * width)
    contigs = {name: "".join(rng.choice(list("ACGT"), contig_length)) for name in ("chr1", "chr2")}
    fasta = root / "genome.fa"
    fasta.write_text("".join(f">{name}\n{seq}\n" for name, seq in contigs.items()))
    lines = ["##fileformat=VCFv4.2", *(f"##contig=<ID={n},length={contig_length}>" for n in contigs),
             "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    counts = {"chr1": -(-n_variants // 2), "chr2": n_variants // 2}
    for name, seq in contigs.items():
        positions = np.sort(rng.choice(np.arange(width, contig_length - width), counts[name], replace=False))
        for pos in positions.tolist():
            ref = seq[pos - 1]
            alt = "ACGT"[("ACGT".index(ref) + int(rng.integers(1, 4))) % 4]
            lines.append(f"{name}\t{pos}\t.\t{ref}\t{alt}\t.\tPASS\t.")
    vcf = root / "variants.vcf"
    vcf.write_text("\n".join(lines) + "\n")
    return fasta, vcf


def train_tokenizer(root: Path, fasta: Path, vocab_size: int, seed: int) -> DNATokenizer:
    """A BPE trained on 1 kbp sentences of the benchmark genome (random DNA: ~7 bp/token at 32k)."""
    genome = ReferenceGenome(fasta)
    sentences = [genome.fetch(name, start, start + 1000) for name, length in genome.contigs.items()
                 for start in range(0, length - 1000, 1000)]
    return DNATokenizer.train(sentences, vocab_size=vocab_size, model_prefix=root / "bpe", seed=seed,
                              input_sentence_size=min(len(sentences), 20000), num_threads=os.cpu_count() or 1)


class HFClassifier(torch.nn.Module):
    """HF `BigBirdForSequenceClassification` behind our `forward(input_ids, attention_mask) -> logits`.

    HF BigBird switches itself to full attention, for good, once an input has at most
    (5 + 2 x random blocks) x block size tokens. `attention_ran` collects the attention type the
    model held after each forward pass, read back from the model, not the one requested.
    """

    def __init__(self, config: EncoderConfig, num_labels: int):
        super().__init__()
        import transformers

        hf_config = transformers.BigBirdConfig(
            vocab_size=config.vocab_size, hidden_size=config.hidden_size, num_hidden_layers=config.num_layers,
            num_attention_heads=config.num_heads, intermediate_size=config.intermediate_size,
            max_position_embeddings=config.max_position, type_vocab_size=config.type_vocab_size,
            attention_type="block_sparse", block_size=config.block_size,
            num_random_blocks=config.num_random_blocks, num_labels=num_labels,
            problem_type="multi_label_classification")
        self.model = transformers.BigBirdForSequenceClassification(hf_config)
        self.attention_ran: set[str] = set()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask.long()).logits
        self.attention_ran.add(self.model.bert.attention_type)
        return logits


def build(name: str, base: EncoderConfig, num_labels: int) -> torch.nn.Module:
    if name == "hf-bigbird":
        return HFClassifier(base, num_labels)
    return build_classifier(dataclasses.replace(base, attention=name) if name == "full" else base, num_labels)


def run_one(name: str, base: EncoderConfig, args, fasta: Path, vcf_warmup: Path, vcf_timed: Path,
            tokenizer: DNATokenizer, device: torch.device) -> dict:
    """Score the warm-up VCF untimed (compilation, the padded lengths), then time the other variants."""
    result = {"model": name, "attention_requested": "block_sparse" if name == "hf-bigbird" else name}
    genome = ReferenceGenome(fasta)
    try:
        torch.manual_seed(0)
        model = build(name, base, args.features).to(device)
        options = dict(num_features=args.features, batch_size=args.batch_size, device=device,
                       max_tokens=base.max_position, length_multiple=base.block_size)
        for _ in score_variants(model, tokenizer, VariantSource(vcf_warmup, genome, args.width), **options):
            pass
        synchronize(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        if name == "hf-bigbird":
            model.attention_ran.clear()        # the timed variants only
        start = time.perf_counter()
        n = 0
        for batch in score_variants(model, tokenizer, VariantSource(vcf_timed, genome, args.width), **options):
            n += len(batch.variants)
        synchronize(device)
        elapsed = time.perf_counter() - start
        # ours never switch kernels; HF's is read back from the model after the run
        result["attention_ran"] = sorted(model.attention_ran) if name == "hf-bigbird" else [name]
        result.update({"variants": n, "seconds": elapsed, "variants_per_s": n / elapsed,
                       "windows_per_s": 4 * n / elapsed,
                       "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30
                       if device.type == "cuda" else None})
        result.update(time_ism(model, tokenizer, genome, args, options, device))
    except torch.OutOfMemoryError:
        result["out_of_memory"] = True
    except Exception as err:  # recorded, and the run exits 1; the other models still run
        traceback.print_exc(file=sys.stderr)
        result["error"] = f"{type(err).__name__}: {err}"
    finally:
        genome.close()
        model = None
        gc.collect()
        torch._dynamo.reset()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return result


def time_ism(model: torch.nn.Module, tokenizer: DNATokenizer, genome: ReferenceGenome, args, options: dict,
             device: torch.device) -> dict:
    """ISM positions/s over `args.ism_positions` bases of chr2, after the variants (same padded lengths, warm)."""
    start = args.width  # away from the contig start: no N padding
    source = SaturationSource(genome, "chr2", start, start + args.ism_positions, args.width)
    synchronize(device)
    tick = time.perf_counter()
    saturation_map(score_variants(model, tokenizer, source, **options), source, [str(i) for i in range(args.features)])
    synchronize(device)
    elapsed = time.perf_counter() - tick
    return {"ism_positions": len(source), "ism_seconds": elapsed, "ism_positions_per_s": len(source) / elapsed}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CPU check: tiny config, 1 kbp windows, few variants")
    parser.add_argument("--config", type=Path, help="model YAML (default: configs/model/base.yaml, tiny with --quick)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma list of {', '.join(MODELS)}")
    parser.add_argument("--tokenizer", type=Path, help="a trained .model (default: a BPE trained on the random genome)")
    parser.add_argument("--vocab-size", type=int, help="BPE size when training one (default 32000; quick: 200)")
    parser.add_argument("--width", type=int, help="window width in bp (default 8000; quick: 600)")
    parser.add_argument("--variants", type=int, help="timed variants (default 2000; quick: 12)")
    parser.add_argument("--warmup", type=int, help="untimed variants first (default 128; quick: 4)")
    parser.add_argument("--batch-size", type=int, help="windows per forward pass (default 64; quick: 8)")
    parser.add_argument("--ism-positions", type=int, help="bases of the timed ISM region (default 200; quick: 4)")
    parser.add_argument("--features", type=int, default=919, help="classifier outputs (default 919, DeepSEA)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    quick = args.quick
    args.width = args.width or (600 if quick else 8000)
    args.variants = args.variants or (12 if quick else 2000)
    args.warmup = args.warmup if args.warmup is not None else (4 if quick else 128)
    args.batch_size = args.batch_size or (8 if quick else 64)
    args.ism_positions = args.ism_positions or (4 if quick else 200)
    device = torch.device("cuda" if torch.cuda.is_available() and not quick else "cpu")
    config_path = args.config or ROOT / "configs" / "model" / ("tiny.yaml" if quick else "base.yaml")
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = [name for name in names if name not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
    env = environment(device)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        fasta, vcf = make_inputs(root, args.variants + args.warmup, args.width, args.seed)
        lines = vcf.read_text().splitlines()  # the first `warmup` variants warm up; the others are timed
        header = [line for line in lines if line.startswith("#")]
        vcf_timed = root / "timed.vcf"
        vcf_timed.write_text("\n".join(header + lines[len(header) + args.warmup:]) + "\n")
        vcf.write_text("\n".join(lines[: len(header) + args.warmup]) + "\n")
        tokenizer = (DNATokenizer.load(args.tokenizer) if args.tokenizer else
                     train_tokenizer(root, fasta, args.vocab_size or (200 if quick else 32000), args.seed))
        base = load_config(EncoderConfig, config_path, [f"vocab_size={len(tokenizer)}"])
        genome = ReferenceGenome(fasta)
        sample = [genome.fetch("chr1", i * args.width, (i + 1) * args.width) for i in range(3)]
        tokens = float(np.mean([len(tokenizer.encode(s)) + 2 for s in sample]))
        genome.close()
        results = []
        for name in names:
            if name == "hf-bigbird" and env["transformers"] is None:
                continue
            log.info("%s: %d variants of %d bp windows", name, args.variants, args.width)
            results.append(run_one(name, base, args, fasta, vcf, vcf_timed, tokenizer, device))
            log.info("  %s", json.dumps(results[-1]))
    baseline = next((r for r in results if r["model"] == BASELINE and "variants_per_s" in r), None)
    for result in results:
        if baseline and "variants_per_s" in result:
            result["speedup_vs_full"] = result["variants_per_s"] / baseline["variants_per_s"]
        if baseline and "ism_positions_per_s" in result:
            result["ism_speedup_vs_full"] = result["ism_positions_per_s"] / baseline["ism_positions_per_s"]
    ours = next((r for r in results if r["model"] == "bigbird" and "variants_per_s" in r), None)
    report = {"benchmark": "score_variants", **env,
              "dtype": "bfloat16 autocast" if device.type == "cuda" else "float32",
              "width_bp": args.width, "tokens_per_window": tokens, "bp_per_token": args.width / (tokens - 2),
              "batch_size": args.batch_size, "features": args.features, "rc_ensembled": True,
              "windows_per_variant": 4, "config": to_dict(base), "config_path": str(config_path),
              "baseline": BASELINE, "target_variants_per_s": TARGET_VARIANTS_PER_S,
              "meets_target": None if ours is None or device.type != "cuda"
              else ours["variants_per_s"] >= TARGET_VARIANTS_PER_S,
              "skipped_hf": None if env["transformers"] else "transformers is not importable",
              "results": results}
    return finish(report, args.out, problems(results, name="model", baseline=BASELINE, ours=("bigbird",),
                                             figure="variants_per_s"))


if __name__ == "__main__":
    sys.exit(main())
