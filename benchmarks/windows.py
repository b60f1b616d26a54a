"""Window extraction speed: `extract_windows` on plain and bgzip FASTA vs raw `pysam.FastaFile.fetch`.

Generates a random genome of a few Mbp (soft-masked stretches and Ns included), draws random
8 kbp windows on both strands, and prints JSON. The baseline is the bare htslib fetch of the same
intervals in the same run (no normalization, no reverse complement, no padding), so the ratio is
our overhead. Rates are medians over `--repeats` passes; the process pins itself to one core.

    python benchmarks/windows.py [--n 20000 --width 8000 --genome-mbp 4] [--out windows.json]
    python benchmarks/windows.py --quick          # a small genome and 500 windows: checks the script
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pysam

if __package__ in (None, ""):   # run as a file: make the repository's `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.harness import environment, finish, median_rate, pin_one_core  # noqa: E402
from genomics_bigbird.genome.intervals import BedRecord  # noqa: E402
from genomics_bigbird.genome.reference import ReferenceGenome  # noqa: E402
from genomics_bigbird.genome.windows import extract_windows  # noqa: E402
from genomics_bigbird.manifest import software_versions  # noqa: E402


def write_genome(path: Path, n_contigs: int, contig_bp: int, rng: np.random.Generator) -> dict[str, int]:
    """Write a random FASTA (60 bp lines) with ~10% soft-masked bases and a run of Ns per contig."""
    bases = np.frombuffer(b"ACGTacgtN", dtype=np.uint8)
    contigs = {}
    with open(path, "w") as handle:
        for i in range(n_contigs):
            codes = rng.choice(9, size=contig_bp, p=[0.225] * 4 + [0.025] * 4 + [0.0])
            codes[contig_bp // 2: contig_bp // 2 + 1000] = 8
            seq = bases[codes].tobytes().decode()
            name = f"chr{i + 1}"
            handle.write(f">{name}\n")
            handle.writelines(seq[j:j + 60] + "\n" for j in range(0, contig_bp, 60))
            contigs[name] = contig_bp
    return contigs


def random_records(contigs: dict[str, int], n: int, rng: np.random.Generator) -> list[BedRecord]:
    """Random 1-bp records anywhere on the contigs (some windows therefore run past the ends)."""
    names = list(contigs)
    chrom = rng.integers(0, len(names), size=n)
    strand = rng.integers(0, 2, size=n)
    records = []
    for c, s in zip(chrom, strand):
        pos = int(rng.integers(0, contigs[names[c]]))
        records.append(BedRecord(names[c], pos, pos + 1, strand="+-"[s]))
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="0.2 Mbp genome, 500 windows: checks the script")
    parser.add_argument("--n", type=int, help="windows per measurement (default 20000; quick: 500)")
    parser.add_argument("--width", type=int, default=8000)
    parser.add_argument("--genome-mbp", type=float, help="genome size (default 4; quick: 0.2)")
    parser.add_argument("--contigs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    args.n = args.n or (500 if args.quick else 20000)
    args.genome_mbp = args.genome_mbp or (0.2 if args.quick else 4.0)
    core = pin_one_core()
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "genome.fa"
        contigs = write_genome(plain, args.contigs, int(args.genome_mbp * 1e6 / args.contigs), rng)
        bgzip = Path(tmp) / "genome.fa.gz"
        pysam.tabix_compress(str(plain), str(bgzip))
        records = random_records(contigs, args.n, rng)
        half = args.width // 2
        # The baseline fetches the in-contig part of the same windows (htslib does no padding).
        spans = [(r.chrom, max(0, r.start - half), min(contigs[r.chrom], r.start - half + args.width))
                 for r in records]
        figures = {}
        for label, path in (("plain", plain), ("bgzip", bgzip)):
            genome = ReferenceGenome(path)
            raw = pysam.FastaFile(str(path))
            figures[f"extract_windows_{label}_per_s"] = round(median_rate(
                lambda: sum(1 for _ in extract_windows(genome, records, width=args.width)), args.n, args.repeats))
            figures[f"pysam_fetch_{label}_per_s"] = round(median_rate(
                lambda: [raw.fetch(c, s, e) for c, s, e in spans], args.n, args.repeats))
            figures[f"overhead_{label}"] = round(
                figures[f"pysam_fetch_{label}_per_s"] / figures[f"extract_windows_{label}_per_s"], 2)
            raw.close()
            genome.close()
        n_padded = sum(w.n_padded for w in extract_windows(ReferenceGenome(plain), records, width=args.width))
    report = {
        "benchmark": "windows",
        **environment(),
        "pinned_core": core,
        "versions": software_versions(),
        "config": {"n_windows": args.n, "width": args.width, "genome_bp": sum(contigs.values()),
                   "contigs": args.contigs, "repeats": args.repeats, "rate": "median", "seed": args.seed,
                   "strands": "random +/-", "padded_bases": n_padded, "quick": args.quick},
        "baseline": "pysam_fetch",
        "figures": figures,
        "bgzip_slowdown": round(figures["extract_windows_plain_per_s"] / figures["extract_windows_bgzip_per_s"], 1),
    }
    reasons = [f"{name} is not a positive rate" for name, value in figures.items() if not value > 0]
    return finish(report, args.out, reasons)


if __name__ == "__main__":
    sys.exit(main())
