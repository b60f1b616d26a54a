"""VCF/BCF variants -> reference and alternate windows of width W, one per (record, ALT).

Window rule (VCF positions are 1-based; `p = POS - 1` is the 0-based first REF base):

- the reference window is `[p - W//2, p - W//2 + W)`, so the first REF base sits at index `W//2`
  (for an SNV this is the design's centered window of the record `[p, p+1)`);
- the alternate window keeps the same left flank, puts ALT at index `W//2`, then continues
  with the genome right after REF (`p + len(REF)` onwards) until it has W bases: a deletion is
  filled up from further right, an insertion pushes bases out on the right (truncated to W);
- bases beyond a contig end are `N`; `n_padded` is the larger count of the two windows and
  such a variant gets status `padded` (it is still scored).

Statuses: `ok`, `padded` (scored) and `ref_mismatch` (REF differs from the FASTA, or runs past
the contig end), `symbolic_alt` (`<DEL>`, `<*>`, `*`), `breakend` (`A[chr2:5[`, `A.`),
`unknown_contig`, `no_alt` (ALT is `.`): not scored, with empty sequences. Every record passing
the region/BED filters is yielded once per ALT (once for `no_alt`), in file order.
"""
from __future__ import annotations

import bisect
import gzip
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pysam

from genomics_bigbird.errors import InputError
from genomics_bigbird.genome.intervals import read_bed
from genomics_bigbird.genome.reference import ReferenceGenome, contig_key
from genomics_bigbird.genome.sequence import normalize

log = logging.getLogger(__name__)

SCORED = ("ok", "padded")
_BREAKEND = re.compile(r"[\[\]]|^\.|\.$")
_REGION = re.compile(r"^([^:\s]+)(?::([\d,]+)(?:-([\d,]+))?)?$")
_VCF_COLUMNS = ["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO"]


@dataclass(frozen=True)
class VariantWindows:
    """One (record, ALT): the variant in VCF terms, its status and its ref/alt windows (empty unless scored)."""

    chrom: str            # as written in the VCF
    pos: int              # 1-based VCF POS
    id: str               # VCF ID ("." when missing)
    ref: str
    alt: str
    allele: int           # ALT index in VCF terms: 1 = first ALT (0 for `no_alt`)
    status: str
    ref_seq: str
    alt_seq: str
    n_padded: int
    record_index: int     # 0-based index of the record among those passing the filters

    @property
    def scored(self) -> bool:
        """True when the windows are meaningful (status ok or padded)."""
        return self.status in SCORED


def allele_kind(alt: str) -> str:
    """Classify an ALT allele: "breakend", "symbolic" (`<DEL>`, `<*>`, `*`) or "sequence"."""
    if alt.startswith("<") or alt == "*":
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


def _text_lines(path: Path) -> Iterator[tuple[int, str]]:
    with open(path, "rb") as probe:
        opener = gzip.open if probe.read(2) == b"\x1f\x8b" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            yield number, line.rstrip("\r\n")


def _header_problem(path: Path) -> InputError:
    """Find the line that makes a VCF header unreadable (pysam says only 'invalid header')."""
    if _is_binary(path):
        return InputError("BCF header could not be read (truncated or corrupt file?)", path)
    for number, line in _text_lines(path):
        if number == 1 and not line.startswith("##fileformat=VCF"):
            return InputError("not a VCF: the first line must be ##fileformat=VCFv4.x", path, 1)
        if line.startswith("##"):
            value = line.partition("=")[2]
            if "=" not in line or (value.startswith("<") and not value.endswith(">")):
                return InputError(f"malformed meta-information line: {line[:80]!r}", path, number)
        elif line.startswith("#"):
            if line.split("\t")[:8] != _VCF_COLUMNS:
                return InputError("the #CHROM line must have the tab-separated columns "
                                  f"{' '.join(_VCF_COLUMNS)} [FORMAT samples...]", path, number)
            break
        else:
            return InputError("header has no #CHROM line before the first record", path, number)
    return InputError("VCF header could not be read", path)


def _is_bcf(path: Path) -> bool:
    with gzip.open(path, "rb") as handle:
        return handle.read(3) == b"BCF"


def _record_problem(path: Path, region: tuple | None, ordinal: int, err: Exception) -> InputError:
    """Point at the malformed record number `ordinal` (0-based among records read) by its line."""
    if _is_binary(path):
        return InputError(f"malformed BCF record #{ordinal + 1} ({err})", path)
    if region is None:
        data_lines = ((n, line) for n, line in _text_lines(path) if line and not line.startswith("#"))
        target = None
    else:
        with pysam.TabixFile(str(path)) as tabix:
            target = next((t for i, t in enumerate(tabix.fetch(*region)) if i == ordinal), None)
        data_lines = ((n, line) for n, line in _text_lines(path) if line == target)
    for i, (number, line) in enumerate(data_lines):
        if target is not None or i == ordinal:
            columns = "tab-separated CHROM POS ID REF ALT QUAL FILTER INFO, POS a positive integer"
            return InputError(f"malformed VCF record {line[:60]!r} (expected {columns})", path, number)
    return InputError(f"malformed VCF record #{ordinal + 1} ({err})", path)


def _is_binary(path: Path) -> bool:
    with open(path, "rb") as probe:
        magic = probe.read(3)
    return magic == b"BCF" or (magic[:2] == b"\x1f\x8b" and _is_bcf(path))


class VariantSource:
    """Stream `VariantWindows` from a VCF / VCF.gz / BCF with optional region, BED filter and sharding.

    Memory stays bounded: one record at a time (plus the merged BED intervals). `shard(rank,
    world_size)` keeps the records whose `record_index % world_size == rank`, so every ALT of a
    record lands on the same rank and sorting the union by (record_index, allele) restores the
    unsharded order.
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

    def _open(self) -> pysam.VariantFile:
        try:
            return pysam.VariantFile(str(self.path))
        except (ValueError, OSError):
            raise _header_problem(self.path) from None

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

    def __iter__(self) -> Iterator[VariantWindows]:
        contig_of: dict[str, str | None] = {}
        with self._open() as vcf:
            records, region = self._records(vcf)
            ordinal, kept = 0, -1
            while True:
                try:
                    record = next(records)
                except StopIteration:
                    break
                except (OSError, ValueError) as err:
                    raise _record_problem(self.path, region, ordinal, err) from None
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
                yield from self._windows(record, contig_of[record.chrom], kept)

    def _windows(self, record, contig: str | None, index: int) -> Iterator[VariantWindows]:
        ref = record.ref.upper()
        alts = record.alts or (".",)
        ref_ok = contig is not None and self._ref_matches(contig, record.start, ref)
        for allele, alt in enumerate(alts, start=1 if record.alts else 0):
            kind = allele_kind(alt) if record.alts else "none"
            ref_seq = alt_seq = ""
            n_padded = 0
            if contig is None:
                status = "unknown_contig"
            elif kind != "sequence":
                status = {"none": "no_alt", "symbolic": "symbolic_alt", "breakend": "breakend"}[kind]
            elif not ref_ok:
                status = "ref_mismatch"
            else:
                ref_seq, alt_seq, n_padded = variant_windows(self.genome, contig, record.pos, ref, alt, self.width)
                status = "padded" if n_padded else "ok"
            yield VariantWindows(record.chrom, record.pos, record.id or ".", ref, alt.upper(), allele, status,
                                 ref_seq, alt_seq, n_padded, index)

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
