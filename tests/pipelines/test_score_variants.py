"""`gbb score-variants` on a hand-made FASTA + VCF, checked against the model run by hand on sliced windows."""
import json
import re
import random

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from genomics_bigbird.model import save_checkpoint
from genomics_bigbird.model.inference import pad_rows
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
def inputs(tmp_path_factory, toy_chromatin_checkpoint):
    root = tmp_path_factory.mktemp("score")
    fasta = root / "ref.fa"
    fasta.write_text(f">chr1\n{CHR1}\n>chr2\n{CHR2}\n")
    vcf = root / "calls.vcf"
    vcf.write_text(vcf_text())
    corpus = [CHR1[i: i + 60] for i in range(0, 340, 7)] + [CHR2[i: i + 60] for i in range(0, 90, 5)]
    tokenizer = DNATokenizer.train(corpus * 2, vocab_size=40, model_prefix=root / "tok" / "bpe", seed=0)
    model, config, checkpoint = toy_chromatin_checkpoint(root / "ckpt", tokenizer, FEATURES, 128)
    return {"root": root, "fasta": fasta, "vcf": vcf, "tokenizer": tokenizer, "model": model,
            "checkpoint": checkpoint, "config": config}


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


def direct_probabilities(inputs, window, length):
    """The model on one window and on its reverse complement, one at a time, padded to `length`, averaged."""
    tok, model = inputs["tokenizer"], inputs["model"]
    probabilities = []
    for seq in (window, "".join(PAIR[b] for b in reversed(window))):
        input_ids, attention_mask = pad_rows([[tok.cls_id, *tok.encode(seq), tok.sep_id]], tok.pad_id, length)
        with torch.no_grad():
            probabilities.append(torch.sigmoid(model(input_ids, attention_mask)).double()[0])
    return ((probabilities[0] + probabilities[1]) / 2).numpy()


def common_length(inputs, *windows):
    """The padded length a variant's windows share: the longest of them and their reverse complements, in blocks of 8."""
    tok = inputs["tokenizer"]
    strands = [*windows, *("".join(PAIR[b] for b in reversed(w)) for w in windows)]
    return -(-max(len(tok.encode(s)) + 2 for s in strands) // 8) * 8


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
        names = ("ref", "alt", "diff", "abs_diff", "log_odds_diff")
        assert {h5[name].shape for name in names} == {(10, 3)}
        assert h5["variants/status"].asstr()[:].tolist() == [e[2] for e in EXPECTED]
        assert h5["variants/POS"][:].tolist() == table["POS"].tolist()
        matrices = {name: h5[name][:] for name in names}
    for i, (name, alt, status) in enumerate(EXPECTED):
        if status not in ("ok", "padded"):
            assert all(np.isnan(m[i]).all() for m in matrices.values())
            continue
        chrom, pos, _, ref, _ = records[name]
        ref_window, alt_window = windows_by_hand(chrom, pos, ref, alt)
        length = common_length(inputs, ref_window, alt_window)
        p_ref, p_alt = direct_probabilities(inputs, ref_window, length), direct_probabilities(inputs, alt_window, length)
        np.testing.assert_allclose(matrices["ref"][i], p_ref, atol=2e-6)
        np.testing.assert_allclose(matrices["alt"][i], p_alt, atol=2e-6)
        np.testing.assert_allclose(matrices["diff"][i], p_alt - p_ref, atol=2e-6)
        np.testing.assert_allclose(matrices["abs_diff"][i], np.abs(p_alt - p_ref), atol=2e-6)
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
    parts = [str(tmp_path / name) for name in ("s1.tsv", "s0.h5", "s0.tsv", "s1.h5")]  # both kinds, one call
    assert cli.main(["score-variants", "--merge", *parts, "--out", str(tmp_path / "merged.tsv"),
                     "--h5", str(tmp_path / "merged.h5"), "--quiet"]) == 0
    assert_same_table(read_tsv(tmp_path / "merged.tsv"), read_tsv(out))
    with h5py.File(tmp_path / "merged.h5") as merged, h5py.File(h5_path) as whole:
        for name in ("variants/CHROM", "variants/ID", "variants/ALT", "variants/status"):
            assert merged[name].asstr()[:].tolist() == whole[name].asstr()[:].tolist()
        for name in ("ref", "alt", "diff", "abs_diff", "log_odds_diff"):
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


@pytest.fixture(scope="module")
def windowed_checkpoint(inputs):
    """The fixture's model saved as `gbb finetune` saves it: with the window width it was trained on."""
    return save_checkpoint(inputs["root"] / "ckpt_w", inputs["model"], model_config=inputs["config"].to_dict(),
                           task="chromatin", tokenizer_sha256=inputs["tokenizer"].sha256,
                           extra={"feature_names": FEATURES, "window": W})


def without(args, option):
    i = args.index(option)
    return args[:i] + args[i + 2:]


def test_width_defaults_to_the_training_window_and_another_width_warns(inputs, unsharded, windowed_checkpoint,
                                                                       tmp_path, capsys):
    args = command(inputs, tmp_path / "default.tsv")
    args[args.index("--checkpoint") + 1] = str(windowed_checkpoint)
    assert cli.main(without(args, "--width")) == 0  # no --width: the checkpoint's 64 bp
    assert_same_table(read_tsv(tmp_path / "default.tsv"), read_tsv(unsharded[0]))
    assert json.loads((tmp_path / "default.tsv.manifest.json").read_text())["config"]["width"] == W
    wider = without(without(args, "--width"), "--out") + ["--width", "80", "--out", str(tmp_path / "wide.tsv")]
    wider.remove("--quiet")
    assert cli.main(wider) == 0
    err = capsys.readouterr().err
    assert "--width 80 differs from the 64 bp windows" in err and "--width 80 differs" in (
        tmp_path / "wide.tsv.log").read_text()


def test_an_error_is_printed_once_and_the_progress_bar_has_an_eta(inputs, tmp_path, capsys):
    good = command(inputs, tmp_path / "ok.tsv")
    good.remove("--quiet")
    assert cli.main(good) == 0
    err = capsys.readouterr().err
    assert re.search(r"9/9 \[\d\d:\d\d<\d\d:\d\d", err), err  # 9 records read of 9 counted, elapsed<remaining
    vcf = tmp_path / "bad.vcf"
    vcf.write_text(vcf_text(extra_line="chr1\t120\tshort\tA"))
    bad = command(inputs, tmp_path / "bad.tsv", vcf=vcf)
    bad.remove("--quiet")
    assert cli.main(bad) == 2
    err = capsys.readouterr().err
    assert err.count("malformed VCF record") == 1, err
    assert "it has 4 tab-separated columns" in err and "chr1\t120\tshort\tA" in err


def test_telomeres_breakends_and_spanning_deletions_get_rows(inputs, tmp_path):
    vcf = tmp_path / "real.vcf"
    records = [("chr1", 0, "tel", "N", "."), ("chr1", 100, "snv", CHR1[99], other(CHR1[99])),
               ("chr1", 140, "bnd", CHR1[139], f"{CHR1[139]}[chr7:100["), ("chr1", 141, "star", CHR1[140], "*"),
               ("chr2", 151, "tel_end", "N", "N[chr2:150[")]
    vcf.write_text(vcf_text(records))
    out = tmp_path / "real.tsv"
    assert cli.main(command(inputs, out, vcf=vcf)) == 0
    table = read_tsv(out)
    assert table[["ID", "ALT", "status"]].values.tolist() == [
        ["tel", ".", "telomere"], ["snv", other(CHR1[99]), "ok"], ["bnd", f"{CHR1[139]}[chr7:100[", "breakend"],
        ["star", "*", "spanning_deletion"], ["tel_end", "N[chr2:150[", "telomere"]]


def test_tokenization_workers_give_the_same_outputs(inputs, unsharded, tmp_path):
    out, h5 = tmp_path / "w.tsv", tmp_path / "w.h5"
    assert cli.main(command(inputs, out, "--h5", str(h5), "--workers", "2")) == 0
    assert out.read_text() == unsharded[0].read_text()
    with h5py.File(h5) as got, h5py.File(unsharded[1]) as expected:
        assert all(np.array_equal(got[n][:], expected[n][:], equal_nan=True) for n in ("ref", "alt", "diff"))
    # Without --h5 the workers send table rows instead of score matrices: the same table.
    assert cli.main(command(inputs, tmp_path / "rows.tsv", "--workers", "2")) == 0
    assert (tmp_path / "rows.tsv").read_text() == unsharded[0].read_text()
    assert cli.main(command(inputs, tmp_path / "rows.parquet", "--workers", "2")) == 0
    assert_same_table(pd.read_parquet(tmp_path / "rows.parquet"), read_tsv(unsharded[0]))
