"""`gbb windows`: one fixed-width window per BED record, 5'->3' on its strand, to FASTA or HDF5.

FASTA output has bedtools `getfasta -name -s` headers, `>name::chrom:start-end(strand)`, where
start-end is the window (it may run past a contig end: those bases are `N` and counted). HDF5
output holds `sequences` (fixed-width bytes, one row per window) and the columns `chrom`,
`start`, `end`, `strand`, `name`, `n_padded`. The BED is read once to validate it and count the
records (so a bad line fails before any work, and the progress bar has an ETA), then again to
extract. Outputs are written atomically; log and manifest go next to the output file.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Iterable

import h5py
import numpy as np

from genomics_bigbird.atomic import atomic_path, atomic_write
from genomics_bigbird.errors import InputError
from genomics_bigbird.genome.intervals import read_bed
from genomics_bigbird.genome.reference import ReferenceGenome
from genomics_bigbird.genome.windows import ANCHORS, Window, extract_windows
from pipelines.job import Job

FASTA_SUFFIXES = (".fa", ".fasta", ".fna")
HDF5_SUFFIXES = (".h5", ".hdf5")
H5_BATCH = 4096  # windows buffered per HDF5 write


def add_arguments(parser: argparse.ArgumentParser, command: tuple[str, ...]) -> None:
    parser.add_argument("--fasta", required=True, type=Path, help="reference FASTA (plain or bgzip)")
    parser.add_argument("--bed", required=True, type=Path, help="BED records (plain or .gz)")
    parser.add_argument("--out", required=True, type=Path, help="output .fa/.fasta or .h5")
    parser.add_argument("--anchor", choices=ANCHORS, default="center",
                        help="center: window of --width around the record's center; "
                             "tss: --upstream/--downstream around the TSS (start on +, end-1 on -)")
    parser.add_argument("--width", type=int, default=8000, help="centered window width (default 8000)")
    parser.add_argument("--upstream", type=int, default=5000, help="TSS anchor: bases 5' of the TSS")
    parser.add_argument("--downstream", type=int, default=3000, help="TSS anchor: bases from the TSS on")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or console log")


def run(args: argparse.Namespace) -> int:
    main(args.fasta, args.bed, args.out, anchor=args.anchor, width=args.width,
         upstream=args.upstream, downstream=args.downstream, quiet=args.quiet)
    return 0


def main(fasta: Path, bed: Path, out: Path, *, anchor: str = "center", width: int = 8000,
         upstream: int = 5000, downstream: int = 3000, quiet: bool = False) -> dict:
    """Extract one window per BED record into `out` (FASTA or HDF5); return the job's outputs."""
    fasta, bed, out = Path(fasta), Path(bed), Path(out)
    suffix = out.suffix.lower()
    if suffix not in FASTA_SUFFIXES + HDF5_SUFFIXES:
        raise InputError(f"--out must end in {'/'.join(FASTA_SUFFIXES + HDF5_SUFFIXES)}", out)
    if anchor == "center" and width <= 0:
        raise InputError(f"--width must be positive, got {width}")
    if anchor == "tss" and (upstream < 0 or downstream < 0 or upstream + downstream == 0):
        raise InputError(f"--upstream/--downstream must be >= 0 and not both 0, got {upstream}/{downstream}")
    window_width = width if anchor == "center" else upstream + downstream
    config = {"anchor": anchor, "width": window_width, "upstream": upstream if anchor == "tss" else None,
              "downstream": downstream if anchor == "tss" else None, "format": suffix.lstrip(".")}
    with Job("windows", out.parent, inputs=[fasta, bed], config=config, quiet=quiet,
             manifest_name=f"{out.name}.manifest.json", log_name=f"{out.name}.log") as job:
        n_records = sum(1 for _ in read_bed(bed))
        genome = ReferenceGenome(fasta)
        job.log.info("%d BED records from %s; %s windows of %d bp from %s", n_records, bed, anchor,
                     window_width, fasta)
        windows = extract_windows(genome, read_bed(bed), anchor=anchor, width=width,
                                  upstream=upstream, downstream=downstream)
        bar = job.progress(windows, total=n_records, desc="windows", unit="win")
        try:
            if suffix in FASTA_SUFFIXES:
                stats = write_windows_fasta(out, bar)
            else:
                stats = write_windows_hdf5(out, bar, n_records, window_width, attrs=config)
        except InputError as err:  # a record's problem (unknown contig, no strand): name the BED file
            raise InputError(err.message, err.path or bed, err.line) from None
        finally:
            bar.close()
            genome.close()
        job.outputs.update({"windows": str(out), **stats})
        job.log.info("wrote %d windows to %s; %d padded bases in %d windows past contig ends",
                     stats["n_windows"], out, stats["n_padded_bases"], stats["n_windows_padded"])
    return job.outputs


def _tally(stats: dict, window: Window) -> None:
    stats["n_windows"] += 1
    stats["n_padded_bases"] += window.n_padded
    stats["n_windows_padded"] += window.n_padded > 0


def write_windows_fasta(out: Path, windows: Iterable[Window]) -> dict:
    """Write windows as FASTA with `>name::chrom:start-end(strand)` headers, atomically; return counts."""
    stats = {"n_windows": 0, "n_padded_bases": 0, "n_windows_padded": 0}
    with atomic_write(out) as handle:
        for w in windows:
            handle.write(f">{w.name}::{w.chrom}:{w.start}-{w.end}({w.strand})\n{w.sequence}\n")
            _tally(stats, w)
    return stats


def write_windows_hdf5(out: Path, windows: Iterable[Window], n_windows: int, width: int,
                       attrs: dict | None = None) -> dict:
    """Write windows as HDF5 (`sequences` fixed-width bytes + per-window columns), atomically; return counts."""
    stats = {"n_windows": 0, "n_padded_bases": 0, "n_windows_padded": 0}
    text = h5py.string_dtype("utf-8")
    chunk = (max(1, min(n_windows, 256)),)
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as h5:
        columns = {
            "sequences": h5.create_dataset("sequences", (n_windows,), dtype=f"S{width}", chunks=chunk,
                                           compression="gzip", compression_opts=1),
            "chrom": h5.create_dataset("chrom", (n_windows,), dtype=text),
            "start": h5.create_dataset("start", (n_windows,), dtype=np.int64),
            "end": h5.create_dataset("end", (n_windows,), dtype=np.int64),
            "strand": h5.create_dataset("strand", (n_windows,), dtype="S1"),
            "name": h5.create_dataset("name", (n_windows,), dtype=text),
            "n_padded": h5.create_dataset("n_padded", (n_windows,), dtype=np.int32),
        }
        batch: list[Window] = []

        def flush() -> None:
            lo, hi = stats["n_windows"] - len(batch), stats["n_windows"]
            columns["sequences"][lo:hi] = np.array([w.sequence.encode("ascii") for w in batch], dtype=f"S{width}")
            columns["chrom"][lo:hi] = [w.chrom for w in batch]
            columns["start"][lo:hi] = [w.start for w in batch]
            columns["end"][lo:hi] = [w.end for w in batch]
            columns["strand"][lo:hi] = np.array([w.strand.encode() for w in batch], dtype="S1")
            columns["name"][lo:hi] = [w.name for w in batch]
            columns["n_padded"][lo:hi] = [w.n_padded for w in batch]
            batch.clear()

        for w in windows:
            _tally(stats, w)
            batch.append(w)
            if len(batch) == H5_BATCH:
                flush()
        if batch:
            flush()
        if stats["n_windows"] != n_windows:
            raise RuntimeError(f"expected {n_windows} windows, extracted {stats['n_windows']}")
        h5.attrs.update({k: v for k, v in (attrs or {}).items() if v is not None})
        h5.attrs["n_padded_bases"] = stats["n_padded_bases"]
    return stats
