"""Promoter data set (BigBird F.2): EPDnew TSSs lifted to the target build, 8 kbp TSS windows, DeePromoter negatives.

Negatives follow Oubounyt et al. (DeePromoter): the positive window is cut into 20 equal pieces,
12 chosen at random are changed and 8 kept. Scheme `replace` (the paper's) fills each chosen piece
with uniform random bases; scheme `shuffle` (GENA-LM's variant) permutes the 12 chosen pieces among
themselves. F1 differs a lot between the two, so the scheme is stored with the data set.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from genomics_bigbird.errors import InputError
from genomics_bigbird.genome.intervals import BedRecord
from genomics_bigbird.genome.liftover import ChainLifter, LiftoverResult
from genomics_bigbird.genome.reference import ReferenceGenome, contig_key
from genomics_bigbird.genome.windows import extract_windows, tss_of
from genomics_bigbird.data.labeled import LabeledWriter

log = logging.getLogger(__name__)

SCHEMES = ("replace", "shuffle")
N_PIECES = 20
N_CHANGED = 12
EPDNEW_UPSTREAM, EPDNEW_DOWNSTREAM = 49, 10  # an EPDnew BED record spans TSS-49 .. TSS+10
TSS_MODES = ("auto", "record", "thick", "epdnew")
_BASES = np.frombuffer(b"ACGT", dtype=np.uint8)


# ---------------------------------------------------------------- negatives

def piece_bounds(length: int, n_pieces: int = N_PIECES) -> np.ndarray:
    """Boundaries (n_pieces + 1,) of `n_pieces` equal pieces (sizes differ by at most 1 base)."""
    if length < n_pieces:
        raise ValueError(f"a sequence of {length} bases cannot be cut into {n_pieces} pieces")
    return (np.arange(n_pieces + 1) * length) // n_pieces


def deepromoter_negative(sequence: str, rng: np.random.Generator, scheme: str = "replace",
                         n_pieces: int = N_PIECES, n_changed: int = N_CHANGED) -> tuple[str, np.ndarray]:
    """Return (negative, changed piece indices): `n_changed` of `n_pieces` pieces replaced or shuffled."""
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    if not 0 < n_changed <= n_pieces:
        raise ValueError(f"n_changed must be in 1..{n_pieces}, got {n_changed}")
    bounds = piece_bounds(len(sequence), n_pieces)
    pieces = [sequence[bounds[i]:bounds[i + 1]] for i in range(n_pieces)]
    chosen = np.sort(rng.choice(n_pieces, size=n_changed, replace=False))
    if scheme == "replace":
        for i in chosen:
            pieces[i] = _BASES[rng.integers(0, 4, size=len(pieces[i]))].tobytes().decode("ascii")
    else:
        moved = [pieces[i] for i in chosen]
        for i, j in zip(chosen, rng.permutation(n_changed)):
            pieces[i] = moved[j]
    return "".join(pieces), chosen


# ---------------------------------------------------------------- TSS records and liftover

def tss_record(record: BedRecord, mode: str = "auto") -> BedRecord:
    """Return the 1 bp record of the record's TSS (so liftover moves the TSS itself, not a region).

    Modes: `record` = `start` on `+`, `end - 1` on `-` (1 bp TSS records); `thick` = thickStart on
    `+`, thickEnd - 1 on `-` (UCSC's EPDnew tracks draw the TSS..+10 part thick); `epdnew` = a
    60 bp EPDnew record (TSS-49..TSS+10); `auto` = thick columns when present, else `epdnew` for a
    60 bp record (EPD's own BED files have 6 columns), else `record`.
    """
    if mode not in TSS_MODES:
        raise ValueError(f"TSS mode must be one of {TSS_MODES}, got {mode!r}")
    if record.strand not in ("+", "-"):
        raise InputError(f"promoter {record.name or record.chrom} has strand {record.strand!r}; "
                         "TSS windows need '+' or '-' in column 6", line=record.line)
    if mode == "auto":
        if len(record.extra) >= 2:
            mode = "thick"
        else:
            mode = "epdnew" if record.length == EPDNEW_UPSTREAM + EPDNEW_DOWNSTREAM + 1 else "record"
    plus = record.strand == "+"
    if mode == "record":
        tss = tss_of(record)
    elif mode == "thick":
        try:
            thick_start, thick_end = int(record.extra[0]), int(record.extra[1])
        except (IndexError, ValueError):
            raise InputError("TSS from thickStart/thickEnd needs BED columns 7-8 as integers",
                             line=record.line) from None
        tss = thick_start if plus else thick_end - 1
    else:
        if record.length != EPDNEW_UPSTREAM + EPDNEW_DOWNSTREAM + 1:
            raise InputError(f"EPDnew records are 60 bp (TSS-49..TSS+10); this one is {record.length} bp",
                             line=record.line)
        tss = record.start + EPDNEW_UPSTREAM if plus else record.end - 1 - EPDNEW_UPSTREAM
    return dataclasses.replace(record, start=tss, end=tss + 1, extra=())


def lift_promoters(records: Iterable[BedRecord], lifter: ChainLifter | None) -> LiftoverResult:
    """Lift TSS records through a chain (None: already on the target build); strand flips are kept and listed."""
    if lifter is None:
        return LiftoverResult(mapped=list(records))
    return lifter.lift_all(records)


# ---------------------------------------------------------------- splits and writing

def contig_split(chrom: str, test_contigs: Sequence[str], valid_contigs: Sequence[str]) -> str:
    """Split by chromosome: "test" or "valid" for the listed contigs (chr1 == 1), else "train"."""
    name = contig_key(chrom)
    if name in {contig_key(c) for c in test_contigs}:
        return "test"
    if name in {contig_key(c) for c in valid_contigs}:
        return "valid"
    return "train"


@dataclass
class PromoterReport:
    """Counts of one promoter data set build."""

    positives: int = 0
    negatives: int = 0
    padded_bases: int = 0
    padded_windows: int = 0
    per_split: dict[str, int] = field(default_factory=lambda: {"train": 0, "valid": 0, "test": 0})


def write_promoter_windows(writer: LabeledWriter, genome: ReferenceGenome, tss: Sequence[BedRecord], *,
                           upstream: int, downstream: int, scheme: str, rng: np.random.Generator,
                           test_contigs: Sequence[str], valid_contigs: Sequence[str], chunk_size: int = 512,
                           progress: Callable[[int], None] | None = None) -> PromoterReport:
    """Append each TSS window (label 1) followed by its DeePromoter negative (label 0, same split)."""
    report = PromoterReport()
    for first in range(0, len(tss), chunk_size):
        windows = list(extract_windows(genome, tss[first:first + chunk_size], anchor="tss",
                                       upstream=upstream, downstream=downstream))
        sequences, splits, rows = [], [], []
        for window in windows:
            negative, _ = deepromoter_negative(window.sequence, rng, scheme)
            split = contig_split(window.chrom, test_contigs, valid_contigs)
            sequences += [window.sequence, negative]
            splits += [split, split]
            rows += [(window, window.name), (window, f"{window.name}_negative")]
            report.per_split[split] += 2
            report.padded_bases += window.n_padded
            report.padded_windows += window.n_padded > 0
        labels = np.tile(np.array([[1], [0]], dtype=np.uint8), (len(windows), 1))
        writer.append(sequences, labels, splits, chrom=[w.chrom for w, _ in rows], start=[w.start for w, _ in rows],
                      end=[w.end for w, _ in rows], strand=[w.strand for w, _ in rows], name=[n for _, n in rows])
        report.positives += len(windows)
        report.negatives += len(windows)
        if progress is not None:
            progress(len(windows))
    return report
