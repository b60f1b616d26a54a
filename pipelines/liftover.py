"""`gbb liftover`: lift BED records through a UCSC chain; unmapped records go to their own file with a reason.

Nothing is dropped: mapped + unmapped = input records, and the log says so. Records lifted
through a `-` chain have their strand flipped; their count is logged. Unmapped records keep their
original coordinates and gain one extra column, the reason (deleted_in_new,
partially_deleted_in_new, split_in_new, length_changed, unknown_chromosome).
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from genomics_bigbird.errors import InputError
from genomics_bigbird.genome.intervals import read_bed, write_bed
from genomics_bigbird.genome.liftover import ChainLifter
from pipelines.job import Job


def add_arguments(parser: argparse.ArgumentParser, command: tuple[str, ...]) -> None:
    parser.add_argument("--chain", required=True, type=Path, help="UCSC chain file (plain or .gz), old -> new")
    parser.add_argument("--bed", required=True, type=Path, help="BED records on the old assembly")
    parser.add_argument("--out", required=True, type=Path, help="BED of lifted records (new assembly)")
    parser.add_argument("--unmapped", required=True, type=Path,
                        help="BED of records that could not be lifted, reason in the last column")
    parser.add_argument("--length-tolerance", type=float, default=0.1,
                        help="largest allowed change of a record's length, as a fraction (default 0.1)")
    parser.add_argument("--quiet", action="store_true", help="no console log")


def run(args: argparse.Namespace) -> int:
    main(args.chain, args.bed, args.out, args.unmapped, length_tolerance=args.length_tolerance, quiet=args.quiet)
    return 0


def main(chain: Path, bed: Path, out: Path, unmapped: Path, *, length_tolerance: float = 0.1,
         quiet: bool = False) -> dict:
    """Lift `bed` through `chain` into `out` and `unmapped`; return the job's outputs (counts)."""
    chain, bed, out, unmapped = Path(chain), Path(bed), Path(out), Path(unmapped)
    if length_tolerance < 0:
        raise InputError(f"--length-tolerance must be >= 0, got {length_tolerance}")
    if out.resolve() == unmapped.resolve():
        raise InputError("--out and --unmapped must be different files", out)
    config = {"length_tolerance": length_tolerance}
    with Job("liftover", out.parent, inputs=[chain, bed], config=config, quiet=quiet,
             manifest_name=f"{out.name}.manifest.json", log_name=f"{out.name}.log") as job:
        records = list(read_bed(bed))  # validate the whole BED before writing anything
        job.log.info("lifting %d records from %s through %s", len(records), bed, chain)
        result = ChainLifter(chain, length_tolerance).lift_all(records)
        write_bed(out, result.mapped)
        write_bed(unmapped, [dataclasses.replace(u.record, extra=(*u.record.extra, u.reason))
                             for u in result.unmapped])
        job.outputs.update({"mapped": str(out), "unmapped": str(unmapped), "n_input": len(records),
                            "n_mapped": len(result.mapped), "n_unmapped": len(result.unmapped),
                            "n_strand_flipped": result.n_strand_flipped,
                            "unmapped_by_reason": result.reasons()})
        job.log.info("%d input = %d mapped + %d unmapped; %d strand-flipped; unmapped by reason: %s",
                     len(records), len(result.mapped), len(result.unmapped), result.n_strand_flipped,
                     result.reasons() or "none")
    return job.outputs
