"""`gbb corpus`: the BigBird F.1 pretraining documents of a reference FASTA.

Per contig, `--passes` times: a uniform start offset in [0, 5000), then documents of 50-100
sentences of 500-1000 consecutive bases until the contig ends; all-N sentences dropped.
Writes one text file per contig (one sentence per line, a blank line between documents),
documents.tsv, counts.json, corpus.log and manifest.json into `--out`.

`--workers N` builds N contigs at a time. On a cluster, run one `gbb corpus --contigs C` job per
contig and gather them with `gbb corpus --merge DIR... --out DIR` (workflows/Snakefile does).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from genomics_bigbird.data.corpus import COUNTS_JSON, merge_corpora, write_corpus
from genomics_bigbird.errors import InputError
from genomics_bigbird.genome import ReferenceGenome
from pipelines.job import Job
from pipelines.workers import add_workers_argument, plan_workers


def main(fasta: str | Path, out: str | Path, passes: int = 10, contigs: Sequence[str] | None = None,
         seed: int = 0, quiet: bool = False, workers: int = 1) -> dict:
    """Build the corpus of `fasta` in `out` (`workers` contigs at a time); return its counts."""
    if passes < 1:
        raise InputError(f"--passes must be >= 1, got {passes}")
    genome = ReferenceGenome(fasta)
    names = [genome.resolve(c) for c in (contigs or genome.contigs)]
    config = {"fasta": str(fasta), "passes": passes, "contigs": names, "seed": seed}
    with Job("corpus", out, inputs=[fasta], config=config, seed=seed, quiet=quiet) as job:
        job.log.info("%d contigs, %d bp, %d passes; %d worker process%s", len(names),
                     sum(genome.contigs[n] for n in names), passes, workers, "es" if workers > 1 else "")
        bar = job.progress(total=passes * sum(genome.contigs[n] for n in names), desc="corpus", unit="bp",
                           unit_scale=True)
        counts = write_corpus(genome, out, names, passes=passes, seed=seed, progress=bar.update, workers=workers)
        bar.close()
        job.outputs.update({k: v for k, v in vars(counts).items() if k != "per_contig"})
        job.log.info("%d documents, %d sentences, %d bp; %d all-N sentences dropped", counts.documents,
                     counts.sentences, counts.bp, counts.dropped_sentences)
    return vars(counts)


def merge(parts: Sequence[str | Path], out: str | Path, quiet: bool = False) -> dict:
    """Gather per-contig corpus directories into `out` (their files stay in place); return the counts."""
    with Job("corpus", out, inputs=[Path(p) / COUNTS_JSON for p in parts], config={"merge": list(map(str, parts))},
             quiet=quiet) as job:
        counts = merge_corpora(parts, out)
        job.outputs.update({k: v for k, v in vars(counts).items() if k != "per_contig"})
        job.log.info("gathered %d parts: %d contigs, %d documents, %d bp", len(parts), len(counts.per_contig),
                     counts.documents, counts.bp)
    return vars(counts)


def add_arguments(parser: argparse.ArgumentParser, command: tuple[str, ...]) -> None:
    parser.add_argument("--fasta", help="reference FASTA (plain or bgzip)")
    parser.add_argument("--merge", nargs="+", metavar="DIR",
                        help="instead of building: gather corpus directories of other contigs into --out")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--passes", type=int, default=10, help="passes over each contig (default 10, as F.1)")
    parser.add_argument("--contigs", nargs="+", help="contigs to use (default: all; chr1 and 1 both work)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or console log")
    add_workers_argument(parser, "contigs")


def run(args) -> int:
    if args.merge:
        merge(args.merge, args.out, quiet=args.quiet)
        return 0
    if args.fasta is None:
        raise InputError("--fasta is required (or --merge DIR... to gather corpus directories)")
    plan = plan_workers(args.workers, args.threads)
    main(args.fasta, args.out, passes=args.passes, contigs=args.contigs, seed=args.seed, quiet=args.quiet,
         workers=plan.workers)
    return 0
