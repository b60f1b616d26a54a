"""`gbb ism` against `gbb score-variants` on the same SNVs written as a VCF, on a toy checkpoint."""
import random

import h5py
import numpy as np
import pytest

from genomics_bigbird.tokenizer import DNATokenizer
from pipelines import cli

W = 48
rng = random.Random(4)
CHR1 = "".join(rng.choice("ACGT") for _ in range(300))
FEATURES = ["DNase_a", "CTCF", "H3K4me3"]
START, END = 140, 157  # 1-based, inclusive: 18 positions


@pytest.fixture(scope="module")
def toy(tmp_path_factory, toy_chromatin_checkpoint):
    root = tmp_path_factory.mktemp("ism")
    fasta = root / "ref.fa"
    fasta.write_text(f">chr1\n{CHR1}\n")
    tokenizer = DNATokenizer.train([CHR1[i: i + 60] for i in range(0, 240, 4)] * 2, vocab_size=40,
                                   model_prefix=root / "bpe", seed=0)
    _, _, checkpoint = toy_chromatin_checkpoint(root / "ckpt", tokenizer, FEATURES, 96, window=W)
    common = ["--fasta", str(fasta), "--checkpoint", str(checkpoint), "--tokenizer", str(tokenizer.path),
              "--batch-size", "5", "--device", "cpu", "--quiet"]
    return {"root": root, "fasta": fasta, "common": common}


def ism(toy, name, *extra):
    out = toy["root"] / f"{name}.h5"
    assert cli.main(["ism", "--region", f"chr1:{START}-{END}", "--out", str(out), *toy["common"], *extra]) == 0
    return out


def test_each_ism_entry_equals_score_variants_on_the_same_snv(toy):
    body = [f"chr1\t{p}\t.\t{CHR1[p - 1]}\t{alt}\t.\tPASS\t." for p in range(START, END + 1)
            for alt in "ACGT" if alt != CHR1[p - 1]]
    vcf = toy["root"] / "snvs.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n" + "\n".join(body) + "\n")
    scores = toy["root"] / "snvs.h5"
    assert cli.main(["score-variants", "--vcf", str(vcf), "--out", str(toy["root"] / "snvs.tsv"), "--h5", str(scores),
                     *toy["common"]]) == 0
    out = ism(toy, "map", "--plot", str(toy["root"] / "map.png"))
    with h5py.File(out) as got, h5py.File(scores) as expected:
        diff, log_odds, reference = got["diff"][:], got["log_odds_diff"][:], got["reference"][:]
        assert diff.shape == (END - START + 1, 4, 3) and got["features/name"].asstr()[:].tolist() == FEATURES
        assert got["position"][:].tolist() == list(range(START, END + 1)) and got.attrs["sequence"] == CHR1[START - 1:END]
        for row, (pos, alt) in enumerate(zip(expected["variants/POS"][:], expected["variants/ALT"].asstr()[:])):
            i, j = pos - START, "ACGT".index(alt)
            assert not reference[i, j]
            np.testing.assert_allclose(diff[i, j], expected["diff"][row], rtol=0, atol=1e-6)
            np.testing.assert_allclose(log_odds[i, j], expected["log_odds_diff"][row], rtol=0, atol=1e-5)
        assert reference.sum() == len(reference) and all(
            reference[i, "ACGT".index(CHR1[START - 1 + i])] for i in range(len(reference)))
        assert (diff[reference] == 0).all() and (log_odds[reference] == 0).all()  # exactly 0, by definition
        np.testing.assert_allclose(got["importance"][:], np.abs(diff).sum(axis=1) / 3, rtol=1e-6)
    assert np.abs(diff).max() > 1e-3  # the toy model tells the bases apart
    png = (toy["root"] / "map.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000


def test_features_workers_and_plot_options(toy):
    whole = ism(toy, "whole")
    picked = ism(toy, "picked", "--features", "H3K4me3,DNase_a", "--workers", "2")
    with h5py.File(whole) as a, h5py.File(picked) as b:
        assert b["features/name"].asstr()[:].tolist() == ["H3K4me3", "DNase_a"]
        assert np.array_equal(b["diff"][:], a["diff"][:][:, :, [2, 0]])  # identical with 2 tokenization workers
    assert cli.main(["ism", "--region", "chr1:10-20", "--out", str(toy["root"] / "bad.h5"), *toy["common"],
                     "--features", "nope"]) == 2
    assert cli.main(["ism", "--region", "chr1:290-310", "--out", str(toy["root"] / "bad.h5"), *toy["common"]]) == 2
    assert not (toy["root"] / "bad.h5").exists()
