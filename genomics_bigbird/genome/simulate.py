"""A small simulated genome with everything the pipelines need: the demo's and the tests' default data.

`simulate(out_dir, seed, scale)` writes (names are a contract the other pipelines rely on):

- `genome.fa`, `genome.fa.fai`: plain FASTA, 60 bases per line. Contigs chr1, chr2, chr7, chr8,
  chr9, chrX (700, 500, 400, 300, 300, 200 kbp times `scale`) and chrM (16,569 bp). Background
  is an order-1 Markov chain (~41% GC, CpG at ~1/4 of expectation) whose GC drifts in ~100 kbp
  isochores; interspersed repeat families are copied with mutations in lower case (soft-masked);
  N gaps (one at the start of chr1) and a few IUPAC codes are sprinkled.
- `genome.fa.gz` + `.fai` + `.gzi`: the same FASTA, bgzip-compressed and indexed.
- `promoters.bed`: BED6, one 1-bp record per TSS (`end = start + 1`, so the TSS is `start` on
  `+` and `end - 1` on `-`). Each promoter is a ~1 kbp CpG island centred on the TSS, a TATA box
  `TATA_BOX` starting 31 bp upstream and an Inr `INR` whose A is the TSS, all on its strand.
- `other_to_sim.chain`: a UCSC chain from an "other build" (shifted, chr2 halves swapped, chr7
  reverse-complemented, gaps in every contig, contig `chrUn_sim1` absent) onto this genome.
- `promoters.other.bed`: the promoters in other-build coordinates, plus a handful in chain gaps
  and on `chrUn_sim1` (listed in `simulation.json` as `unmapped_promoters`).
- `chromatin_bins.bed` (BED3, 200 bp bins tiling each contig, bins with > 50% N skipped, last
  partial bin dropped), `chromatin_features.tsv` (index, name, group, rule),
  `chromatin_labels.npy` (uint8, bins x features) and `peaks/<feature>.narrowPeak` (a bin is
  positive exactly when >= 50% of it lies in a peak).
- `variants.vcf.gz` + `.tbi`: SNVs and left-aligned indels (anchor base included), some inside
  planted motifs (`INFO` `MOTIF=<feature>`), a few multi-allelic records, sorted, REF = genome.
- `simulation.json`: seed, scale, contig lengths, counts, motifs per feature, promoter boxes.

The same seed and scale give byte-identical files.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pysam

from genomics_bigbird.atomic import atomic_path, atomic_write
from genomics_bigbird.errors import InputError
from genomics_bigbird.genome import simulate_signal as signal
from genomics_bigbird.genome.sequence import reverse_complement

CONTIG_LENGTHS = {"chr1": 700_000, "chr2": 500_000, "chr7": 400_000, "chr8": 300_000,
                  "chr9": 300_000, "chrX": 200_000}
CHRM_LENGTH = 16_569
PROMOTERS_PER_MBP = 100
TATA_BOX, TATA_OFFSET = "TATAAAAG", -31  # first base 31 bp upstream of the TSS
INR, INR_OFFSET = "TCAGTCT", -2  # the A of the Inr is the TSS
CGI_HALF = 500
IUPAC_CODES = "RYKMSWBDHV"
FASTA_WIDTH = 60

# (name, consensus length, GC, copies per 100 kbp, shortest copy)
REPEAT_FAMILIES = (("AluSim", 290, 0.52, 22, 150), ("L1Sim", 3000, 0.38, 6, 300),
                   ("MIRSim", 220, 0.45, 10, 100), ("TcSim", 800, 0.40, 3, 300))
SIMPLE_UNITS = ("CA", "AAT", "TTTA", "GGAA", "AC", "TCC")


@dataclass
class SimulatedGenome:
    """Paths and counts of one simulated genome (see the module docstring for the files)."""

    out_dir: Path
    seed: int
    scale: float
    contigs: dict[str, int]
    fasta: Path
    fasta_gz: Path
    promoters_bed: Path
    promoters_other_bed: Path
    chain: Path
    chromatin_bins: Path
    chromatin_features: Path
    chromatin_labels: Path
    peaks_dir: Path
    variants_vcf: Path
    summary: Path
    n_promoters: int
    n_unmapped_promoters: int
    n_bins: int
    feature_names: list[str] = field(default_factory=list)
    n_variants: int = 0

    @property
    def n_features(self) -> int:
        return len(self.feature_names)


def _stage_rng(seed: int, stage: int) -> np.random.Generator:
    """One generator per stage, so changing one stage leaves the others' draws alone."""
    return np.random.default_rng([seed, stage])


def _transition_cdf(gc: float, cpg: float) -> np.ndarray:
    """Cumulative order-1 transition table (4 x 4, A C G T) for a GC level and CpG depletion."""
    pi = np.array([(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2])
    p = np.tile(pi, (4, 1))
    p[1, 2] *= cpg  # C -> G
    p[3, 0] *= 0.8  # TpA is mildly depleted too
    p[0, 0] *= 1.15  # poly-A / poly-T tracts
    p[3, 3] *= 1.15
    return np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)


def markov_sequence(rng: np.random.Generator, length: int, gc: np.ndarray | float, cpg: float = 0.12,
                    chunk: int = 1000) -> np.ndarray:
    """ASCII (uint8) upper-case sequence; `gc` gives the GC level of each `chunk` bp piece.

    The pieces are sampled as parallel chains (one step per loop for all pieces), which keeps
    numpy vectorised; their joins are the only places the chain restarts.
    """
    n = -(-length // chunk)
    gc = np.broadcast_to(np.asarray(gc, dtype=float), (n,))
    levels = np.round(np.clip(gc, 0.2, 0.8) * 100).astype(int)
    tables = {lv: _transition_cdf(lv / 100, cpg) for lv in np.unique(levels)}
    cdf = np.stack([tables[lv] for lv in levels])  # (n, 4, 4)
    codes = np.empty((n, chunk), dtype=np.uint8)
    prev = (rng.random(n)[:, None] > cdf[:, 0, :3]).sum(axis=1)
    rows = np.arange(n)
    for t in range(chunk):
        u = rng.random(n)
        prev = (u[:, None] > cdf[rows, prev, :3]).sum(axis=1)
        codes[:, t] = prev
    flip = rng.random(n) < 0.5  # half the pieces read from the other strand: C and G stay balanced
    codes[flip] = 3 - codes[flip, ::-1]
    return np.frombuffer(b"ACGT", dtype=np.uint8)[codes.reshape(-1)[:length]].copy()


def _isochore_gc(rng: np.random.Generator, length: int, chunk: int = 1000) -> np.ndarray:
    """GC level per 1 kbp piece, interpolated between isochore levels drawn every 100 kbp."""
    anchors = np.arange(0, length + 100_000, 100_000)
    levels = rng.uniform(0.36, 0.49, size=len(anchors))
    return np.interp(np.arange(0, length, chunk), anchors, levels)


def _mutate(rng: np.random.Generator, seq: np.ndarray, rate: float) -> np.ndarray:
    out = seq.copy()
    hit = np.flatnonzero(rng.random(len(seq)) < rate)
    out[hit] = np.frombuffer(b"ACGT", dtype=np.uint8)[rng.integers(0, 4, size=len(hit))]
    return out


def _revcomp(seq: np.ndarray) -> np.ndarray:
    return np.frombuffer(reverse_complement(seq.tobytes().decode("ascii")).encode("ascii"),
                         dtype=np.uint8).copy()


def repeat_consensus(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Consensus sequences of the interspersed repeat families."""
    return {name: markov_sequence(rng, length, gc, cpg=0.15) for name, length, gc, _, _ in REPEAT_FAMILIES}


def insert_repeats(rng: np.random.Generator, seq: np.ndarray, consensus: dict[str, np.ndarray]) -> int:
    """Overwrite random places with mutated, possibly truncated copies in lower case; return count."""
    copies = 0
    per_100k = len(seq) / 100_000
    for name, length, _, rate, shortest in REPEAT_FAMILIES:
        for _ in range(rng.poisson(rate * per_100k)):
            size = int(rng.integers(shortest, length + 1))
            copy = _mutate(rng, consensus[name][length - size:], rng.uniform(0.04, 0.18))  # 5' truncated
            copy = copy if rng.random() < 0.5 else _revcomp(copy)
            pos = int(rng.integers(0, max(1, len(seq) - size)))
            seq[pos:pos + size] = copy[: len(seq) - pos] | 0x20
            copies += 1
    for _ in range(rng.poisson(12 * per_100k)):
        unit = SIMPLE_UNITS[rng.integers(len(SIMPLE_UNITS))]
        text = (unit * 40)[: int(rng.integers(20, 61))].lower().encode("ascii")
        pos = int(rng.integers(0, len(seq) - len(text)))
        seq[pos:pos + len(text)] = np.frombuffer(text, dtype=np.uint8)
        copies += 1
    return copies


def _gap_plan(lengths: dict[str, int], scale: float) -> list[tuple[str, int, int]]:
    """N gaps: one at the start of chr1, a few inside other contigs."""
    def size(bp):
        return max(300, round(bp * scale))
    plan = [("chr1", 0, size(10_000)), ("chr1", int(lengths["chr1"] * 0.55), size(2_000)),
            ("chr2", int(lengths["chr2"] * 0.4), size(5_000)), ("chr7", int(lengths["chr7"] * 0.3), size(1_500)),
            ("chr9", int(lengths["chr9"] * 0.7), 300), ("chrX", int(lengths["chrX"] * 0.6), size(3_000))]
    return [(c, s, s + n) for c, s, n in plan]


def promoter_sequence(rng: np.random.Generator) -> np.ndarray:
    """A 1 kbp CpG island read 5'->3' on the promoter's strand; the TSS is index CGI_HALF."""
    seq = markov_sequence(rng, 2 * CGI_HALF, 0.64, cpg=0.7)
    for motif, offset in ((TATA_BOX, TATA_OFFSET), (INR, INR_OFFSET)):
        seq[CGI_HALF + offset:CGI_HALF + offset + len(motif)] = np.frombuffer(motif.encode(), dtype=np.uint8)
    return seq


def place_promoters(rng: np.random.Generator, seqs: dict[str, np.ndarray], occupied: dict[str, np.ndarray],
                    total: int) -> list[tuple[str, int, str]]:
    """Write `total` promoters (split by contig length, chrM excluded); return (contig, tss, strand)."""
    contigs = [c for c in seqs if c != "chrM"]
    lengths = np.array([len(seqs[c]) for c in contigs], dtype=float)
    per_contig = np.maximum(1, np.round(total * lengths / lengths.sum())).astype(int)
    placed = []
    for contig, n in zip(contigs, per_contig):
        tss_list: list[int] = []
        for _ in range(n * 200):
            if len(tss_list) == n:
                break
            tss = int(rng.integers(3000, len(seqs[contig]) - 3000))
            lo, hi = tss - CGI_HALF, tss + CGI_HALF + 1
            if occupied[contig][lo - 100:hi + 100].any() or any(abs(tss - t) < 3000 for t in tss_list):
                continue
            strand = "+" if rng.random() < 0.5 else "-"
            oriented = promoter_sequence(rng)
            if strand == "+":
                seqs[contig][lo:lo + 2 * CGI_HALF] = oriented
            else:  # oriented index i sits at tss + CGI_HALF - i
                seqs[contig][tss - CGI_HALF + 1:tss + CGI_HALF + 1] = _revcomp(oriented)
            occupied[contig][lo:hi] = True
            tss_list.append(tss)
            placed.append((contig, tss, strand))
    order = {c: i for i, c in enumerate(seqs)}
    return sorted(placed, key=lambda p: (order[p[0]], p[1]))


def sprinkle_iupac(rng: np.random.Generator, seqs: dict[str, np.ndarray], occupied: dict[str, np.ndarray]) -> int:
    """Replace ~1 base per 20 kbp (outside promoters, motifs and gaps) with an IUPAC ambiguity code."""
    count = 0
    for contig, seq in seqs.items():
        for pos in rng.integers(0, len(seq), size=max(1, len(seq) // 20_000)):
            if not occupied[contig][pos]:
                seq[pos] = ord(IUPAC_CODES[rng.integers(len(IUPAC_CODES))])
                count += 1
    return count


def _write_fasta(out_dir: Path, seqs: dict[str, np.ndarray]) -> tuple[Path, Path]:
    """genome.fa (+ .fai) and genome.fa.gz (+ .fai, .gzi)."""
    fasta, fasta_gz = out_dir / "genome.fa", out_dir / "genome.fa.gz"
    fai_lines, offset = [], 0
    with atomic_write(fasta, "wb") as handle:
        for name, seq in seqs.items():
            header = f">{name}\n".encode()
            raw = seq.tobytes()
            body = b"".join(raw[i:i + FASTA_WIDTH] + b"\n" for i in range(0, len(raw), FASTA_WIDTH))
            handle.write(header + body)
            fai_lines.append(f"{name}\t{len(raw)}\t{offset + len(header)}\t{FASTA_WIDTH}\t{FASTA_WIDTH + 1}\n")
            offset += len(header) + len(body)
    with atomic_path(fasta_gz) as tmp:
        pysam.tabix_compress(str(fasta), str(tmp), force=True)
        pysam.faidx(str(tmp))  # writes tmp.fai and tmp.gzi next to it
        os.remove(f"{tmp}.fai")
        os.replace(f"{tmp}.gzi", f"{fasta_gz}.gzi")
    for fai in (Path(f"{fasta}.fai"), Path(f"{fasta_gz}.fai")):  # written last: indexes newer than data
        with atomic_write(fai) as handle:
            handle.writelines(fai_lines)
    return fasta, fasta_gz


def _write_bed(path: Path, rows: list[tuple]) -> None:
    with atomic_write(path) as handle:
        handle.writelines("\t".join(str(x) for x in row) + "\n" for row in rows)


OTHER_ONLY_CONTIG = "chrUn_sim1"


@dataclass
class _Chain:
    """One UCSC chain: other-build (t) interval onto this genome (q), blocks as (t, q, size)."""

    t_name: str
    q_name: str
    q_size: int
    q_strand: str
    blocks: list[tuple[int, int, int]]

    def lift_back(self, pos: int) -> int | None:
        """Other-build position of this genome's base `pos`, or None outside the blocks."""
        q = pos if self.q_strand == "+" else self.q_size - 1 - pos
        for t0, q0, size in self.blocks:
            if q0 <= q < q0 + size:
                return t0 + q - q0
        return None

    def text(self, t_size: int, chain_id: int) -> str:
        (t_start, q_start, _), (t_last, q_last, last) = self.blocks[0], self.blocks[-1]
        score = sum(b[2] for b in self.blocks)
        lines = [f"chain {score} {self.t_name} {t_size} + {t_start} {t_last + last} {self.q_name} "
                 f"{self.q_size} {self.q_strand} {q_start} {q_last + last} {chain_id}"]
        for (t0, q0, size), (t1, q1, _) in zip(self.blocks, self.blocks[1:]):
            lines.append(f"{size}\t{t1 - t0 - size}\t{q1 - q0 - size}")
        return "\n".join(lines + [str(last)]) + "\n\n"


def _segment_blocks(rng: np.random.Generator, q_lo: int, q_hi: int, t_start: int, avoid: np.ndarray,
                    n_gaps: int = 4) -> list[tuple[int, int, int]]:
    """Aligned blocks covering [q_lo, q_hi) (q-strand coordinates) with gaps that miss `avoid`."""
    cuts: list[tuple[int, int]] = []
    for _ in range(200):
        if len(cuts) == n_gaps:
            break
        g = int(rng.integers(q_lo + 500, q_hi - 900))
        dq = int(rng.integers(0, 300)) if rng.random() < 0.6 else 0
        if np.any((avoid >= g - 50) & (avoid < g + dq + 50)) or any(abs(g - c) < 700 for c, _ in cuts):
            continue
        cuts.append((g, dq))
    blocks, q, t = [], q_lo, t_start
    for g, dq in sorted(cuts):
        blocks.append((t, q, g - q))
        t += g - q + int(rng.integers(100, 1500))  # other-build-only sequence: a place to be unmapped
        q = g + dq
    blocks.append((t, q, q_hi - q))
    return blocks


def write_other_build(rng: np.random.Generator, out_dir: Path, lengths: dict[str, int],
                      promoters: list[tuple[str, int, str]], names: list[str], scale: float) -> dict:
    """Write other_to_sim.chain and promoters.other.bed; return other-build contigs and unmapped names."""
    def tss_of(contig):
        return np.array([t for c, t, _ in promoters if c == contig], dtype=np.int64)

    shift = max(300, round(5000 * scale))
    plan = {  # contig -> [(q_from, q_to, strand)] in the other build's order, lead
        "chr1": ([(_gap_plan(lengths, scale)[0][2], lengths["chr1"], "+")], shift),  # after the leading gap
        "chr2": ([(lengths["chr2"] // 2, lengths["chr2"], "+"), (0, lengths["chr2"] // 2, "+")], 0),
        "chr7": ([(0, lengths["chr7"], "-")], 200),
        "chr8": ([(0, lengths["chr8"], "+")], shift // 2),
        "chr9": ([(max(200, shift // 5), lengths["chr9"], "+")], 0),
        "chrX": ([(0, lengths["chrX"], "+")], 700),
    }
    chains, t_sizes, t_only = [], {}, []
    for contig, (segments, lead) in plan.items():
        size, tss, cursor = lengths[contig], tss_of(contig), lead
        if lead:
            t_only.append((contig, 0, lead))
        for q_from, q_to, strand in segments:
            lo, hi = (q_from, q_to) if strand == "+" else (size - q_to, size - q_from)
            avoid = tss if strand == "+" else size - 1 - tss
            blocks = _segment_blocks(rng, lo, hi, cursor, avoid)
            t_only += [(contig, t0 + s, t1) for (t0, _, s), (t1, _, _) in zip(blocks, blocks[1:])]
            chains.append(_Chain(contig, contig, size, strand, blocks))
            cursor = blocks[-1][0] + blocks[-1][2] + max(200, round(1000 * scale))
            t_only.append((contig, cursor - max(200, round(1000 * scale)), cursor))
        t_sizes[contig] = cursor + 500
    chains.append(_Chain("chrM", "chrM", lengths["chrM"], "+", [(0, 0, lengths["chrM"])]))
    t_sizes["chrM"] = lengths["chrM"]
    t_sizes[OTHER_ONLY_CONTIG] = max(5000, round(20_000 * scale))
    with atomic_write(out_dir / "other_to_sim.chain") as handle:
        handle.writelines(ch.text(t_sizes[ch.t_name], i + 1) for i, ch in enumerate(chains))

    records = []
    for (contig, tss, strand), name in zip(promoters, names):
        hits = [(ch, ch.lift_back(tss)) for ch in chains if ch.q_name == contig]
        (chain, pos), = [(ch, p) for ch, p in hits if p is not None]
        flipped = {"+": "-", "-": "+"}[strand] if chain.q_strand == "-" else strand
        records.append((chain.t_name, pos, pos + 1, name, 0, flipped))
    unmapped = []
    picks = rng.choice(len(t_only), size=min(4, len(t_only)), replace=False)
    for k, i in enumerate(sorted(picks)):
        contig, start, end = t_only[i]
        pos = (start + end) // 2
        unmapped.append(f"SIMU{k + 1:02d}_1")
        records.append((contig, pos, pos + 1, unmapped[-1], 0, "+" if rng.random() < 0.5 else "-"))
    for k in range(2):
        pos = int(rng.integers(1000, t_sizes[OTHER_ONLY_CONTIG] - 1000))
        unmapped.append(f"SIMU{k + 5:02d}_1")
        records.append((OTHER_ONLY_CONTIG, pos, pos + 1, unmapped[-1], 0, "-" if k else "+"))
    order = {c: i for i, c in enumerate(t_sizes)}
    _write_bed(out_dir / "promoters.other.bed", sorted(records, key=lambda r: (order[r[0]], r[1])))
    return {"other_contigs": t_sizes, "unmapped": unmapped}


def _write_chromatin(rng: np.random.Generator, out_dir: Path, seqs: dict[str, np.ndarray],
                     promoters: list[tuple[str, int, str]], features: list[signal.Feature]) -> tuple[int, np.ndarray]:
    """Bins, feature table, label matrix and one narrowPeak per feature; return (n_bins, positives)."""
    bins, blocks = [], []
    for contig, seq in seqs.items():
        tss = np.array([t for c, t, _ in promoters if c == contig], dtype=np.int64)
        keep = signal.kept_bins(seq)
        blocks.append(signal.contig_labels(seq, tss, features)[keep])
        bins += [(contig, int(b) * signal.BIN_SIZE, (int(b) + 1) * signal.BIN_SIZE) for b in np.flatnonzero(keep)]
    labels = np.concatenate(blocks).astype(np.uint8)
    _write_bed(out_dir / "chromatin_bins.bed", bins)
    with atomic_write(out_dir / "chromatin_features.tsv") as handle:
        handle.write("index\tname\tgroup\trule\n")
        handle.writelines(f"{i}\t{f.name}\t{f.group}\t{f.rule()}\n" for i, f in enumerate(features))
    with atomic_path(out_dir / "chromatin_labels.npy") as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, labels)
    lengths = {c: len(s) for c, s in seqs.items()}
    with atomic_path(out_dir / "peaks") as tmp:
        tmp.mkdir()
        for j, f in enumerate(features):
            lines = signal.peaks_from_labels(rng, bins, labels[:, j], lengths, f.name)
            (tmp / f"{f.name}.narrowPeak").write_text("".join(lines))
    return len(bins), labels.sum(axis=0)


def simulate(out_dir: str | os.PathLike, seed: int = 0, scale: float = 1.0) -> SimulatedGenome:
    """Write the simulated genome and its annotations into `out_dir`; same seed and scale, same bytes."""
    if not 0.05 <= scale <= 20:
        raise InputError(f"scale must be between 0.05 and 20, got {scale}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lengths = {c: round(n * scale) for c, n in CONTIG_LENGTHS.items()} | {"chrM": CHRM_LENGTH}

    rng = _stage_rng(seed, 0)
    seqs = {c: markov_sequence(rng, n, _isochore_gc(rng, n)) for c, n in lengths.items()}
    consensus = repeat_consensus(_stage_rng(seed, 1))
    rng = _stage_rng(seed, 2)
    n_repeats = sum(insert_repeats(rng, seq, consensus) for c, seq in seqs.items() if c != "chrM")
    occupied = {c: np.zeros(n, dtype=bool) for c, n in lengths.items()}
    gaps = _gap_plan(lengths, scale)
    for contig, start, end in gaps:
        seqs[contig][start:end] = ord("N")
        occupied[contig][start:end] = True
    occupied["chrM"][:] = True  # the mitochondrion gets no promoters and no planted signal
    n_promoters = max(6, round(PROMOTERS_PER_MBP * sum(CONTIG_LENGTHS.values()) * scale / 1e6))
    promoters = place_promoters(_stage_rng(seed, 3), seqs, occupied, n_promoters)
    motifs = signal.motif_library(_stage_rng(seed, 4), [*(c.tobytes().decode() for c in consensus.values()),
                                                        TATA_BOX, INR])
    planted = signal.plant_signal(_stage_rng(seed, 5), {c: s for c, s in seqs.items() if c != "chrM"},
                                  occupied, motifs)
    n_iupac = sprinkle_iupac(_stage_rng(seed, 6), seqs, occupied)

    fasta, fasta_gz = _write_fasta(out_dir, seqs)
    names = [f"SIM{i + 1:04d}_1" for i in range(len(promoters))]
    _write_bed(out_dir / "promoters.bed", [(c, t, t + 1, n, 0, s) for (c, t, s), n in zip(promoters, names)])
    liftover = write_other_build(_stage_rng(seed, 7), out_dir, lengths, promoters, names, scale)
    features = signal.feature_catalogue(motifs)
    n_bins, positives = _write_chromatin(_stage_rng(seed, 8), out_dir, seqs, promoters, features)
    n_variants = signal.write_variants(_stage_rng(seed, 9), out_dir / "variants.vcf.gz", seqs, features,
                                      max(30, round(200 * scale)))

    summary = {
        "seed": seed, "scale": scale, "contigs": lengths,
        "counts": {"promoters": len(promoters), "unmapped_promoters": len(liftover["unmapped"]),
                   "bins": n_bins, "features": len(features), "variants": n_variants,
                   "repeat_copies": n_repeats, "gaps": len(gaps), "iupac_codes": n_iupac,
                   "motif_copies": planted,
                   "positives": {f.name: int(p) for f, p in zip(features, positives)}},
        "promoter_boxes": {"tata": TATA_BOX, "tata_offset": TATA_OFFSET, "inr": INR, "inr_offset": INR_OFFSET,
                           "cpg_island_half_width": CGI_HALF},
        "motifs": {f.name: list(f.motifs) for f in features if f.motifs},
        "long_range_features": [f.name for f in features if f.long_range],
        "gaps": [list(g) for g in gaps],
        "other_build": liftover["other_contigs"],
        "unmapped_promoters": liftover["unmapped"],
    }
    with atomic_write(out_dir / "simulation.json") as handle:
        json.dump(summary, handle, indent=2)
        handle.write("\n")
    return SimulatedGenome(
        out_dir=out_dir, seed=seed, scale=scale, contigs=lengths, fasta=fasta, fasta_gz=fasta_gz,
        promoters_bed=out_dir / "promoters.bed", promoters_other_bed=out_dir / "promoters.other.bed",
        chain=out_dir / "other_to_sim.chain", chromatin_bins=out_dir / "chromatin_bins.bed",
        chromatin_features=out_dir / "chromatin_features.tsv", chromatin_labels=out_dir / "chromatin_labels.npy",
        peaks_dir=out_dir / "peaks", variants_vcf=out_dir / "variants.vcf.gz", summary=out_dir / "simulation.json",
        n_promoters=len(promoters), n_unmapped_promoters=len(liftover["unmapped"]), n_bins=n_bins,
        feature_names=[f.name for f in features], n_variants=n_variants)
