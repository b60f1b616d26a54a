"""Chromatin signal of the simulated genome: motif design, planting, sequence scans, labels, peaks.

Planting only decides where motifs are written. Labels are computed afterwards by scanning the
final sequence (repeats, gaps and IUPAC codes included), so they are exactly what the bases say.
Promoter-based rules (DHS at a TSS, HM near a TSS) use the TSS list, whose promoters are never
overwritten after they are placed.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import pysam

from genomics_bigbird.atomic import atomic_path
from genomics_bigbird.genome.sequence import reverse_complement

BIN_SIZE = 200
DENSE_FLANK = 100  # motif-density marks count motifs in the bin +/- 100 bp (a 400 bp window)
LONG_RANGE = (2000, 4000)  # partner motif start lies this many bp (inclusive) from the bin's motif
MASKED_MIN = 150  # "repeat-rich" mark: at least this many soft-masked bases in the bin
GC_MIN = 112  # "GC-rich" mark: at least this many G/C in the bin (56%)

_BASES = np.frombuffer(b"ACGT", dtype=np.uint8)

# Which base motifs m0..m11 each DHS feature responds to (besides a TSS in the bin).
DHS_SETS = ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11), (0, 6), (3, 9))
PAIRS = ((4, 5), (6, 7), (8, 9), (10, 11))  # TF features needing both motifs in the bin


@dataclass(frozen=True)
class Feature:
    """One chromatin label and the sequence rule that defines it."""

    name: str
    group: str  # DHS, TF or HM
    kind: str  # any | forward | all | long_range | dense | tss | masked | gc
    motifs: tuple[str, ...] = ()
    min_count: int = 1
    tss_within: int | None = None  # also positive when a TSS lies within this many bp of the bin

    @property
    def long_range(self) -> bool:
        return self.kind == "long_range"

    def rule(self) -> str:
        """A human-readable statement of the rule."""
        motifs = " or ".join(self.motifs)
        if self.kind == "long_range":
            text = (f"long-range: motif {self.motifs[0]} (either strand) inside the bin AND partner "
                    f"{self.motifs[1]} (either strand) starting {LONG_RANGE[0]}-{LONG_RANGE[1]} bp away")
        else:
            text = {
                "any": f"motif {motifs} (either strand) entirely inside the bin",
                "forward": f"motif {motifs} on the + strand only, entirely inside the bin",
                "all": f"motifs {' and '.join(self.motifs)} (either strand) both entirely inside the bin",
                "dense": (f">= {self.min_count} occurrences of {motifs} (either strand) inside the bin "
                          f"+/- {DENSE_FLANK} bp"),
                "tss": "",
                "masked": f">= {MASKED_MIN} of the bin's {BIN_SIZE} bases soft-masked (repeat-rich)",
                "gc": f">= {GC_MIN} G/C among the bin's {BIN_SIZE} bases",
            }[self.kind]
        if self.tss_within is not None:
            tss = "a promoter TSS inside the bin" if self.tss_within == 0 else \
                f"a promoter TSS within {self.tss_within} bp of the bin"
            text = f"{text}, or {tss}" if text else tss
        return text


def design_motifs(rng: np.random.Generator, lengths: Iterable[int], avoid: Iterable[str]) -> list[str]:
    """Draw distinct motifs: no shared 6-mer (either strand), no CpG, no 4-base runs, not in `avoid`."""
    avoid = [a.upper() for a in avoid]
    taken: set[str] = set()
    motifs = []
    for length in lengths:
        while True:
            motif = _BASES[rng.integers(0, 4, size=length)].tobytes().decode("ascii")
            rc = reverse_complement(motif)
            gc = (motif.count("G") + motif.count("C")) / length
            if not 0.35 <= gc <= 0.65 or "CG" in motif or re.search(r"A{4}|C{4}|G{4}|T{4}", motif):
                continue
            kmers = {motif[i:i + 6] for i in range(length - 5)}
            rc_kmers = {rc[i:i + 6] for i in range(length - 5)}
            if kmers & rc_kmers or (kmers | rc_kmers) & taken:
                continue
            if any(motif in a or rc in a for a in avoid):
                continue
            taken |= kmers | rc_kmers
            motifs.append(motif)
            break
    return motifs


def motif_library(rng: np.random.Generator, avoid: Iterable[str]) -> dict[str, str]:
    """Named motifs: base m0-m11, strand-specific s0-s3, long-range partners p0-p3, dense h0-h3."""
    names = [f"m{i}" for i in range(12)] + [f"s{i}" for i in range(4)] + \
        [f"p{i}" for i in range(4)] + [f"h{i}" for i in range(4)]
    lengths = rng.integers(9, 15, size=len(names))
    lengths[:2] = (8, 14)  # the range's ends are represented
    return dict(zip(names, design_motifs(rng, lengths.tolist(), avoid)))


def feature_catalogue(m: dict[str, str]) -> list[Feature]:
    """The 40 features (8 DHS, 24 TF, 8 HM) in label-column order."""
    base = [m[f"m{i}"] for i in range(12)]
    features = [Feature(f"DHS{j + 1:02d}", "DHS", "any", tuple(base[i] for i in idx), tss_within=0)
                for j, idx in enumerate(DHS_SETS)]
    features += [Feature(f"TF{i + 1:02d}", "TF", "any", (base[i],)) for i in range(12)]
    features += [Feature(f"TF{13 + i:02d}", "TF", "forward", (m[f"s{i}"],)) for i in range(4)]
    features += [Feature(f"TF{17 + j:02d}", "TF", "all", (base[a], base[b])) for j, (a, b) in enumerate(PAIRS)]
    features += [Feature(f"TF{21 + i:02d}", "TF", "long_range", (base[i], m[f"p{i}"])) for i in range(4)]
    features += [
        Feature("HM01", "HM", "tss", tss_within=400),
        Feature("HM02", "HM", "dense", (m["h0"],), min_count=2, tss_within=200),
        *[Feature(f"HM{3 + i:02d}", "HM", "dense", (m[f"h{i}"],), min_count=2) for i in range(4)],
        Feature("HM07", "HM", "masked"),
        Feature("HM08", "HM", "gc"),
    ]
    return features


class _Planter:
    """Writes motifs into free (unoccupied) places of the contigs."""

    def __init__(self, rng: np.random.Generator, seqs: dict[str, np.ndarray], occupied: dict[str, np.ndarray]):
        self.rng, self.seqs, self.occupied = rng, seqs, occupied
        self.names = list(seqs)
        lengths = np.array([len(seqs[c]) for c in self.names], dtype=float)
        self.weights = lengths / lengths.sum()

    def write(self, contig: str, pos: int, motif: str, forward: bool) -> bool:
        text = motif if forward else reverse_complement(motif)
        end = pos + len(text)
        if not self._free(contig, pos, len(text)):
            return False
        self.seqs[contig][pos:end] = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
        self.occupied[contig][pos:end] = True
        return True

    def random_bin(self) -> tuple[str, int]:
        contig = self.names[self.rng.choice(len(self.names), p=self.weights)]
        return contig, int(self.rng.integers(0, len(self.seqs[contig]) // BIN_SIZE))

    def centered(self, motifs: list[str], offsets: list[int], tries: int = 50) -> tuple[str, int] | None:
        """Plant motifs at fixed offsets of one random bin (peak summits sit on motifs)."""
        for _ in range(tries):
            contig, b = self.random_bin()
            jitter = int(self.rng.integers(-2, 3))
            spans = [(b * BIN_SIZE + o + jitter, m) for o, m in zip(offsets, motifs)]
            if all(self._free(contig, p, len(m)) for p, m in spans):
                for p, m in spans:
                    self.write(contig, p, m, bool(self.rng.integers(0, 2)))
                return contig, spans[0][0]
        return None

    def _free(self, contig: str, pos: int, length: int) -> bool:
        return 0 <= pos and pos + length <= len(self.seqs[contig]) and not self.occupied[contig][pos:pos + length].any()


def plant_signal(rng: np.random.Generator, seqs: dict[str, np.ndarray], occupied: dict[str, np.ndarray],
                 m: dict[str, str]) -> dict[str, int]:
    """Plant every motif many times (in place); return how many copies of each were written."""
    planter = _Planter(rng, seqs, occupied)
    n_bins = sum(len(s) for s in seqs.values()) // BIN_SIZE
    counts = {name: 0 for name in m}

    def center(motif: str) -> int:
        return BIN_SIZE // 2 - len(motif) // 2

    def plant_centered(names: list[str], rate: float, offsets) -> list[tuple[str, int]]:
        placed = []
        for _ in range(round(rate * n_bins)):
            spot = planter.centered([m[n] for n in names], offsets)
            if spot is not None:
                placed.append(spot)
                for n in names:
                    counts[n] += 1
        return placed

    for i in range(12):
        plant_centered([f"m{i}"], 0.025, [center(m[f"m{i}"])])
    for i in range(4):
        plant_centered([f"s{i}"], 0.05, [center(m[f"s{i}"])])
    for a, b in PAIRS:  # A ends just left of the bin centre, B starts just right of it
        plant_centered([f"m{a}", f"m{b}"], 0.025, [BIN_SIZE // 2 - 2 - len(m[f"m{a}"]), BIN_SIZE // 2 + 2])
    for i in range(4):  # extra copies of m_i, most with partner p_i 2.2-3.8 kbp away
        for contig, pos in plant_centered([f"m{i}"], 0.025, [center(m[f"m{i}"])]):
            if rng.random() < 0.85:
                for _ in range(10):
                    d = int(rng.integers(LONG_RANGE[0] + 200, LONG_RANGE[1] - 200)) * (1 if rng.random() < 0.5 else -1)
                    if planter.write(contig, pos + d, m[f"p{i}"], bool(rng.integers(0, 2))):
                        counts[f"p{i}"] += 1
                        break
    for i in range(4):  # clusters of 3-5 copies, 40-120 bp apart: a broad, motif-dense mark
        motif = m[f"h{i}"]
        for _ in range(round(0.012 * n_bins)):
            contig, b = planter.random_bin()
            pos = b * BIN_SIZE + int(rng.integers(0, BIN_SIZE))
            for _ in range(int(rng.integers(3, 6))):
                if planter.write(contig, pos, motif, bool(rng.integers(0, 2))):
                    counts[f"h{i}"] += 1
                pos += len(motif) + int(rng.integers(40, 121))
    return counts


def find_all(text: str, motif: str) -> np.ndarray:
    """Start positions of every (overlapping) occurrence of `motif` in `text`."""
    hits, i = [], text.find(motif)
    while i != -1:
        hits.append(i)
        i = text.find(motif, i + 1)
    return np.asarray(hits, dtype=np.int64)


def scan_motifs(upper: str, motifs: Iterable[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """For each motif, starts of its + strand and - strand occurrences in an upper-case sequence."""
    return {mo: (find_all(upper, mo), find_all(upper, reverse_complement(mo))) for mo in dict.fromkeys(motifs)}


def _bins_containing(starts: np.ndarray, length: int, n_bins: int) -> np.ndarray:
    """Boolean (n_bins,): bins that hold an occurrence entirely."""
    hit = np.zeros(n_bins, dtype=bool)
    inside = starts // BIN_SIZE == (starts + length - 1) // BIN_SIZE
    idx = starts[inside] // BIN_SIZE
    hit[idx[idx < n_bins]] = True
    return hit


def _window_counts(starts: np.ndarray, length: int, n_bins: int) -> np.ndarray:
    """Occurrences entirely inside each bin's window [start - flank, end + flank)."""
    diff = np.zeros(n_bins + 1, dtype=np.int64)
    lo = np.maximum(0, -((-(starts + length - BIN_SIZE - DENSE_FLANK)) // BIN_SIZE))  # ceil
    hi = np.minimum(n_bins - 1, (starts + DENSE_FLANK) // BIN_SIZE)
    ok = lo <= hi
    np.add.at(diff, lo[ok], 1)
    np.add.at(diff, hi[ok] + 1, -1)
    return np.cumsum(diff)[:n_bins]


def contig_labels(seq: np.ndarray, tss: np.ndarray, features: list[Feature]) -> np.ndarray:
    """Labels (n_full_bins, n_features) of one contig, by scanning its final sequence."""
    n_bins = len(seq) // BIN_SIZE
    upper = (seq & 0xDF).tobytes().decode("ascii")
    hits = scan_motifs(upper, [mo for f in features for mo in f.motifs])
    binned = seq[: n_bins * BIN_SIZE].reshape(n_bins, BIN_SIZE)
    starts = np.arange(n_bins) * BIN_SIZE
    labels = np.zeros((n_bins, len(features)), dtype=bool)
    sorted_tss = np.append(np.sort(tss), np.iinfo(np.int64).max)  # sentinel: "no TSS at or after"

    def in_bin(motif: str, strands=(0, 1)) -> np.ndarray:
        return np.logical_or.reduce([_bins_containing(hits[motif][s], len(motif), n_bins) for s in strands])

    for j, f in enumerate(features):
        if f.kind == "any":
            col = np.logical_or.reduce([in_bin(mo) for mo in f.motifs])
        elif f.kind == "forward":
            col = in_bin(f.motifs[0], strands=(0,))
        elif f.kind == "all":
            col = np.logical_and.reduce([in_bin(mo) for mo in f.motifs])
        elif f.kind == "long_range":
            col = _long_range(hits, f.motifs, n_bins)
        elif f.kind == "dense":
            count = sum(_window_counts(hits[mo][s], len(mo), n_bins) for mo in f.motifs for s in (0, 1))
            col = count >= f.min_count
        elif f.kind == "masked":
            col = (binned >= ord("a")).sum(axis=1) >= MASKED_MIN
        elif f.kind == "gc":
            col = np.isin(binned & 0xDF, (ord("G"), ord("C"))).sum(axis=1) >= GC_MIN
        else:
            col = np.zeros(n_bins, dtype=bool)
        if f.tss_within is not None and len(tss):
            near = np.searchsorted(sorted_tss[:-1], starts - f.tss_within)  # first TSS >= start - d
            col = col | (sorted_tss[near] < starts + BIN_SIZE + f.tss_within)
        labels[:, j] = col
    return labels


def _long_range(hits, motifs: tuple[str, str], n_bins: int) -> np.ndarray:
    anchor, partner = motifs
    partner_starts = np.sort(np.concatenate(hits[partner]))
    col = np.zeros(n_bins, dtype=bool)
    for s in (0, 1):
        starts = hits[anchor][s]
        inside = starts // BIN_SIZE == (starts + len(anchor) - 1) // BIN_SIZE
        for p in starts[inside]:
            lo, hi = LONG_RANGE
            left = np.searchsorted(partner_starts, [p - hi, p - lo + 1, p + lo, p + hi + 1])
            if (left[1] > left[0] or left[3] > left[2]) and p // BIN_SIZE < n_bins:
                col[p // BIN_SIZE] = True
    return col


def kept_bins(seq: np.ndarray) -> np.ndarray:
    """Boolean (n_full_bins,): bins with at most half of their bases N."""
    n_bins = len(seq) // BIN_SIZE
    binned = seq[: n_bins * BIN_SIZE].reshape(n_bins, BIN_SIZE)
    return (binned & 0xDF == ord("N")).sum(axis=1) <= BIN_SIZE // 2


def peaks_from_labels(rng: np.random.Generator, bins: list[tuple[str, int, int]], column: np.ndarray,
                      contig_lengths: dict[str, int], feature: str) -> list[str]:
    """narrowPeak lines: runs of adjacent positive bins, widened by < 50 bp on each side.

    Widening stays under half a bin on each side, so even a negative bin squeezed between two
    peaks is covered < 50% and the >= 50% rule gives back exactly `column`.
    """
    runs: list[list] = []
    for (contig, start, end), positive in zip(bins, column):
        if not positive:
            continue
        if runs and runs[-1][0] == contig and runs[-1][2] == start:
            runs[-1][2] = end
        else:
            runs.append([contig, start, end])
    lines = []
    for k, (contig, start, end) in enumerate(runs):
        left, right = (int(x) for x in rng.integers(0, 46, size=2))
        start, end = max(0, start - left), min(contig_lengths[contig], end + right)
        signal = float(rng.uniform(5, 60))
        score = min(1000, int(signal * 16))
        lines.append(f"{contig}\t{start}\t{end}\t{feature}_peak{k + 1}\t{score}\t.\t{signal:.3f}\t"
                     f"{signal / 3:.3f}\t{signal / 4:.3f}\t{(end - start) // 2}\n")
    return lines


def _variant_at(rng: np.random.Generator, seq: str, pos: int, kind: str) -> tuple[int, str, list[str]] | None:
    """(anchor, REF, ALTs) of a left-aligned SNV/DEL/INS touching `pos`, or None if not possible there."""
    if kind == "SNV":
        ref = seq[pos]
        alts = [b for b in "ACGT" if b != ref]
        return pos, ref, [alts[rng.integers(3)]]
    n = int(rng.integers(1, 21))
    anchor = pos - 1 if kind == "DEL" else pos
    if kind == "DEL":  # REF = anchor + n deleted bases; left-aligned iff the anchor differs from the last one
        ref = seq[anchor:anchor + n + 1]
        return (anchor, ref, [ref[0]]) if len(ref) == n + 1 and ref[0] != ref[-1] else None
    inserted = "".join(_BASES[rng.integers(0, 4, size=n)].tobytes().decode())
    if inserted[-1] == seq[anchor]:  # would shift left by one
        return None
    return anchor, seq[anchor], [seq[anchor] + inserted]


def write_variants(rng: np.random.Generator, path, seqs: dict[str, np.ndarray], features: list[Feature],
                   n_variants: int) -> int:
    """Write a sorted, bgzipped and tabix-indexed VCF of SNVs and indels; return the record count."""
    records = choose_variants(rng, seqs, features, n_variants)
    write_vcf(path, {c: len(s) for c, s in seqs.items()}, records)
    return len(records)


def choose_variants(rng: np.random.Generator, seqs: dict[str, np.ndarray], features: list[Feature],
                    n_variants: int) -> list[tuple[str, int, str, list[str], str]]:
    """(contig, 0-based anchor, REF, ALTs, INFO) sorted; 2 in 5 inside a motif occurrence of a feature."""
    uppers = {c: (s & 0xDF).tobytes().decode("ascii") for c, s in seqs.items()}
    owner = {}  # motif -> the first feature it defines (the one MOTIF= names)
    for f in features:
        if f.group != "DHS":
            for mo in f.motifs:
                owner.setdefault(mo, f.name)
    occurrences, covered = [], {c: np.zeros(len(s), dtype=bool) for c, s in seqs.items()}
    for contig, upper in uppers.items():
        for mo, (fwd, rev) in sorted(scan_motifs(upper, owner).items()):
            for start in np.concatenate([fwd, rev]):
                occurrences.append((contig, int(start), len(mo), owner[mo]))
                covered[contig][start:start + len(mo)] = True
    contigs = [c for c in seqs if c != "chrM"]
    weights = np.array([len(seqs[c]) for c in contigs], dtype=float)
    records, used = [], set()
    kinds = ("SNV", "SNV", "SNV", "DEL", "INS")
    while len(records) < n_variants:
        in_motif = len(records) % 5 < 2 and occurrences
        if in_motif:
            contig, start, length, feature = occurrences[rng.integers(len(occurrences))]
            pos = start + int(rng.integers(0, length))
        else:
            contig, feature = contigs[rng.choice(len(contigs), p=weights / weights.sum())], None
            pos = int(rng.integers(25, len(seqs[contig]) - 25))
            if covered[contig][pos - 21:pos + 22].any():
                continue
        kind = kinds[rng.integers(len(kinds))]
        multi = len(records) in (3, 11, 17)  # a few multi-allelic records
        made = _variant_at(rng, uppers[contig], pos, "DEL" if multi and len(records) == 17 else kind)
        if made is None or (contig, made[0] // 50) in used:
            continue
        anchor, ref, alts = made
        if set(ref) - set("ACGT"):
            continue
        if multi and len(ref) == 1:
            alts = [b for b in "ACGT" if b != ref][:2]
        elif multi:  # two deletions sharing the anchor; the shorter one must be left-aligned too
            k = int(rng.integers(1, len(ref) - 1)) if len(ref) > 2 else 0
            if k == 0 or ref[0] == ref[k]:
                continue
            alts = [ref[0] + ref[k + 1:], ref[0]]
        types = ["SNV" if len(a) == len(ref) else ("DEL" if len(a) < len(ref) else "INS") for a in alts]
        info = (f"MOTIF={feature};" if feature else "") + "VT=" + ",".join(types)
        used.add((contig, anchor // 50))
        records.append((contig, anchor, ref, alts, info))
    order = {c: i for i, c in enumerate(seqs)}
    return sorted(records, key=lambda r: (order[r[0]], r[1]))


def write_vcf(path, contigs: dict[str, int], records: list[tuple[str, int, str, list[str], str]]) -> None:
    """Write records as VCFv4.2, bgzip it and build the tabix index, both atomically."""
    header = ["##fileformat=VCFv4.2", "##source=genomics-bigbird simulate", "##reference=genome.fa",
              *(f"##contig=<ID={c},length={n}>" for c, n in contigs.items()),
              '##INFO=<ID=MOTIF,Number=1,Type=String,Description="Feature whose planted motif the variant overlaps">',
              '##INFO=<ID=VT,Number=A,Type=String,Description="Type of each ALT allele: SNV, INS or DEL">',
              "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    body = [f"{c}\t{a + 1}\tsimvar{i + 1}\t{ref}\t{','.join(alts)}\t.\tPASS\t{info}"
            for i, (c, a, ref, alts, info) in enumerate(records)]
    path = str(path)
    with atomic_path(path) as tmp_gz, atomic_path(path + ".tbi") as tmp_tbi:
        plain = f"{tmp_gz}.vcf"
        try:
            with open(plain, "w") as handle:
                handle.write("\n".join(header + body) + "\n")
            pysam.tabix_compress(plain, str(tmp_gz), force=True)
        finally:
            if os.path.exists(plain):
                os.remove(plain)
        pysam.tabix_index(str(tmp_gz), preset="vcf", index=str(tmp_tbi), force=True)
