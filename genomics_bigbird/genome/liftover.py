"""Lift BED records between assemblies through a UCSC chain file (pyliftover); nothing is dropped silently."""
from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from pyliftover import LiftOver

from genomics_bigbird.errors import InputError
from genomics_bigbird.genome.intervals import BedRecord
from genomics_bigbird.genome.reference import contig_aliases

log = logging.getLogger(__name__)

# Reasons a record is not lifted (the extra column of the unmapped BED), after UCSC liftOver's wording.
UNKNOWN_CHROMOSOME = "unknown_chromosome"    # the chain file has no chain from this contig
DELETED_IN_NEW = "deleted_in_new"            # both ends fall in chain gaps
PARTIALLY_DELETED = "partially_deleted_in_new"  # one end falls in a chain gap
SPLIT_IN_NEW = "split_in_new"                # the ends land on different contigs or strands
LENGTH_CHANGED = "length_changed"            # lifted length differs by more than the tolerance
_FLIP = {"+": "-", "-": "+", ".": "."}


@dataclass(frozen=True)
class Unmapped:
    """An input record that was not lifted, and why."""

    record: BedRecord
    reason: str


@dataclass
class LiftoverResult:
    """Mapped records (new coordinates) and unmapped ones (old coordinates + reason), each in input order."""

    mapped: list[BedRecord] = field(default_factory=list)
    unmapped: list[Unmapped] = field(default_factory=list)
    strand_flipped: list[BedRecord] = field(default_factory=list)  # mapped ones lifted through a `-` chain

    @property
    def n_strand_flipped(self) -> int:
        """Mapped records lifted through a `-` chain (their strand flipped)."""
        return len(self.strand_flipped)

    @property
    def n_input(self) -> int:
        """Records read: always len(mapped) + len(unmapped)."""
        return len(self.mapped) + len(self.unmapped)

    def reasons(self) -> dict[str, int]:
        """Count of unmapped records per reason."""
        counts: dict[str, int] = {}
        for item in self.unmapped:
            counts[item.reason] = counts.get(item.reason, 0) + 1
        return counts


class ChainLifter:
    """Lift 0-based BED coordinates through one UCSC chain file (plain or gzip), never downloading one."""

    def __init__(self, chain_path: str | os.PathLike, length_tolerance: float = 0.1):
        self.path = Path(chain_path)
        self.length_tolerance = length_tolerance
        if not self.path.is_file():
            raise InputError("chain file not found", self.path)
        with open(self.path, "rb") as probe:
            gzipped = probe.read(2) == b"\x1f\x8b"
        try:
            self._lift = LiftOver(str(self.path), use_gzip=gzipped)
        except Exception as err:  # pyliftover raises bare Exception on malformed chains
            raise InputError(f"not a valid UCSC chain file ({err}); see "
                             "https://genome.ucsc.edu/goldenPath/help/chain.html", self.path) from None

    def _hits(self, chrom: str, position: int):
        """Best-scoring (chrom, pos, chain strand) for a 0-based position; None = unknown contig, [] = gap."""
        hits = self._lift.convert_coordinate(chrom, position)
        for alias in contig_aliases(chrom):  # other spellings (chr1 <-> 1) before calling the contig unknown
            if hits is not None:
                break
            hits = self._lift.convert_coordinate(alias, position)
        return hits if not hits else hits[0][:3]

    def lift(self, record: BedRecord) -> BedRecord | str:
        """Return the lifted record, or the reason it cannot be lifted."""
        lifted = self._lift_one(record)
        return lifted if isinstance(lifted, str) else lifted[0]

    def _lift_one(self, record: BedRecord) -> tuple[BedRecord, bool] | str:
        """(lifted record, whether it went through a `-` chain), or the reason it is unmapped."""
        # Both ends are lifted (the first and last base); for a TSS or other 1-bp feature they coincide.
        first = self._hits(record.chrom, record.start)
        last = first if record.length <= 1 else self._hits(record.chrom, record.end - 1)
        if first is None or last is None:
            return UNKNOWN_CHROMOSOME
        if not first and not last:
            return DELETED_IN_NEW
        if not first or not last:
            return PARTIALLY_DELETED
        (chrom, first_pos, chain_strand), (last_chrom, last_pos, last_strand) = first, last
        if chrom != last_chrom or chain_strand != last_strand:
            return SPLIT_IN_NEW
        # On a `-` chain the record's first base lands at its new last base.
        low, high = (first_pos, last_pos) if chain_strand == "+" else (last_pos, first_pos)
        new_length = high - low + 1 if record.length else 0
        if high < low or abs(new_length - record.length) > self.length_tolerance * max(record.length, 1):
            return LENGTH_CHANGED
        flipped = chain_strand == "-"
        strand = _FLIP[record.strand] if flipped else record.strand
        return dataclasses.replace(record, chrom=chrom, start=low, end=low + new_length, strand=strand), flipped

    def lift_all(self, records: Iterable[BedRecord]) -> LiftoverResult:
        """Lift every record; mapped + unmapped always equals the input count."""
        result = LiftoverResult()
        for record in records:
            lifted = self._lift_one(record)
            if isinstance(lifted, str):
                result.unmapped.append(Unmapped(record, lifted))
                continue
            result.mapped.append(lifted[0])
            if lifted[1]:
                result.strand_flipped.append(lifted[0])
        log.info("lifted %d of %d records through %s (%d strand-flipped); unmapped: %s", len(result.mapped),
                 result.n_input, self.path.name, result.n_strand_flipped, result.reasons() or "none")
        return result


def liftover_bed(chain_path: str | os.PathLike, records: Iterable[BedRecord],
                 length_tolerance: float = 0.1) -> LiftoverResult:
    """Lift BED records through a UCSC chain: mapped records get new coordinates, unmapped ones a reason."""
    return ChainLifter(chain_path, length_tolerance).lift_all(records)
