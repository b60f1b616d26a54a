"""Chromatin data sets: the 50%-of-a-bin peak rule, DeepSEA's split, feature tables, label matrices, windows."""
import numpy as np
import pytest

from genomics_bigbird.data.chromatin import (
    ChromatinSplit, parse_region, read_bins, read_feature_table, write_bin_windows)
from genomics_bigbird.data.label_matrix import LabelMatrix, read_label_matrix
from genomics_bigbird.data.peaks import covered_bases, merge_intervals, peak_labels, read_peaks_dir
from genomics_bigbird.data.labeled import LabeledWindows, LabeledWriter
from genomics_bigbird.errors import InputError
from genomics_bigbird.genome import ReferenceGenome
from genomics_bigbird.genome.intervals import BedRecord, read_bed


def bins(*starts, chrom="chr1", size=200):
    return [BedRecord(chrom, s, s + size) for s in starts]


def test_half_a_bin_in_a_peak_is_positive_and_less_is_not():
    # bin [1000, 1200): a peak covering 100 bp (50%) -> positive; 98 bp (49%) -> negative.
    grid = bins(1000, 1200, 1400, 1600)
    peaks = {"fifty": [BedRecord("chr1", 1100, 1250)],          # 100 of bin 0, 50 of bin 1
             "forty_nine": [BedRecord("chr1", 1102, 1200)],     # 98 of bin 0
             "split_peaks": [BedRecord("chr1", 1400, 1460), BedRecord("chr1", 1550, 1590)],  # 60 + 40 = 100
             "overlapping": [BedRecord("chr1", 1600, 1690), BedRecord("chr1", 1650, 1699)],  # union 99
             "other_chrom": [BedRecord("chr2", 1000, 1200)]}
    names = list(peaks)
    labels = peak_labels(grid, peaks, names)
    expected = np.array([
        # fifty, forty_nine, split_peaks, overlapping, other_chrom
        [1, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
        [0, 0, 1, 0, 0],
        [0, 0, 0, 0, 0],
    ])
    np.testing.assert_array_equal(labels, expected)


def test_covered_bases_by_sorted_sweep():
    starts, ends = merge_intervals(np.array([50, 10, 15, 90]), np.array([60, 20, 30, 95]))
    assert starts.tolist() == [10, 50, 90] and ends.tolist() == [30, 60, 95]
    covered = covered_bases(np.array([0, 20, 55, 100]), np.array([20, 55, 92, 120]),
                            np.array([50, 10, 15, 90]), np.array([60, 20, 30, 95]))
    assert covered.tolist() == [10, 10 + 5, 5 + 2, 0]


def test_deepsea_split_rule():
    split = ChromatinSplit()
    assert split.assign("chr8", 0, 200) == "test" and split.assign("9", 5000, 5200) == "test"
    # chr7:30,508,751-35,296,850 is 0-based [30508750, 35296850): bins are placed by their center.
    assert split.assign("chr7", 30508650, 30508850) == "valid"   # center 30508750
    assert split.assign("chr7", 30508649, 30508849) == "train"   # center 30508749
    assert split.assign("chr7", 35296749, 35296949) == "valid"   # center 35296849
    assert split.assign("chr7", 35296750, 35296950) == "train"   # center 35296850
    assert split.assign("chrX", 0, 200) is None and split.assign("MT", 0, 200) is None
    assert split.assign("chr1", 0, 200) == "train"
    assert parse_region("chr7:30,508,751-35,296,850") == ("chr7", 30508750, 35296850)
    with pytest.raises(InputError, match="must look like"):
        parse_region("chr7:30508751")


def test_feature_table_groups_and_errors(tmp_path):
    table = tmp_path / "features.tsv"
    table.write_text("index\tname\tgroup\n0\tK562_DNase\tDNase\n1\tCTCF\tTF\n2\tH3K27ac\thistone\n")
    features = read_feature_table(table)
    assert features["name"].tolist() == ["K562_DNase", "CTCF", "H3K27ac"]
    assert features["group"].tolist() == ["DHS", "TF", "HM"]
    table.write_text("name\tgroup\nCTCF\tTF\nPOL2\tenhancer\n")
    with pytest.raises(InputError, match="features.tsv:3: feature 'POL2' has group 'enhancer'"):
        read_feature_table(table)


def test_label_matrix_from_npy_and_tsv(tmp_path):
    labels = np.array([[0, 1], [1, 1], [0, 0]], dtype=np.uint8)
    np.save(tmp_path / "labels.npy", labels)
    np.testing.assert_array_equal(read_label_matrix(tmp_path / "labels.npy", 3, ["a", "b"]), labels)
    (tmp_path / "labels.tsv").write_text("a\tb\n0\t1\n1\t1\n0\t0\n")
    np.testing.assert_array_equal(read_label_matrix(tmp_path / "labels.tsv", 3, ["a", "b"]), labels)
    (tmp_path / "plain.tsv").write_text("0\t1\n1\t1\n0\t0\n")
    np.testing.assert_array_equal(read_label_matrix(tmp_path / "plain.tsv", 3, ["a", "b"]), labels)
    with pytest.raises(InputError, match=r"expected \(4 bins, 2 features\)"):
        read_label_matrix(tmp_path / "labels.npy", 4, ["a", "b"])


def test_bin_windows_are_centered_and_excluded_contigs_counted(tmp_path):
    fasta = tmp_path / "genome.fa"
    chr1 = "".join("ACGT"[i % 4] for i in range(1000))
    fasta.write_text(f">chr1\n{chr1}\n>chr8\n{'C' * 300}\n>chrX\n{'G' * 300}\n")
    (tmp_path / "bins.bed").write_text("chr1\t400\t600\nchr8\t0\t200\nchrX\t0\t200\nchr1\t900\t1000\n")
    records = read_bins(tmp_path / "bins.bed")
    labels = np.array([[1], [0], [1], [1]], dtype=np.uint8)
    genome = ReferenceGenome(fasta)
    with LabeledWriter(tmp_path / "c.h5", window=300, feature_names=["f"], feature_groups=["TF"],
                       task="chromatin") as writer:
        report = write_bin_windows(writer, genome, records, labels, ChromatinSplit(valid_region="chr1:901-1000"),
                                   300)
    data = LabeledWindows(tmp_path / "c.h5")
    assert report.rows == 3 and report.excluded == {"chrX": 1}
    assert data.sequence(0) == chr1[350:650]                 # center 500, [500 - 150, 500 + 150)
    assert data.sequence(1) == "N" * 50 + "C" * 250           # chr8 window [-50, 250)
    assert data.sequence(2) == chr1[800:1000] + "N" * 100     # center 950, runs 100 past the end
    assert report.padded_bases == 150 and report.padded_windows == 2
    assert data.split.tolist() == ["train", "test", "valid"]
    assert data.labels().ravel().tolist() == [1, 0, 1]


def test_missing_peak_file_names_the_feature(tmp_path):
    features = tmp_path / "features.tsv"
    features.write_text("name\tgroup\nCTCF\tTF\n")
    with pytest.raises(InputError, match="no peak file for feature 'CTCF'"):
        read_peaks_dir(tmp_path, read_feature_table(features))


def test_bin_windows_from_worker_processes_and_streamed_labels_are_the_same_file(tmp_path):
    rng = np.random.default_rng(2)
    contigs = {"chr1": 30_000, "chr8": 8_000, "chrX": 5_000}
    fasta = tmp_path / "genome.fa"
    fasta.write_text("".join(f">{n}\n{''.join(rng.choice(list('ACGT'), size))}\n" for n, size in contigs.items()))
    lines = [f"{chrom}\t{start}\t{start + 200}\n" for chrom in contigs
             for start in sorted(rng.choice(contigs[chrom] - 200, 100 if chrom == "chr1" else 30, replace=False))]
    (tmp_path / "bins.bed").write_text("".join(lines))
    names = [f"f{i}" for i in range(919)]
    labels = (rng.random((len(lines), 919)) < 0.1).astype(np.uint8)
    np.save(tmp_path / "labels.npy", labels)
    split = ChromatinSplit(valid_region="chr1:1-5000")
    genome = ReferenceGenome(fasta)
    reports, files = [], {}
    for workers, source in ((1, labels), (2, LabelMatrix(tmp_path / "labels.npy", len(lines), names, block_rows=50))):
        files[workers] = tmp_path / f"w{workers}.h5"
        with LabeledWriter(files[workers], window=2000, feature_names=names, feature_groups=["TF"] * 919,
                           task="chromatin", rows_per_block=64) as writer:  # blocks of 64 rows: three tasks
            reports.append(write_bin_windows(writer, genome, read_bed(tmp_path / "bins.bed"), source, split, 2000,
                                             workers=workers))
    assert reports[0] == reports[1] and reports[0].rows == 130 and reports[0].excluded == {"chrX": 30}
    one, two = LabeledWindows(files[1]), LabeledWindows(files[2])
    assert [two.sequence(i) for i in range(130)] == [one.sequence(i) for i in range(130)]
    assert two.records().equals(one.records()) and (one.split == "valid").sum() > 0
    np.testing.assert_array_equal(two.labels(), labels[:130])  # chrX's 30 bins (the last rows) left out
