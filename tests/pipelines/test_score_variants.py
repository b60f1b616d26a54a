"""`gbb score-variants` on a hand-made FASTA + VCF, checked against the model run by hand on sliced windows."""
import json
import random

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from genomics_bigbird.model import EncoderConfig, build_classifier, save_checkpoint
from genomics_bigbird.tokenizer import DNATokenizer
from pipelines import cli

W = 64  # window width: the first REF base sits at index W // 2
rng = random.Random(11)
CHR1 = "".join(rng.choice("ACGT") for _ in range(400))
CHR2 = "".join(rng.choice("ACGT") for _ in range(150))
GENOME = {"chr1": CHR1, "chr2": CHR2}
FEATURES = ["DNase_a", "CTCF", "H3K4me3"]
PAIR = {"A": "T", "C": "G", "G": "C", "T": "A", "N": "N"}


def other(base, skip=""):
    return next(b for b in "CTAG" if b != base and b not in skip)


# (CHROM, POS, ID, REF, ALT) as written in the VCF
RECORDS = [
    ("chr2", 5, "near_start", CHR2[4], other(CHR2[4])),
    ("chr1", 100, "snv", CHR1[99], other(CHR1[99])),
    ("chr1", 150, "ins", CHR1[149], CHR1[149] + "TTT"),
    ("chr1", 200, "del", CHR1[199:203], CHR1[199]),
    ("chr1", 250, "multi", CHR1[249], f"{other(CHR1[249])},{other(CHR1[249], other(CHR1[249]))}"),
    ("chr1", 300, "mismatch", other(CHR1[299]), "A"),
    ("chr1", 320, "symbolic", CHR1[319], "<DEL>"),
    ("chr5", 10, "unknown", "A", "G"),
    ("chr2", 140, "near_end", CHR2[139], other(CHR2[139])),
]
# (ID, ALT, status) per output row, in VCF order
EXPECTED = [("near_start", RECORDS[0][4], "padded"), ("snv", RECORDS[1][4], "ok"), ("ins", RECORDS[2][4], "ok"),
            ("del", RECORDS[3][4], "ok"), ("multi", RECORDS[4][4].split(",")[0], "ok"),
            ("multi", RECORDS[4][4].split(",")[1], "ok"), ("mismatch", "A", "ref_mismatch"),
            ("symbolic", "<DEL>", "symbolic_alt"), ("unknown", "G", "unknown_contig"),
            ("near_end", RECORDS[8][4], "padded")]


def vcf_text(records=RECORDS, extra_line=None):
    header = ["##fileformat=VCFv4.2", "##contig=<ID=chr1,length=400>", "##contig=<ID=chr2,length=150>",
              "##contig=<ID=chr5,length=1000>", '##ALT=<ID=DEL,Description="Deletion">',
              "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    body = ["\t".join([c, str(p), i, r, a, ".", "PASS", "."]) for c, p, i, r, a in records]
    if extra_line:
        body.insert(3, extra_line)
    return "\n".join(header + body) + "\n"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("score")
    fasta = root / "ref.fa"
    fasta.write_text(f">chr1\n{CHR1}\n>chr2\n{CHR2}\n")
    vcf = root / "calls.vcf"
    vcf.write_text(vcf_text())
    corpus = [CHR1[i: i + 60] for i in range(0, 340, 7)] + [CHR2[i: i + 60] for i in range(0, 90, 5)]
    tokenizer = DNATokenizer.train(corpus * 2, vocab_size=40, model_prefix=root / "tok" / "bpe", seed=0)
    config = EncoderConfig(vocab_size=len(tokenizer), hidden_size=32, num_layers=2, num_heads=2,
                           intermediate_size=64, max_position=128, attention="bigbird", block_size=8,
                           num_global_blocks=1, window_blocks=3, num_random_blocks=1,
                           attention_backend="gather", initializer_range=0.3)
    torch.manual_seed(0)
    model = build_classifier(config, len(FEATURES)).eval()
    checkpoint = save_checkpoint(root / "ckpt", model, model_config=config.to_dict(), task="chromatin",
                                 tokenizer_sha256=tokenizer.sha256, extra={"feature_names": FEATURES})
    return {"root": root, "fasta": fasta, "vcf": vcf, "tokenizer": tokenizer, "model": model,
            "checkpoint": checkpoint}


def command(inputs, out, *extra, vcf=None):
    return ["score-variants", "--vcf", str(vcf or inputs["vcf"]), "--fasta", str(inputs["fasta"]),
            "--checkpoint", str(inputs["checkpoint"]), "--tokenizer", str(inputs["tokenizer"].path),
            "--out", str(out), "--width", str(W), "--batch-size", "3", "--device", "cpu", "--quiet", *extra]


@pytest.fixture(scope="module")
def unsharded(inputs):
    out, h5 = inputs["root"] / "all" / "scores.tsv", inputs["root"] / "all" / "scores.h5"
    assert cli.main(command(inputs, out, "--h5", str(h5))) == 0
    return out, h5


def padded(contig, start, end):
    seq = GENOME[contig]
    return "".join(seq[i] if 0 <= i < len(seq) else "N" for i in range(start, end))


def windows_by_hand(contig, pos, ref, alt):
    p = pos - 1
    ref_window = padded(contig, p - W // 2, p - W // 2 + W)
    alt_window = (ref_window[: W // 2] + alt + padded(contig, p + len(ref), p + len(ref) + W))[:W]
    return ref_window, alt_window


def direct_probabilities(inputs, window):
    """The model on one window and on its reverse complement, one at a time (no padding), averaged."""
    tok, model = inputs["tokenizer"], inputs["model"]
    probabilities = []
    for seq in (window, "".join(PAIR[b] for b in reversed(window))):
        ids = torch.tensor([[tok.cls_id, *tok.encode(seq), tok.sep_id]])
        with torch.no_grad():
            probabilities.append(torch.sigmoid(model(ids, torch.ones_like(ids, dtype=torch.bool))).double()[0])
    return ((probabilities[0] + probabilities[1]) / 2).numpy()


def read_tsv(path):
    return pd.read_csv(path, sep="\t", dtype={"CHROM": str, "ID": str, "REF": str, "ALT": str})


def test_one_row_per_alt_with_statuses(inputs, unsharded):
    out, _ = unsharded
    lines = [line.split("\t") for line in out.read_text().splitlines()]
    assert lines[0] == ["CHROM", "POS", "ID", "REF", "ALT", "allele", "record_index", "status", "n_padded",
                        "max_abs_diff", "max_abs_diff_feature", "max_abs_log_odds_diff",
                        "max_abs_log_odds_diff_feature"]
    rows = lines[1:]
    assert [(r[2], r[4], r[7]) for r in rows] == EXPECTED
    records = {rec[2]: rec for rec in RECORDS}
    assert all((r[0], int(r[1]), r[3]) == (records[r[2]][0], records[r[2]][1], records[r[2]][3]) for r in rows)
    assert [int(r[5]) for r in rows] == [1, 1, 1, 1, 1, 2, 1, 1, 1, 1]
    assert [int(r[8]) for r in rows] == [W // 2 - 4, 0, 0, 0, 0, 0, 0, 0, 0, 139 - W // 2 + W - 150]
    for r in rows:
        scored = r[7] in ("ok", "padded")
        assert all(bool(v) == scored for v in r[9:]), r
        if scored:
            assert r[10] in FEATURES and float(r[9]) > 0
    manifest = json.loads((out.parent / "scores.tsv.manifest.json").read_text())
    assert manifest["outputs"]["status_counts"] == {"ok": 5, "padded": 2, "ref_mismatch": 1, "symbolic_alt": 1,
                                                    "unknown_contig": 1}
    assert manifest["outputs"]["n_variants"] == 10 and manifest["outputs"]["n_scored"] == 7
    assert "ref_mismatch 1" in (out.parent / "scores.tsv.log").read_text()
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "scores.h5", "scores.tsv", "scores.tsv.log", "scores.tsv.manifest.json"]  # no temporaries


def test_scores_equal_the_model_on_windows_cut_by_hand(inputs, unsharded):
    out, h5_path = unsharded
    table = read_tsv(out)
    records = {rec[2]: rec for rec in RECORDS}
    with h5py.File(h5_path) as h5:
        assert h5["features/name"].asstr()[:].tolist() == FEATURES
        assert h5["ref"].shape == h5["alt"].shape == h5["diff"].shape == h5["log_odds_diff"].shape == (10, 3)
        assert h5["variants/status"].asstr()[:].tolist() == [e[2] for e in EXPECTED]
        assert h5["variants/POS"][:].tolist() == table["POS"].tolist()
        matrices = {name: h5[name][:] for name in ("ref", "alt", "diff", "log_odds_diff")}
    for i, (name, alt, status) in enumerate(EXPECTED):
        if status not in ("ok", "padded"):
            assert all(np.isnan(m[i]).all() for m in matrices.values())
            continue
        chrom, pos, _, ref, _ = records[name]
        ref_window, alt_window = windows_by_hand(chrom, pos, ref, alt)
        p_ref, p_alt = direct_probabilities(inputs, ref_window), direct_probabilities(inputs, alt_window)
        np.testing.assert_allclose(matrices["ref"][i], p_ref, atol=2e-6)
        np.testing.assert_allclose(matrices["alt"][i], p_alt, atol=2e-6)
        np.testing.assert_allclose(matrices["diff"][i], p_alt - p_ref, atol=2e-6)
        log_odds = np.log(p_alt / (1 - p_alt)) - np.log(p_ref / (1 - p_ref))
        np.testing.assert_allclose(matrices["log_odds_diff"][i], log_odds, atol=2e-5)
        biggest = int(np.argmax(np.abs(p_alt - p_ref)))
        assert table["max_abs_diff_feature"][i] == FEATURES[biggest]
        assert table["max_abs_diff"][i] == pytest.approx(abs(p_alt - p_ref)[biggest], rel=1e-4)
        assert table["max_abs_log_odds_diff"][i] == pytest.approx(np.abs(log_odds).max(), rel=1e-4)
    assert np.nanmax(np.abs(matrices["diff"])) > 1e-3  # the toy model does tell alleles apart


def assert_same_table(got, expected):
    assert got.columns.tolist() == expected.columns.tolist()
    floats = ["max_abs_diff", "max_abs_log_odds_diff"]
    others = [c for c in got.columns if c not in floats]
    assert got[others].fillna("").astype(str).values.tolist() == expected[others].fillna("").astype(str).values.tolist()
    np.testing.assert_allclose(got[floats].to_numpy(float), expected[floats].to_numpy(float), rtol=1e-5)


def test_sharded_runs_merge_to_the_unsharded_output(inputs, unsharded, tmp_path):
    out, h5_path = unsharded
    for i in range(2):
        assert cli.main(command(inputs, tmp_path / f"s{i}.tsv", "--h5", str(tmp_path / f"s{i}.h5"),
                                "--shard", f"{i}/2")) == 0
    assert len(read_tsv(tmp_path / "s1.tsv")) == 4  # records 1, 3, 5, 7: snv, del, mismatch, unknown
    assert cli.main(["score-variants", "--merge", str(tmp_path / "s1.tsv"), str(tmp_path / "s0.tsv"),
                     "--out", str(tmp_path / "merged.tsv"), "--quiet"]) == 0
    assert cli.main(["score-variants", "--merge", str(tmp_path / "s0.h5"), str(tmp_path / "s1.h5"),
                     "--out", str(tmp_path / "merged.h5"), "--quiet"]) == 0
    assert_same_table(read_tsv(tmp_path / "merged.tsv"), read_tsv(out))
    with h5py.File(tmp_path / "merged.h5") as merged, h5py.File(h5_path) as whole:
        for name in ("variants/CHROM", "variants/ID", "variants/ALT", "variants/status"):
            assert merged[name].asstr()[:].tolist() == whole[name].asstr()[:].tolist()
        for name in ("ref", "alt", "diff", "log_odds_diff"):
            np.testing.assert_allclose(merged[name][:], whole[name][:], rtol=1e-5, atol=1e-6)
    manifest = json.loads((tmp_path / "merged.tsv.manifest.json").read_text())
    assert manifest["outputs"]["status_counts"]["ok"] == 5


def test_torchrun_ranks_write_parts_and_rank_zero_merges_parquet(inputs, unsharded, tmp_path, monkeypatch):
    out = tmp_path / "scores.parquet"
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in ("1", "0"):  # rank 1 finishes first; rank 0 then finds its part and merges
        monkeypatch.setenv("RANK", rank)
        assert cli.main(command(inputs, out)) == 0
    assert not list(tmp_path.glob("*.part*-of-2.parquet"))
    assert_same_table(pd.read_parquet(out), read_tsv(unsharded[0]))


def test_malformed_vcf_line_is_one_line_error_naming_file_and_line(inputs, tmp_path, capsys):
    vcf = tmp_path / "bad.vcf"
    vcf.write_text(vcf_text(extra_line="chr1\tnot_a_position\tx\tA\tC\t.\tPASS\t."))
    out = tmp_path / "out" / "bad.tsv"
    assert cli.main(command(inputs, out, vcf=vcf)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{vcf}:10:" in err  # 6 header lines, then the 4th record
    assert not out.exists() and not list(out.parent.glob("*.tmp"))


def test_tokenizer_checksum_mismatch_writes_nothing(inputs, tmp_path, capsys):
    other_tok = DNATokenizer.train([CHR1[i: i + 50] for i in range(0, 350, 3)], vocab_size=30,
                                   model_prefix=tmp_path / "other", seed=1)
    out = tmp_path / "out" / "scores.tsv"
    args = command(inputs, out)
    args[args.index("--tokenizer") + 1] = str(other_tok.path)
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "sha256" in err and str(inputs["checkpoint"]) in err
    assert not (tmp_path / "out").exists()


def test_bed_filter_keeps_only_overlapping_variants(inputs, unsharded, tmp_path):
    bed = tmp_path / "keep.bed"
    bed.write_text("chr1\t145\t201\n")  # 0-based: covers POS 150 (ins) and POS 200 (del)
    out = tmp_path / "bed.tsv"
    assert cli.main(command(inputs, out, "--bed", str(bed))) == 0
    table, whole = read_tsv(out), read_tsv(unsharded[0])
    assert table["ID"].tolist() == ["ins", "del"] and table["record_index"].tolist() == [0, 1]
    kept = whole.set_index("ID").loc[["ins", "del"]]
    np.testing.assert_allclose(table["max_abs_diff"], kept["max_abs_diff"], rtol=1e-5)
