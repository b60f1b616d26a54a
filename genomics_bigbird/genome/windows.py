"""Fixed-width windows around BED records: centered or TSS-anchored, strand-aware, N-padded at contig ends."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

from genomics_bigbird.errors import InputError
from genomics_bigbird.genome.intervals import BedRecord
from genomics_bigbird.genome.reference import ReferenceGenome

ANCHORS = ("center", "tss")


@dataclass(frozen=True)
class Window:
    """A window's genomic interval [start, end) and its sequence read 5'->3' on `strand`."""

    chrom: str
    start: int
    end: int
    strand: str
    name: str
    sequence: str
    n_padded: int  # bases of `N` added beyond the contig ends


def centered_window(record: BedRecord, width: int) -> tuple[int, int]:
    """Return the [start, end) of the width-W window centered on the record: center = (start + end) // 2."""
    if width <= 0:
        raise ValueError(f"window width must be positive, got {width}")
    start = (record.start + record.end) // 2 - width // 2
    return start, start + width


def tss_of(record: BedRecord) -> int:
    """Return the 0-based TSS base: `start` on `+`, `end - 1` on `-`."""
    if record.strand == "+":
        return record.start
    if record.strand == "-":
        return record.end - 1
    raise InputError(f"record {record.name or record.chrom + ':' + str(record.start)} has strand "
                     f"{record.strand!r}; TSS anchoring needs '+' or '-' in column 6", line=record.line)


def tss_window(record: BedRecord, upstream: int, downstream: int) -> tuple[int, int]:
    """Return the [start, end) of the TSS-anchored window; the TSS is at index `upstream` of the 5'->3' sequence."""
    if upstream < 0 or downstream < 0 or upstream + downstream == 0:
        raise ValueError(f"upstream ({upstream}) and downstream ({downstream}) must be >= 0, not both 0")
    tss = tss_of(record)
    if record.strand == "+":
        return tss - upstream, tss + downstream
    # On `-` the sequence is reverse-complemented: index `upstream` of the reversed window is the TSS.
    return tss - downstream + 1, tss + upstream + 1


def extract_windows(genome: ReferenceGenome, records: Iterable[BedRecord], *, anchor: str = "center",
                    width: int = 8000, upstream: int = 5000, downstream: int = 3000) -> Iterator[Window]:
    """Yield one window per record, in input order: centered (`width`) or TSS-anchored (`upstream`/`downstream`).

    Sequences read 5'->3' on the record's strand (unstranded records read on `+`); windows past a
    contig end are padded with `N`, never shortened, and `Window.n_padded` counts the padding.
    An unknown contig raises InputError carrying the record's line number.
    """
    if anchor not in ANCHORS:
        raise ValueError(f"anchor must be one of {ANCHORS}, got {anchor!r}")
    for record in records:
        if anchor == "center":
            start, end = centered_window(record, width)
        else:
            start, end = tss_window(record, upstream, downstream)
        try:
            sequence, n_padded = genome.fetch_padded_count(record.chrom, start, end,
                                                           "-" if record.strand == "-" else "+")
        except InputError as err:
            raise InputError(err.message, line=record.line) from None
        name = record.name or f"{record.chrom}:{record.start}-{record.end}"
        yield Window(record.chrom, start, end, record.strand, name, sequence, n_padded)
