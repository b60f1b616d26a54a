"""`gbb promoter prepare`: the promoter data set of BigBird F.2.

EPDnew-style TSS BED -> TSS records (1 bp) -> liftover to the target build through a UCSC chain
(unmapped records go to `unmapped.bed` with a reason, strand-flipped ones to `strand_flipped.bed`,
both counted) -> 8 kbp TSS windows (-5000/+3000, 5'->3' on the promoter's strand) -> one DeePromoter
negative per positive (scheme `replace` or `shuffle`, seeded) -> split by chromosome ->
`promoter.h5` in the labeled-windows format (feature `promoter`, group `promoter`).
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from genomics_bigbird.data.labeled import LabeledWriter
from genomics_bigbird.data.promoter import (
    SCHEMES, TSS_MODES, lift_promoters, tss_record, write_promoter_windows)
from genomics_bigbird.errors import InputError
from genomics_bigbird.genome.intervals import read_bed, write_bed
from genomics_bigbird.genome.liftover import ChainLifter
from genomics_bigbird.genome.reference import ReferenceGenome
from pipelines.config import load_config, save_config, to_dict
from pipelines.job import Job


@dataclass
class PromoterPrepareConfig:
    """Parameters of the promoter data set (defaults: BigBird F.2; YAML: configs/tasks/promoter.yaml)."""

    upstream: int = 5000
    downstream: int = 3000
    scheme: str = "replace"  # replace (DeePromoter, the paper) | shuffle (GENA-LM)
    tss: str = "auto"        # auto | record | thick | epdnew: where the TSS sits in a BED record
    seed: int = 0
    test_contigs: list[str] = field(default_factory=lambda: ["chr8", "chr9"])
    valid_contigs: list[str] = field(default_factory=lambda: ["chr7"])
    length_tolerance: float = 0.1


def _contigs(text: str) -> str:
    """`chr8,chr9` or `chr8 chr9` as a YAML list for a config override."""
    return "[" + ",".join(c for c in text.replace(",", " ").split()) + "]"


def add_arguments(parser: argparse.ArgumentParser, command: tuple[str, ...]) -> None:
    parser.add_argument("--bed", required=True, type=Path, help="promoter TSS BED (EPDnew, GRCh38), BED6+")
    parser.add_argument("--chain", type=Path, help="UCSC chain from the BED's build to the FASTA's "
                        "(e.g. hg38ToHg19.over.chain.gz); leave out when the BED is on the FASTA's build")
    parser.add_argument("--fasta", required=True, type=Path, help="target reference FASTA (e.g. GRCh37)")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--config", type=Path, help="YAML config (configs/tasks/promoter.yaml)")
    parser.add_argument("--scheme", choices=SCHEMES, help="negatives: replace 12 of 20 pieces with random "
                        "bases (DeePromoter, default) or shuffle them (GENA-LM)")
    parser.add_argument("--upstream", type=int, help="bases 5' of the TSS (default 5000)")
    parser.add_argument("--downstream", type=int, help="bases from the TSS on, 3' (default 3000)")
    parser.add_argument("--tss", choices=TSS_MODES, help="TSS of a BED record (default auto: thickStart/End "
                        "if present, EPDnew's -49/+10 for 60 bp records, else start on + and end-1 on -)")
    parser.add_argument("--test-contigs", help="comma-separated test contigs (default chr8,chr9)")
    parser.add_argument("--valid-contigs", help="comma-separated validation contigs (default chr7)")
    parser.add_argument("--seed", type=int, help="seed of the negatives (default 0)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or console log")


def run(args: argparse.Namespace) -> int:
    overrides = list(args.set)
    for key in ("scheme", "upstream", "downstream", "tss", "seed"):
        if getattr(args, key) is not None:
            overrides.append(f"{key}={getattr(args, key)}")
    for key in ("test_contigs", "valid_contigs"):
        if getattr(args, key) is not None:
            overrides.append(f"{key}={_contigs(getattr(args, key))}")
    config = load_config(PromoterPrepareConfig, args.config, overrides)
    main(config, bed=args.bed, chain=args.chain, fasta=args.fasta, out=args.out, quiet=args.quiet)
    return 0


def _check(config: PromoterPrepareConfig) -> None:
    if config.scheme not in SCHEMES:
        raise InputError(f"scheme must be one of {', '.join(SCHEMES)}, got {config.scheme!r}")
    if config.tss not in TSS_MODES:
        raise InputError(f"tss must be one of {', '.join(TSS_MODES)}, got {config.tss!r}")
    if config.upstream < 0 or config.downstream < 0 or config.upstream + config.downstream < 20:
        raise InputError(f"upstream ({config.upstream}) and downstream ({config.downstream}) must be >= 0 "
                         "and span at least 20 bp (the 20 pieces of a negative)")


def main(config: PromoterPrepareConfig, *, bed: Path, fasta: Path, out: Path, chain: Path | None = None,
         quiet: bool = False) -> dict:
    """Build `out/promoter.h5` (positives + negatives) and the liftover reports; return the job's outputs."""
    _check(config)
    bed, fasta, out = Path(bed), Path(fasta), Path(out)
    # Everything that can be wrong with the inputs is found before the output directory is touched.
    try:
        tss = [tss_record(r, config.tss) for r in read_bed(bed)]
    except InputError as err:
        raise InputError(err.message, err.path or bed, err.line) from None
    if not tss:
        raise InputError("promoter BED has no records", bed)
    lifter = None if chain is None else ChainLifter(chain, config.length_tolerance)
    genome = ReferenceGenome(fasta)
    lifted = lift_promoters(tss, lifter)
    if not lifted.mapped:
        raise InputError(f"no promoter could be lifted through {chain} (unmapped by reason: {lifted.reasons()}); "
                         "is it the chain from the BED's build to the FASTA's?", bed)
    for record in lifted.mapped:
        try:
            genome.resolve(record.chrom)
        except InputError as err:
            raise InputError(err.message, bed, record.line) from None

    inputs = [bed, fasta] + ([] if chain is None else [Path(chain)])
    with Job("promoter_prepare", out, inputs=inputs, config=to_dict(config), seed=config.seed, quiet=quiet) as job:
        job.log.info("%d promoters from %s; TSS windows -%d/+%d from %s; negatives: %s, seed %d",
                     len(tss), bed, config.upstream, config.downstream, fasta, config.scheme, config.seed)
        if chain is None:
            job.log.info("no --chain: the BED is taken to be on the FASTA's build")
        job.log.info("liftover: %d input = %d mapped + %d unmapped (%s); %d strand-flipped (kept, listed)",
                     lifted.n_input, len(lifted.mapped), len(lifted.unmapped), lifted.reasons() or "none",
                     len(lifted.strand_flipped))
        window = config.upstream + config.downstream
        bar = job.progress(total=len(lifted.mapped), desc="promoters", unit="tss")
        try:
            with LabeledWriter(out / "promoter.h5", window=window, feature_names=["promoter"],
                               feature_groups=["promoter"], task="promoter", scheme=config.scheme,
                               source=f"{bed.name} (TSS -{config.upstream}/+{config.downstream})",
                               seed=config.seed, inputs=inputs, config=to_dict(config)) as writer:
                report = write_promoter_windows(
                    writer, genome, lifted.mapped, upstream=config.upstream, downstream=config.downstream,
                    scheme=config.scheme, rng=np.random.default_rng(config.seed),
                    test_contigs=config.test_contigs, valid_contigs=config.valid_contigs, progress=bar.update)
                summary = writer.summary()
        finally:
            bar.close()
            genome.close()
        write_bed(out / "promoter_tss.bed", lifted.mapped)
        write_bed(out / "unmapped.bed", [dataclasses.replace(u.record, extra=(u.reason,)) for u in lifted.unmapped])
        write_bed(out / "strand_flipped.bed", lifted.strand_flipped)
        save_config(config, out / "config.yaml")
        job.outputs.update({
            "dataset": str(out / "promoter.h5"), "scheme": config.scheme, "window": window,
            "n_input": lifted.n_input, "n_mapped": len(lifted.mapped), "n_unmapped": len(lifted.unmapped),
            "unmapped_by_reason": lifted.reasons(), "n_strand_flipped": len(lifted.strand_flipped),
            "positives": report.positives, "negatives": report.negatives, "rows_per_split": report.per_split,
            "padded_bases": report.padded_bases, "padded_windows": report.padded_windows,
            "positives_per_split": summary["positives_per_split"]})
        job.log.info("wrote %d positives + %d negatives (%s) to %s; %d padded bases in %d windows",
                     report.positives, report.negatives, report.per_split, out / "promoter.h5",
                     report.padded_bases, report.padded_windows)
    return job.outputs
