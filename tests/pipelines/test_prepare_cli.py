"""`gbb promoter prepare` and `gbb chromatin prepare` end to end on the simulated genome, in-process."""
import json

import h5py
import numpy as np
import scipy.io
import yaml

from genomics_bigbird.data.labeled import LabeledWindows
from genomics_bigbird.genome.intervals import read_bed
from pipelines import cli


def run_gbb(*argv):
    return cli.main([str(a) for a in argv])


def test_promoter_prepare_end_to_end(sim_genome, tmp_path):
    out = tmp_path / "promoter"
    assert run_gbb("promoter", "prepare", "--bed", sim_genome.promoters_other_bed, "--chain", sim_genome.chain,
                   "--fasta", sim_genome.fasta, "--out", out, "--seed", 5, "--quiet") == 0
    data = LabeledWindows(out / "promoter.h5")
    n = sim_genome.n_promoters
    assert len(data) == 2 * n and data.window == 8000 and data.scheme == "replace"
    labels = data.labels().ravel()
    assert labels.tolist() == [1, 0] * n  # each positive followed by its negative
    records = data.records()
    boxes = json.loads(sim_genome.summary.read_text())["promoter_boxes"]
    tata = 5000 + boxes["tata_offset"]
    for row in range(0, 2 * n, 2):
        assert data.sequence(row)[tata:tata + 8] == boxes["tata"]
        assert records.loc[row, "split"] == records.loc[row + 1, "split"]
    test_chroms = set(records.loc[records["split"] == "test", "chrom"])
    assert test_chroms == {"chr8", "chr9"} and set(records.loc[records["split"] == "valid", "chrom"]) == {"chr7"}

    manifest = json.loads((out / "manifest.json").read_text())["outputs"]
    assert manifest["n_input"] == manifest["n_mapped"] + manifest["n_unmapped"]
    assert manifest["n_unmapped"] == sim_genome.n_unmapped_promoters
    unmapped = list(read_bed(out / "unmapped.bed"))
    assert len(unmapped) == sim_genome.n_unmapped_promoters and all(r.extra for r in unmapped)
    flipped = list(read_bed(out / "strand_flipped.bed"))
    assert len(flipped) == manifest["n_strand_flipped"] > 0 and {r.chrom for r in flipped} == {"chr7"}
    assert (out / "promoter_prepare.log").is_file() and (out / "config.yaml").is_file()

    shuffled = tmp_path / "shuffled"
    assert run_gbb("promoter", "prepare", "--bed", sim_genome.promoters_bed, "--fasta", sim_genome.fasta,
                   "--out", shuffled, "--scheme", "shuffle", "--test-contigs", "chr1", "--quiet") == 0
    other = LabeledWindows(shuffled / "promoter.h5")
    assert other.scheme == "shuffle" and set(other.records("test")["chrom"]) == {"chr1"}
    negative = other.sequence(1)
    assert sorted(negative) == sorted(other.sequence(0))  # a permutation of pieces keeps base counts


def test_chromatin_prepare_from_bins_and_from_peaks(sim_genome, tmp_path):
    common = ["--fasta", sim_genome.fasta, "--features", sim_genome.chromatin_features, "--width", 1000,
              "--valid-region", "chr7:1-40000", "--quiet"]
    assert run_gbb("chromatin", "prepare", "--out", tmp_path / "bins", "--bins", sim_genome.chromatin_bins,
                   "--labels", sim_genome.chromatin_labels, *common) == 0
    bins = list(read_bed(sim_genome.chromatin_bins))
    truth = np.load(sim_genome.chromatin_labels)
    kept = np.array([b.chrom not in ("chrX", "chrM") for b in bins])
    data = LabeledWindows(tmp_path / "bins" / "chromatin.h5")
    assert len(data) == kept.sum() and data.window == 1000
    np.testing.assert_array_equal(data.labels(), truth[kept])
    assert data.feature_groups[:1] == ["DHS"] and set(data.feature_groups) == {"DHS", "TF", "HM"}
    records = data.records()
    centers = (records["start"] + records["end"]) // 2
    first_bin = [b for b in bins if b.chrom == records.loc[0, "chrom"]][0]
    assert centers[0] == (first_bin.start + first_bin.end) // 2
    valid = records[records["split"] == "valid"]
    assert set(valid["chrom"]) == {"chr7"} and (centers[valid.index] < 40000).all()
    assert set(records.loc[records["split"] == "test", "chrom"]) == {"chr8", "chr9"}
    manifest = json.loads((tmp_path / "bins" / "manifest.json").read_text())
    assert sum(manifest["outputs"]["excluded_bins"].values()) == (~kept).sum()
    # only the parameters this source used: no peak overlap fraction or tile size
    assert manifest["config"] == {"width": 1000, "test_contigs": ["chr8", "chr9"], "valid_region": "chr7:1-40000",
                                  "exclude_contigs": ["chrX", "chrY", "chrM"], "chunk_size": 4096}

    # The peak files reproduce the simulated labels exactly (>= 50% of a bin in a peak).
    assert run_gbb("chromatin", "prepare", "--out", tmp_path / "peaks", "--bins", sim_genome.chromatin_bins,
                   "--peaks-dir", sim_genome.peaks_dir, *common) == 0
    np.testing.assert_array_equal(LabeledWindows(tmp_path / "peaks" / "chromatin.h5").labels(), truth[kept])

    # Without --bins: genome tiles positive for at least one feature, the same bins as the simulation's.
    assert run_gbb("chromatin", "prepare", "--out", tmp_path / "tiles", "--peaks-dir", sim_genome.peaks_dir,
                   *common) == 0
    tiles = LabeledWindows(tmp_path / "tiles" / "chromatin.h5")
    positive = kept & truth.any(axis=1)
    expected = [(b.chrom, (b.start + b.end) // 2) for b, p in zip(bins, positive) if p]
    got = tiles.records()
    assert list(zip(got["chrom"], (got["start"] + got["end"]) // 2)) == expected
    np.testing.assert_array_equal(tiles.labels(), truth[positive])


def test_chromatin_prepare_from_a_deepsea_bundle(tmp_path):
    rng = np.random.default_rng(0)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    forward = {}
    for split, n in (("train", 3), ("valid", 1), ("test", 2)):
        codes = rng.integers(0, 4, size=(n, 1000))
        x = np.zeros((n, 4, 1000), dtype=np.uint8)
        np.put_along_axis(x, codes[:, None, :], 1, axis=1)
        x = np.concatenate([x, x[:, ::-1, ::-1]])       # forward half, then its reverse complement
        y = np.tile((rng.random((n, 919)) < 0.2).astype(np.uint8), (2, 1))
        forward[split] = ["".join("AGCT"[c] for c in row) for row in codes]
        if split == "train":
            with h5py.File(bundle / "train.mat", "w") as f:
                f["trainxdata"], f["traindata"] = np.transpose(x, (2, 1, 0)), y.T
        else:
            scipy.io.savemat(bundle / f"{split}.mat", {f"{split}xdata": x, f"{split}data": y})
    assert run_gbb("chromatin", "prepare", "--out", tmp_path / "out", "--deepsea-dir", bundle, "--quiet") == 0
    # the bundle's windows are 1000 bp and its split its own: the manifest names neither a width nor a split
    for recorded in (json.loads((tmp_path / "out" / "manifest.json").read_text())["config"],
                     yaml.safe_load((tmp_path / "out" / "config.yaml").read_text())):
        assert recorded == {"chunk_size": 4096}
    data = LabeledWindows(tmp_path / "out" / "chromatin.h5")
    assert data.window == 1000 and data.source == "deepsea" and len(data.feature_names) == 919
    for split, sequences in forward.items():
        assert [data.sequence(i) for i in data.indices(split)] == sequences
    check = json.loads((tmp_path / "out" / "manifest.json").read_text())["outputs"]["strand_pair_check"]
    assert check["train"] == {"rows": 3, "sequence_mismatches": 0, "label_mismatches": 0}


def test_width_with_a_deepsea_bundle_is_refused(tmp_path, capsys):
    """A width (or split, or FASTA) the DeepSEA bundle would ignore is a one-line error, not silently dropped."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    for extra, named in ((["--width", 8000], "--width"),
                         (["--width", 8000, "--test-contigs", "chr8"], "--width and --test-contigs")):
        assert run_gbb("chromatin", "prepare", "--out", tmp_path / "out", "--deepsea-dir", bundle, *extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{named} cannot be used with --deepsea-dir" in err[0]
    assert not (tmp_path / "out").exists()


def test_bad_inputs_exit_2_with_one_line_and_no_output(sim_genome, tmp_path, capsys):
    bad_bed = tmp_path / "bad.bed"
    bad_bed.write_text("chr1\t100\t101\tok\t0\t+\nchr1\t200\tabc\tbad\t0\t+\n")
    out = tmp_path / "promoter"
    assert run_gbb("promoter", "prepare", "--bed", bad_bed, "--fasta", sim_genome.fasta, "--out", out,
                   "--quiet") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{bad_bed}:2:" in err[0] and "not an integer" in err[0]
    assert not out.exists()

    unknown = tmp_path / "unknown.bed"
    unknown.write_text("chr1\t100\t101\tok\t0\t+\nchr3\t200\t201\tnowhere\t0\t-\n")
    assert run_gbb("promoter", "prepare", "--bed", unknown, "--fasta", sim_genome.fasta, "--out", out,
                   "--quiet") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{unknown}:2:" in err[0] and "unknown contig 'chr3'" in err[0]
    assert not out.exists()

    short = tmp_path / "short.npy"
    np.save(short, np.zeros((3, len(sim_genome.feature_names)), dtype=np.uint8))
    assert run_gbb("chromatin", "prepare", "--out", tmp_path / "chromatin", "--bins", sim_genome.chromatin_bins,
                   "--labels", short, "--features", sim_genome.chromatin_features, "--fasta", sim_genome.fasta,
                   "--quiet") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(short) in err[0] and "label matrix has shape (3," in err[0]
    assert not (tmp_path / "chromatin").exists()


def test_task_yaml_defaults_are_the_papers():
    from pathlib import Path

    from pipelines.chromatin import ChromatinPrepareConfig
    from pipelines.config import load_config
    from pipelines.promoter import PromoterPrepareConfig

    tasks = Path(__file__).resolve().parents[2] / "configs" / "tasks"
    promoter = load_config(PromoterPrepareConfig, tasks / "promoter.yaml")
    assert (promoter.upstream, promoter.downstream, promoter.scheme) == (5000, 3000, "replace")
    chromatin = load_config(ChromatinPrepareConfig, tasks / "chromatin.yaml")
    assert (chromatin.width, chromatin.test_contigs, chromatin.valid_region) == \
        (8000, ["chr8", "chr9"], "chr7:30508751-35296850")
    assert chromatin.exclude_contigs == ["chrX", "chrY", "chrM"] and chromatin.min_peak_fraction == 0.5
