import json

import h5py
import pytest

from pipelines import cli

CHR1 = "ACGTTGCAAGGCTTAACCGGATCGATCGTTAGCAAGTCGA"  # 40 bp
CHR2 = "ggccaattRN"                                # 10 bp, soft-masked and IUPAC
PAIR = {"A": "T", "C": "G", "G": "C", "T": "A", "N": "N"}


def rc_by_hand(seq):
    return "".join(PAIR[base] for base in reversed(seq))


@pytest.fixture
def inputs(tmp_path):
    fasta = tmp_path / "ref.fa"
    fasta.write_text(f">chr1\n{CHR1[:20]}\n{CHR1[20:]}\n>chr2\n{CHR2}\n")
    bed = tmp_path / "regions.bed"
    bed.write_text("track name=x\n"
                   "chr1\t10\t20\tr1\t0\t+\n"
                   "chr1\t10\t20\tr2\t0\t-\n"
                   "2\t0\t2\tr3\t0\t+\n")
    return fasta, bed


def test_windows_fasta_exact_output(inputs, tmp_path, capsys):
    fasta, bed = inputs
    out = tmp_path / "out" / "w.fa"
    code = cli.main(["windows", "--fasta", str(fasta), "--bed", str(bed), "--out", str(out),
                     "--width", "6", "--quiet"])
    assert code == 0
    assert out.read_text() == (
        f">r1::chr1:12-18(+)\n{CHR1[12:18]}\n"
        f">r2::chr1:12-18(-)\n{rc_by_hand(CHR1[12:18])}\n"
        ">r3::2:-2-4(+)\nNNGGCC\n")
    manifest = json.loads((tmp_path / "out" / "w.fa.manifest.json").read_text())
    assert manifest["outputs"]["n_windows"] == 3 and manifest["outputs"]["n_padded_bases"] == 2
    assert manifest["config"]["width"] == 6
    assert "2 padded bases" in (tmp_path / "out" / "w.fa.log").read_text()
    assert capsys.readouterr().out == ""


def test_windows_tss_hdf5(inputs, tmp_path):
    fasta, bed = inputs
    out = tmp_path / "w.h5"
    code = cli.main(["windows", "--fasta", str(fasta), "--bed", str(bed), "--out", str(out),
                     "--anchor", "tss", "--upstream", "3", "--downstream", "2", "--quiet"])
    assert code == 0
    with h5py.File(out) as h5:
        sequences = [s.decode() for s in h5["sequences"][:]]
        assert sequences == [CHR1[7:12], rc_by_hand(CHR1[18:23]), "NNNGG"]
        assert [s[3] for s in sequences] == [CHR1[10], PAIR[CHR1[19]], "G"]  # TSS at index upstream
        assert list(h5["start"][:]) == [7, 18, -3] and list(h5["end"][:]) == [12, 23, 2]
        assert [c.decode() for c in h5["chrom"][:]] == ["chr1", "chr1", "2"]
        assert [n.decode() for n in h5["name"][:]] == ["r1", "r2", "r3"]
        assert list(h5["strand"][:]) == [b"+", b"-", b"+"]
        assert list(h5["n_padded"][:]) == [0, 0, 3]
        assert h5.attrs["anchor"] == "tss" and h5.attrs["n_padded_bases"] == 3


def test_malformed_bed_exits_2_with_one_line_and_no_output(inputs, tmp_path, capsys):
    fasta, bed = inputs
    bed.write_text(bed.read_text() + "chr1\t30\t20\tbad\t0\t+\n")
    for name in ("w.fa", "w.h5"):
        out = tmp_path / name
        code = cli.main(["windows", "--fasta", str(fasta), "--bed", str(bed), "--out", str(out), "--quiet"])
        assert code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"{bed}:5: start 30 > end 20" in err[0]
        assert not out.exists()
        assert not list(tmp_path.glob(f".{name}*"))  # no temporary left behind


def test_unknown_contig_names_bed_line(inputs, tmp_path, capsys):
    fasta, bed = inputs
    bed.write_text("chr1\t0\t4\ta\nchr3\t0\t4\tb\n")
    out = tmp_path / "w.fa"
    code = cli.main(["windows", "--fasta", str(fasta), "--bed", str(bed), "--out", str(out), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{bed}:2: unknown contig 'chr3': not in ref.fa" in err[0]
    assert "closest: chr2, chr1" in err[0]
    assert not out.exists()


CHAIN = """chain 1000 chr1 1000 + 0 300 chr1 1200 + 100 420 1
100\t50\t70
150

chain 900 chr2 500 + 0 200 chr3 800 - 100 300 2
200
"""


def test_liftover_cli_counts_and_files(tmp_path, capsys):
    chain = tmp_path / "a.chain"
    chain.write_text(CHAIN)
    bed = tmp_path / "in.bed"
    bed.write_text("chr1\t10\t20\tplain\t0\t+\n"
                   "chr1\t110\t140\tgap\t0\t+\n"
                   "chr9\t0\t10\tunknown\n"
                   "chr2\t10\t20\tflip\t5\t+\n")
    out, unmapped = tmp_path / "lifted.bed", tmp_path / "unmapped.bed"
    code = cli.main(["liftover", "--chain", str(chain), "--bed", str(bed), "--out", str(out),
                     "--unmapped", str(unmapped), "--quiet"])
    assert code == 0
    assert out.read_text() == "chr1\t110\t120\tplain\t0\t+\nchr3\t680\t690\tflip\t5\t-\n"
    assert unmapped.read_text() == ("chr1\t110\t140\tgap\t0\t+\tdeleted_in_new\n"
                                    "chr9\t0\t10\tunknown\t0\t.\tunknown_chromosome\n")
    outputs = json.loads((tmp_path / "lifted.bed.manifest.json").read_text())["outputs"]
    assert (outputs["n_input"], outputs["n_mapped"], outputs["n_unmapped"]) == (4, 2, 2)
    assert outputs["n_strand_flipped"] == 1
    assert "4 input = 2 mapped + 2 unmapped" in (tmp_path / "lifted.bed.log").read_text()


def test_liftover_cli_bad_bed_exits_2(tmp_path, capsys):
    chain = tmp_path / "a.chain"
    chain.write_text(CHAIN)
    bed = tmp_path / "in.bed"
    bed.write_text("chr1\t10\t20\tx\t0\t+\nchr1\tten\t20\n")
    out = tmp_path / "lifted.bed"
    code = cli.main(["liftover", "--chain", str(chain), "--bed", str(bed), "--out", str(out),
                     "--unmapped", str(tmp_path / "u.bed"), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{bed}:2: start 'ten' is not an integer" in err[0]
    assert not out.exists()
