"""`gbb simulate`: write the simulated genome (FASTA, promoters, chain, chromatin labels and peaks, VCF).

The demo's and the tests' default data: the same seed and scale give byte-identical files.
File names and formats are described in `genomics_bigbird.genome.simulate`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from genomics_bigbird.genome.simulate import simulate
from pipelines.job import Job


def add_arguments(parser: argparse.ArgumentParser, command: tuple[str, ...]) -> None:
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="genome size factor: 1.0 is ~2.4 Mbp + chrM (default 1.0; 0.05-20)")
    parser.add_argument("--quiet", action="store_true", help="no console log")


def run(args: argparse.Namespace) -> int:
    main(args.out, seed=args.seed, scale=args.scale, quiet=args.quiet)
    return 0


def main(out: Path, *, seed: int = 0, scale: float = 1.0, quiet: bool = False) -> dict:
    """Simulate into `out`; return the job's outputs (paths and counts)."""
    with Job("simulate", out, config={"seed": seed, "scale": scale}, seed=seed, quiet=quiet) as job:
        job.log.info("simulating a genome at scale %g with seed %d", scale, seed)
        genome = simulate(out, seed=seed, scale=scale)
        job.outputs.update({
            "fasta": str(genome.fasta), "promoters": str(genome.promoters_bed),
            "chain": str(genome.chain), "chromatin_labels": str(genome.chromatin_labels),
            "variants": str(genome.variants_vcf), "summary": str(genome.summary),
            "contigs": genome.contigs, "n_promoters": genome.n_promoters, "n_bins": genome.n_bins,
            "n_features": genome.n_features, "n_variants": genome.n_variants})
        job.log.info("%d bp in %d contigs, %d promoters, %d bins x %d features, %d variants",
                     sum(genome.contigs.values()), len(genome.contigs), genome.n_promoters,
                     genome.n_bins, genome.n_features, genome.n_variants)
    return job.outputs
