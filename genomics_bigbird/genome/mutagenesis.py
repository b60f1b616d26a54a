"""In-silico saturation mutagenesis as variants: every position of a region, every other base, as an SNV.

Each (position, base) is a `VariantWindows` cut by the variant window rule of
`genomics_bigbird.genome.variants` (the SNV's base at index W//2 of its window), so it is scored
exactly as `gbb score-variants` scores the same SNV written in a VCF. `record_index` is the
position's offset in the region and `allele` the base's column in `BASES` plus one.
"""
from __future__ import annotations

from typing import Iterator

from genomics_bigbird.genome.reference import ReferenceGenome
from genomics_bigbird.genome.variants import VariantGroup, VariantWindows, group_variants, with_windows

BASES = "ACGT"


class SaturationSource:
    """The SNVs of every position of `contig:[start, end)` (0-based) to each base other than the reference.

    A reference base that is not A/C/G/T (an `N`) has all four bases as alternatives. Like
    `VariantSource`, it streams `VariantWindows` (`iter`) or groups of them (`groups`, progress
    in positions); memory stays bounded whatever the region's length.
    """

    def __init__(self, genome: ReferenceGenome, contig: str, start: int, end: int, width: int):
        if width < 1:
            raise ValueError(f"window width must be positive, got {width}")
        self.contig = genome.resolve(contig)
        length = genome.contigs[self.contig]
        if not 0 <= start < end <= length:
            raise ValueError(f"region {contig}:{start + 1}-{end} is not inside {self.contig} (1-{length})")
        self.genome, self.start, self.end, self.width = genome, start, end, width

    def __len__(self) -> int:
        return self.end - self.start

    def reference(self) -> str:
        """The region's reference bases (upper case, N for anything but A/C/G/T)."""
        return self.genome.fetch(self.contig, self.start, self.end)

    def groups(self, size: int, part: int = 0, parts: int = 1) -> Iterator[VariantGroup]:
        """Groups of about `size` variants that keep a position's three SNVs together (they share a reference window)."""
        substitutions = len(BASES) - 1
        per_group = max(substitutions, size - size % substitutions)
        return group_variants(self._candidates(), per_group, self._fill, part, parts)

    def _fill(self, variant: VariantWindows) -> VariantWindows:
        return with_windows(variant, self.genome, self.contig, self.width)

    def _candidates(self) -> Iterator[tuple[int, VariantWindows]]:
        chunk = 4096
        for lo in range(self.start, self.end, chunk):
            bases = self.genome.fetch(self.contig, lo, min(lo + chunk, self.end))
            for offset, ref in enumerate(bases):
                p = lo + offset
                for column, alt in enumerate(BASES):
                    if alt != ref:
                        yield p - self.start + 1, VariantWindows(
                            self.contig, p + 1, ".", ref, alt, column + 1, "ok", "", "", 0, p - self.start)
