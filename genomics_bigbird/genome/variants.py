"""VCF/BCF variants -> reference and alternate windows of width W, one per (record, ALT).

Window rule (VCF positions are 1-based; `p = POS - 1` is the 0-based first REF base):

- the reference window is `[p - W//2, p - W//2 + W)`, so the first REF base sits at index `W//2`
  (for an SNV this is the design's centered window of the record `[p, p+1)`);
- the alternate window keeps the same left flank, puts ALT at index `W//2`, then continues
  with the genome right after REF (`p + len(REF)` onwards) until it has W bases: a deletion is
  filled up from further right, an insertion pushes bases out on the right (truncated to W);
- bases beyond a contig end are `N`; `n_padded` is the larger count of the two windows and
  such a variant gets status `padded` (it is still scored).

Every record passing the region/BED filters is yielded once per ALT (once for `no_alt` when ALT
is `.`), in file order, with one of the STATUSES below; only `ok` and `padded` carry windows.
REF and sequence ALTs are reported upper case; symbolic and breakend ALTs exactly as written
(a breakend's mate contig is a name, and names are case-sensitive).
"""
from __future__ import annotations

import bisect
import dataclasses
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import pysam

from genomics_bigbird.errors import InputError
from genomics_bigbird.genome.intervals import read_bed
from genomics_bigbird.genome.reference import ReferenceGenome, contig_key
from genomics_bigbird.genome.sequence import normalize
from genomics_bigbird.genome.vcf import count_records, header_problem, quiet_htslib, record_problem

log = logging.getLogger(__name__)

# status -> meaning; the order is the order of the checks (the first that applies wins)
STATUSES = {
    "ok": "scored",
    "padded": "scored; the window runs past a contig end and n_padded of its bases are N",
    "unknown_contig": "CHROM is not in the FASTA (chr1 and 1, chrM and MT name each other)",
    "telomere": "POS is 0 or the contig length + 1: a telomere mark (VCF 4.2 section 1.6.1), not a base",
    "no_alt": "ALT is . or an allele is empty (e.g. `A,`): nothing to compare with",
    "spanning_deletion": "ALT is *: this position lies inside a deletion given by another record",
    "symbolic_alt": "ALT is symbolic (<DEL>, <INS>, <*>, <NON_REF>...): no sequence to score",
    "breakend": "ALT is a breakend (G[chr7:100[, ]chr2:5]A, A. or .A): a rearrangement, not a local change",
    "ref_mismatch": "REF differs from the FASTA at POS, or runs past the contig end",
}
SCORED = ("ok", "padded")
_BREAKEND = re.compile(r"[\[\]]|^\.|\.$")
_REGION = re.compile(r"^([^:\s]+)(?::([\d,]+)(?:-([\d,]+))?)?$")
_KIND_STATUS = {"missing": "no_alt", "spanning_deletion": "spanning_deletion", "symbolic": "symbolic_alt",
                "breakend": "breakend"}
GROUP_UNSCORED = 8  # a group holds at most this many times `size` variants (bounds memory when few score)


@dataclass(frozen=True)
class VariantWindows:
    """One (record, ALT): the variant in VCF terms, its status and its ref/alt windows (empty unless scored)."""

    chrom: str            # as written in the VCF
    pos: int              # 1-based VCF POS
    id: str               # VCF ID ("." when missing)
    ref: str
    alt: str
    allele: int           # ALT index in VCF terms: 1 = first ALT (0 for `no_alt` when ALT is `.`)
    status: str
    ref_seq: str
    alt_seq: str
    n_padded: int
    record_index: int     # 0-based index of the record among those passing the filters

    @property
    def scored(self) -> bool:
        """True when the windows are meaningful (status ok or padded)."""
        return self.status in SCORED


@dataclass
class VariantGroup:
    """Consecutive variants scored together, and how far the input had been read at the last of them."""

    variants: list[VariantWindows]
    progress: int  # input units (VCF records, ISM positions) read up to and including this group


def allele_kind(alt: str) -> str:
    """Classify an ALT allele: "sequence", "missing" (`.`), "spanning_deletion" (`*`), "symbolic" or "breakend"."""
    if alt in (".", ""):
        return "missing"
    if alt == "*":
        return "spanning_deletion"
    if alt.startswith("<"):
        return "symbolic"
    if _BREAKEND.search(alt):
        return "breakend"
    return "sequence"


def variant_windows(genome: ReferenceGenome, contig: str, pos: int, ref: str, alt: str,
                    width: int) -> tuple[str, str, int]:
    """Return (ref_seq, alt_seq, n_padded) for ALT replacing REF at 1-based `pos` (rule in the module doc)."""
    p, offset = pos - 1, width // 2
    start = p - offset
    ref_seq, pad_ref = genome.fetch_padded_count(contig, start, start + width)
    alt = normalize(alt)
    need = width - offset - len(alt)
    right, pad_right = genome.fetch_padded_count(contig, p + len(ref), p + len(ref) + max(need, 0))
    alt_seq = (ref_seq[:offset] + alt + right)[:width]
    pad_left = min(max(0, -start), offset)
    return ref_seq, alt_seq, max(pad_ref, pad_left + pad_right)


def with_windows(variant: VariantWindows, genome: ReferenceGenome, contig: str, width: int) -> VariantWindows:
    """A placeable variant (status ok, no windows yet) with its windows cut, `padded` when they leave the contig."""
    ref_seq, alt_seq, n_padded = variant_windows(genome, contig, variant.pos, variant.ref, variant.alt, width)
    return dataclasses.replace(variant, ref_seq=ref_seq, alt_seq=alt_seq, n_padded=n_padded,
                               status="padded" if n_padded else "ok")


def group_variants(candidates: Iterable[tuple[int, VariantWindows]], size: int,
                   fill: Callable[[VariantWindows], VariantWindows], part: int = 0,
                   parts: int = 1) -> Iterator[VariantGroup]:
    """Cut `(progress, variant)` candidates into groups; yield every `parts`-th group from `part`, windows filled.

    A group closes at `size` scorable variants or `GROUP_UNSCORED x size` variants. Grouping looks
    only at statuses, so every part sees the same groups and `fill` (cutting windows) runs only
    for its own: parts are the DataLoader workers, and the groups' order is the input order.
    """
    if size < 1:
        raise ValueError(f"group size must be positive, got {size}")
    group: list[VariantWindows] = []
    n_scored = index = progress = 0
    for progress, variant in candidates:
        group.append(variant)
        n_scored += variant.scored
        if n_scored == size or len(group) >= GROUP_UNSCORED * size:
            if index % parts == part:
                yield VariantGroup([fill(v) if v.scored else v for v in group], progress)
            group, n_scored, index = [], 0, index + 1
    if group and index % parts == part:
        yield VariantGroup([fill(v) if v.scored else v for v in group], progress)


def parse_region(region: str) -> tuple[str, int | None, int | None]:
    """Parse `chr:start-end` (1-based, inclusive, commas allowed) into (contig, 0-based start, end)."""
    match = _REGION.match(region.strip())
    if not match:
        raise InputError(f"region {region!r} must look like chr1, chr1:1000 or chr1:1,000-2,000")
    contig, first, last = match.groups()
    start = None if first is None else int(first.replace(",", "")) - 1
    end = None if last is None else int(last.replace(",", ""))
    if start is not None and (start < 0 or (end is not None and end <= start)):
        raise InputError(f"region {region!r}: positions are 1-based and start must not exceed end")
    return contig, start, end


class BedFilter:
    """Merged BED intervals per contig; `overlaps` answers in O(log n) per variant."""

    def __init__(self, path: str | os.PathLike):
        spans: dict[str, list[tuple[int, int]]] = {}
        for record in read_bed(path):
            spans.setdefault(contig_key(record.chrom), []).append((record.start, record.end))
        self._starts: dict[str, list[int]] = {}
        self._ends: dict[str, list[int]] = {}
        for key, items in spans.items():
            merged: list[list[int]] = []
            for start, end in sorted(items):
                if merged and start <= merged[-1][1]:
                    merged[-1][1] = max(merged[-1][1], end)
                else:
                    merged.append([start, end])
            self._starts[key] = [s for s, _ in merged]
            self._ends[key] = [e for _, e in merged]

    def overlaps(self, chrom: str, start: int, end: int) -> bool:
        """True when [start, end) (0-based) overlaps an interval (a 0-length span counts at `start`)."""
        starts = self._starts.get(contig_key(chrom))
        if not starts:
            return False
        i = bisect.bisect_right(starts, start) - 1
        if i >= 0 and self._ends[contig_key(chrom)][i] > start:
            return True
        return i + 1 < len(starts) and starts[i + 1] < max(end, start + 1)


class VariantSource:
    """Stream `VariantWindows` from a VCF / VCF.gz / BCF with optional region, BED filter and sharding.

    Memory stays bounded: one record at a time (plus the merged BED intervals). `shard(rank,
    world_size)` keeps the records whose `record_index % world_size == rank`, so every ALT of a
    record lands on the same rank and sorting the union by (record_index, allele) restores the
    unsharded order. htslib's own console messages are silenced while the file is read.
    """

    def __init__(self, vcf: str | os.PathLike, genome: ReferenceGenome, width: int, *,
                 region: str | None = None, bed: str | os.PathLike | None = None,
                 rank: int = 0, world_size: int = 1):
        if width < 1:
            raise ValueError(f"window width must be positive, got {width}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.path = Path(vcf)
        if not self.path.is_file():
            raise InputError("VCF file not found", self.path)
        self.genome, self.width = genome, width
        self.region, self.bed = region, bed
        self.rank, self.world_size = rank, world_size
        self._bed = BedFilter(bed) if bed is not None else None

    def shard(self, rank: int, world_size: int) -> "VariantSource":
        """The same source restricted to rank `rank` of `world_size` (record index modulo world size)."""
        return VariantSource(self.path, self.genome, self.width, region=self.region, bed=self.bed,
                             rank=rank, world_size=world_size)

    def count_records(self) -> int:
        """VCF records this source reads (all of them, or those of `region`), before the BED filter and sharding."""
        with quiet_htslib(), self._open() as vcf:
            _, fetch_args = self._records(vcf)
            return count_records(vcf, self.path, fetch_args)

    def __iter__(self) -> Iterator[VariantWindows]:
        for _, variant in self._candidates():
            yield self._fill(variant) if variant.scored else variant

    def groups(self, size: int, part: int = 0, parts: int = 1) -> Iterator[VariantGroup]:
        """Groups of consecutive variants (`group_variants`); `progress` counts the VCF records read."""
        return group_variants(self._candidates(), size, self._fill, part, parts)

    def _fill(self, variant: VariantWindows) -> VariantWindows:
        return with_windows(variant, self.genome, self.genome.resolve(variant.chrom), self.width)

    def _open(self) -> pysam.VariantFile:
        try:
            return pysam.VariantFile(str(self.path))
        except (ValueError, OSError):
            raise header_problem(self.path) from None

    def _records(self, vcf: pysam.VariantFile) -> tuple[Iterator, tuple | None]:
        if self.region is None:
            return iter(vcf), None
        contig, start, end = parse_region(self.region)
        need_index = ("region filtering needs a bgzip-compressed VCF with a tabix index (.tbi/.csi): "
                      f"`bgzip {self.path.name} && tabix -p vcf {self.path.name}.gz` (or pysam.tabix_index)")
        if vcf.index is None:
            raise InputError(need_index, self.path)
        names = list(vcf.index)
        match = [n for n in names if n == contig] or [n for n in names if contig_key(n) == contig_key(contig)]
        if not match:
            raise InputError(f"region contig {contig!r} is not in the VCF index (contigs: "
                             f"{', '.join(names[:8])})", self.path)
        fetch_args = (match[0], start, end)
        return vcf.fetch(*fetch_args), fetch_args

    def _candidates(self) -> Iterator[tuple[int, VariantWindows]]:
        """(records read, variant) for every (record, ALT) kept, in file order; scorable ones without windows."""
        contig_of: dict[str, str | None] = {}
        with quiet_htslib(), self._open() as vcf:
            records, fetch_args = self._records(vcf)
            ordinal, kept = 0, -1
            while True:
                try:
                    record = next(records)
                except StopIteration:
                    break
                except (OSError, ValueError) as err:
                    raise record_problem(self.path, fetch_args, ordinal, err) from None
                ordinal += 1
                if self._bed is not None and not self._bed.overlaps(record.chrom, record.start, record.stop):
                    continue
                kept += 1
                if kept % self.world_size != self.rank:
                    continue
                if record.chrom not in contig_of:
                    try:
                        contig_of[record.chrom] = self.genome.resolve(record.chrom)
                    except InputError:
                        contig_of[record.chrom] = None
                        log.warning("%s: contig %s is not in the FASTA; its variants get status unknown_contig",
                                    self.path, record.chrom)
                for variant in self._statuses(record, contig_of[record.chrom], kept):
                    yield ordinal, variant

    def _statuses(self, record, contig: str | None, index: int) -> Iterator[VariantWindows]:
        """The record's variants with their status (`STATUSES`' order); scorable ones as `ok`, without windows."""
        ref = record.ref.upper()
        alts = record.alts or (".",)
        telomere = contig is not None and record.pos in (0, self.genome.contigs[contig] + 1)
        ref_ok = contig is not None and not telomere and self._ref_matches(contig, record.start, ref)
        for allele, alt in enumerate(alts, start=1 if record.alts else 0):
            kind = allele_kind(alt)
            if contig is None:
                status = "unknown_contig"
            elif telomere:
                status = "telomere"
            elif kind != "sequence":
                status = _KIND_STATUS[kind]
            else:
                status = "ok" if ref_ok else "ref_mismatch"
            shown = alt.upper() if kind == "sequence" else alt
            yield VariantWindows(record.chrom, record.pos, record.id or ".", ref, shown, allele, status,
                                 "", "", 0, index)

    def _ref_matches(self, contig: str, start: int, ref: str) -> bool:
        end = start + len(ref)
        if end > self.genome.contigs[contig]:
            return False
        return self.genome.fetch(contig, start, end) == normalize(ref)


def read_variant_windows(vcf: str | os.PathLike, genome: ReferenceGenome, width: int, *,
                         region: str | None = None, bed: str | os.PathLike | None = None,
                         rank: int = 0, world_size: int = 1) -> Iterator[VariantWindows]:
    """Yield the ref/alt windows of every (record, ALT) of a VCF, in file order (see `VariantSource`)."""
    yield from VariantSource(vcf, genome, width, region=region, bed=bed, rank=rank, world_size=world_size)
