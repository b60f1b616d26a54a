import json
from pathlib import Path

import numpy as np
import pysam
import pytest
import scipy.sparse as sp
from pyliftover import LiftOver
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from genomics_bigbird.errors import InputError
from genomics_bigbird.genome import ReferenceGenome, reverse_complement
from genomics_bigbird.genome.simulate import simulate
from genomics_bigbird.manifest import sha256_file
from pipelines import cli

EXPECTED_FILES = {
    "genome.fa", "genome.fa.fai", "genome.fa.gz", "genome.fa.gz.fai", "genome.fa.gz.gzi", "promoters.bed",
    "promoters.other.bed", "other_to_sim.chain", "chromatin_bins.bed", "chromatin_features.tsv",
    "chromatin_labels.npy", "variants.vcf.gz", "variants.vcf.gz.tbi", "simulation.json"}


def digests(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): sha256_file(p) for p in sorted(directory.rglob("*")) if p.is_file()}


def read_tsv(path: Path) -> list[list[str]]:
    return [line.rstrip("\n").split("\t") for line in path.read_text().splitlines()]


def summary(sim) -> dict:
    return json.loads(sim.summary.read_text())


def test_same_seed_same_bytes_other_seed_other_genome(tmp_path):
    first, second, other = (simulate(tmp_path / name, seed=seed, scale=0.05)
                            for name, seed in (("a", 7), ("b", 7), ("c", 8)))
    a, b, c = digests(first.out_dir), digests(second.out_dir), digests(other.out_dir)
    assert EXPECTED_FILES <= set(a) and len([f for f in a if f.startswith("peaks/")]) == 40
    assert a == b
    assert a["genome.fa"] != c["genome.fa"] and a["variants.vcf.gz"] != c["variants.vcf.gz"]


def test_contigs_composition_and_both_fastas(sim_genome):
    plain, bgzip = ReferenceGenome(sim_genome.fasta), ReferenceGenome(sim_genome.fasta_gz)
    assert plain.contigs == bgzip.contigs == {
        "chr1": 140_000, "chr2": 100_000, "chr7": 80_000, "chr8": 60_000, "chr9": 60_000, "chrX": 40_000,
        "chrM": 16_569}
    raw = pysam.FastaFile(str(sim_genome.fasta))
    text = "".join(raw.fetch(c) for c in raw.references)
    assert all(plain.fetch(c, 0, n) == bgzip.fetch(c, 0, n) for c, n in plain.contigs.items())
    assert all(len(line) <= 60 for line in sim_genome.fasta.read_text().splitlines())
    upper = text.upper()
    counts = {b: upper.count(b) for b in "ACGT"}
    acgt = sum(counts.values())
    assert 0.55 <= (counts["A"] + counts["T"]) / acgt <= 0.63  # AT-rich like a mammalian genome
    assert abs(counts["C"] - counts["G"]) / acgt < 0.01  # strand symmetric
    # CpG depleted outside promoters' CpG islands (~1/4 of expectation), islands not depleted
    promoters = read_tsv(sim_genome.promoters_bed)
    islands = [plain.fetch(c, int(s) - 400, int(s) + 400) for c, s, *_ in promoters]
    background = upper
    for island in islands:
        background = background.replace(island, "N")

    def cpg_obs_exp(seq):
        return seq.count("CG") * len(seq) / (seq.count("C") * seq.count("G"))
    assert 0.15 < cpg_obs_exp(background) < 0.35
    assert np.mean([cpg_obs_exp(s) for s in islands]) > 0.55
    assert np.mean([(s.count("G") + s.count("C")) / len(s) for s in islands]) > 0.58
    assert 0.05 < sum(ch.islower() for ch in text) / len(text) < 0.3  # soft-masked repeats
    assert raw.fetch("chr1", 0, 1000) == "N" * 1000  # a gap at a contig start
    assert set(text) - set("ACGTNacgtn")  # IUPAC codes are present ...
    assert set(plain.fetch("chr1", 0, 140_000)) <= set("ACGTN")  # ... and read back as N


def test_every_promoter_has_its_boxes_on_its_strand(sim_genome):
    genome = ReferenceGenome(sim_genome.fasta)
    boxes = summary(sim_genome)["promoter_boxes"]
    records = read_tsv(sim_genome.promoters_bed)
    assert len(records) == sim_genome.n_promoters == 48
    assert {r[5] for r in records} == {"+", "-"} and {r[0] for r in records} == set(sim_genome.contigs) - {"chrM"}
    for contig, start, end, name, _, strand in records:
        tss = int(start) if strand == "+" else int(end) - 1
        window = genome.fetch(contig, tss - 50, tss + 51, strand)  # TSS at index 50 on both strands
        tata = 50 + boxes["tata_offset"]
        assert window[tata:tata + len(boxes["tata"])] == boxes["tata"] == "TATAAAAG", name
        assert window[50 + boxes["inr_offset"]:][:len(boxes["inr"])] == boxes["inr"] and window[50] == "A", name


def is_left_aligned(ref: str, alt: str) -> bool:
    """An anchored indel that cannot move one base left (its last inserted/deleted base differs from the anchor)."""
    while len(ref) > 1 and len(alt) > 1 and ref[-1] == alt[-1]:
        ref, alt = ref[:-1], alt[:-1]
    longer = ref if len(ref) > len(alt) else alt
    return ref[0] == alt[0] and min(len(ref), len(alt)) == 1 and longer[-1] != ref[0]


def test_variants_match_the_reference_and_are_normalized(sim_genome):
    genome = ReferenceGenome(sim_genome.fasta)
    motifs = summary(sim_genome)["motifs"]
    vcf = pysam.VariantFile(str(sim_genome.variants_vcf))
    assert list(vcf.header.contigs) == list(sim_genome.contigs)
    records = list(vcf)
    assert len(records) == sim_genome.n_variants == 40
    order = list(sim_genome.contigs)
    keys = [(order.index(r.chrom), r.pos) for r in records]
    assert keys == sorted(keys)
    kinds = set()
    for r in records:
        assert genome.fetch(r.chrom, r.pos - 1, r.pos - 1 + len(r.ref)) == r.ref, (r.chrom, r.pos)
        for alt in r.alts:
            if len(alt) != len(r.ref):
                assert is_left_aligned(r.ref, alt), (r.chrom, r.pos, r.ref, alt)
            kinds.add("SNV" if len(alt) == len(r.ref) else "DEL" if len(alt) < len(r.ref) else "INS")
        if "MOTIF" in r.info:
            region = genome.fetch(r.chrom, max(0, r.pos - 16), r.pos + 16 + len(r.ref))
            assert any(m in region or reverse_complement(m) in region for m in motifs[r.info["MOTIF"]])
    assert kinds == {"SNV", "DEL", "INS"}
    assert sum(len(r.alts) > 1 for r in records) >= 2
    assert 10 <= sum("MOTIF" in r.info for r in records) <= 30
    assert len(list(vcf.fetch("chr2", 0, 100_000))) == sum(r.chrom == "chr2" for r in records)  # tabix works


def test_peaks_reproduce_labels_by_the_half_bin_rule(sim_genome):
    bins = read_tsv(sim_genome.chromatin_bins)
    labels = np.load(sim_genome.chromatin_labels)
    features = read_tsv(sim_genome.chromatin_features)
    assert features[0] == ["index", "name", "group", "rule"]
    assert [f[1] for f in features[1:]] == sim_genome.feature_names
    assert labels.dtype == np.uint8 and labels.shape == (len(bins), 40) == (sim_genome.n_bins, 40)
    assert all(int(e) - int(s) == 200 for _, s, e in bins)
    for j, name in enumerate(sim_genome.feature_names):
        covered = {}
        for chrom, start, end, *rest in read_tsv(sim_genome.peaks_dir / f"{name}.narrowPeak"):
            assert len(rest) == 7
            cover = covered.setdefault(chrom, np.zeros(sim_genome.contigs[chrom], dtype=bool))
            cover[int(start):int(end)] = True
        from_peaks = [int(covered.get(c, np.zeros(int(e), bool))[int(s):int(e)].sum() >= 100) for c, s, e in bins]
        assert from_peaks == labels[:, j].tolist(), name


def test_bins_skip_gaps_and_labels_follow_the_sequence(sim_genome):
    genome = ReferenceGenome(sim_genome.fasta)
    bins = read_tsv(sim_genome.chromatin_bins)
    labels = np.load(sim_genome.chromatin_labels)
    assert bins[0][:2] == ["chr1", "2000"]  # the 2 kbp gap at chr1's start has no bins
    motifs = summary(sim_genome)["motifs"]
    tf01, tf13 = sim_genome.feature_names.index("TF01"), sim_genome.feature_names.index("TF13")
    (m01,), (m13,) = motifs["TF01"], motifs["TF13"]
    for row, (chrom, start, end) in enumerate(bins):
        seq = genome.fetch(chrom, int(start), int(end))
        assert labels[row, tf01] == (m01 in seq or reverse_complement(m01) in seq)
        assert labels[row, tf13] == (m13 in seq)  # strand-specific


def test_label_prevalence_within_bounds(sim_genome):
    prevalence = np.load(sim_genome.chromatin_labels).mean(axis=0)
    assert prevalence.min() >= 0.015 and prevalence.max() <= 0.16, prevalence
    counts = summary(sim_genome)["counts"]["positives"]
    assert [counts[n] for n in sim_genome.feature_names] == np.load(sim_genome.chromatin_labels).sum(0).tolist()


def test_liftover_round_trip_through_the_chain(sim_genome):
    lift = LiftOver(str(sim_genome.chain))
    ours = {r[3]: (r[0], int(r[1]), r[5]) for r in read_tsv(sim_genome.promoters_bed)}
    other = read_tsv(sim_genome.promoters_other_bed)
    unmapped = set(summary(sim_genome)["unmapped_promoters"])
    assert len(unmapped) == sim_genome.n_unmapped_promoters == 6
    assert {r[3] for r in other} == set(ours) | unmapped
    flipped = 0
    for chrom, start, end, name, _, strand in other:
        hits = lift.convert_coordinate(chrom, int(start), strand)
        if name in unmapped:
            assert not hits, name  # in a chain gap (empty) or on a contig absent from the chain (None)
            continue
        assert [(c, p, s) for c, p, s, _ in hits] == [ours[name]], name
        flipped += strand != ours[name][2]
        if ours[name][0] != "chr7":
            assert strand == ours[name][2]
    assert flipped == sum(c == "chr7" for c, _, _ in ours.values()) > 0  # the chr7 chain is on `-`
    assert lift.convert_coordinate("chrUn_sim1", 100) is None
    assert any(int(r[1]) != ours[r[3]][1] for r in other if r[3] in ours)  # coordinates really differ


def kmer_counts(genome: ReferenceGenome, bins: list[list[str]], k: int) -> sp.csr_matrix:
    """Counts of each k-mer in the central 400 bp around each bin (k-mers with N skipped)."""
    code = np.full(256, -1, dtype=np.int64)
    code[list(b"ACGT")] = range(4)
    rows, cols = [], []
    for row, (chrom, start, end) in enumerate(bins):
        seq = code[np.frombuffer(genome.fetch_padded(chrom, int(start) - 100, int(end) + 100).encode(), np.uint8)]
        n = len(seq) - k + 1
        ids, bad = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
        for j in range(k):
            ids, bad = ids * 4 + np.maximum(seq[j:j + n], 0), bad | (seq[j:j + n] < 0)
        rows.append(np.full(int((~bad).sum()), row))
        cols.append(ids[~bad])
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(bins), 4 ** k))


def test_labels_are_learnable_from_local_kmers_on_held_out_contigs(sim_genome):
    genome = ReferenceGenome(sim_genome.fasta)
    bins = read_tsv(sim_genome.chromatin_bins)
    labels = np.load(sim_genome.chromatin_labels)
    long_range = set(summary(sim_genome)["long_range_features"])
    assert len(long_range) == 4
    x = kmer_counts(genome, bins, k=6)
    test = np.array([b[0] in ("chr8", "chr9") for b in bins])
    aurocs = []
    for j, name in enumerate(sim_genome.feature_names):
        if name in long_range:
            continue
        model = LogisticRegression(C=0.1, solver="liblinear", max_iter=1000).fit(x[~test], labels[~test, j])
        aurocs.append(roc_auc_score(labels[test, j], model.decision_function(x[test])))
    assert len(aurocs) == 36
    assert np.mean(aurocs) >= 0.9, aurocs
    assert min(aurocs) >= 0.75, aurocs


def test_gbb_simulate_writes_the_library_files_and_a_manifest(tmp_path):
    assert cli.main(["simulate", "--out", str(tmp_path / "cli"), "--seed", "3", "--scale", "0.05", "--quiet"]) == 0
    simulate(tmp_path / "lib", seed=3, scale=0.05)
    written = digests(tmp_path / "cli")
    assert {"manifest.json", "simulate.log"} <= set(written)
    assert {f: d for f, d in written.items() if f not in ("manifest.json", "simulate.log")} == digests(tmp_path / "lib")
    manifest = json.loads((tmp_path / "cli" / "manifest.json").read_text())
    assert manifest["seed"] == 3 and manifest["config"] == {"seed": 3, "scale": 0.05}
    assert manifest["outputs"]["n_promoters"] == 13


def test_bad_scale_is_a_one_line_input_error(tmp_path, capsys):
    with pytest.raises(InputError, match="scale"):
        simulate(tmp_path, scale=0.0)
    assert cli.main(["simulate", "--out", str(tmp_path / "x"), "--scale", "-1", "--quiet"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
