import gzip

import pytest

from genomics_bigbird.errors import InputError
from genomics_bigbird.genome.intervals import BedRecord, read_bed, read_narrowpeak, write_bed

BED = """track name=test
browser position chr1:1-100
# a comment
chr1\t10\t20
chr1\t30\t45\tgeneA
chr2\t5\t9\tgeneB\t900\t-
chrM\t0\t16\tpeak\t12.5\t.\t2\t14\t255,0,0

chr1\t0\t100\ttx\t0\t+\t10\t90\t0\t2\t10,20,\t0,80,
"""


def test_read_bed3_to_bed12_with_line_numbers(tmp_path):
    path = tmp_path / "a.bed"
    path.write_text(BED)
    records = list(read_bed(path))
    assert [(r.chrom, r.start, r.end) for r in records] == [
        ("chr1", 10, 20), ("chr1", 30, 45), ("chr2", 5, 9), ("chrM", 0, 16), ("chr1", 0, 100)]
    assert [r.line for r in records] == [4, 5, 6, 7, 9]
    assert records[0].name is None and records[0].strand == "." and records[0].score is None
    assert records[1].name == "geneA" and records[1].length == 15
    assert (records[2].name, records[2].score, records[2].strand) == ("geneB", 900.0, "-")
    assert records[3].score == 12.5 and records[3].strand == "." and records[3].extra == ("2", "14", "255,0,0")
    assert records[4].extra == ("10", "90", "0", "2", "10,20,", "0,80,")


def test_gzip_and_space_separated(tmp_path):
    path = tmp_path / "a.bed.gz"
    path.write_bytes(gzip.compress(b"chr3 100 200 x 0 +\n"))
    assert list(read_bed(path)) == [BedRecord("chr3", 100, 200, "x", 0.0, "+", (), 1)]


@pytest.mark.parametrize("bad_line, fragment", [
    ("chr1\t10", "at least 3 columns"),
    ("chr1\t1e3\t2000", "start '1e3' is not an integer"),
    ("chr1\t10\t20.5", "end '20.5' is not an integer"),
    ("chr1\t30\t20", "start 30 > end 20"),
    ("chr1\t-5\t20", "start -5 is negative"),
    ("chr1\t10\t20\tx\t0\tplus", "strand 'plus'"),
    ("chr1\t10\t20\tx\thigh\t+", "score 'high'"),
])
def test_each_malformed_line_names_its_line(tmp_path, bad_line, fragment):
    path = tmp_path / "bad.bed"
    path.write_text("# header\nchr1\t0\t5\tok\nchr1\t5\t9\tok2\n" + bad_line + "\nchr1\t0\t1\n")
    reader = read_bed(path)
    assert next(reader).name == "ok"  # lines before the bad one are read normally
    with pytest.raises(InputError) as err:
        list(reader)
    assert err.value.line == 4 and err.value.path == str(path)
    assert str(err.value).startswith(f"{path}:4: ") and fragment in str(err.value)


def test_missing_bed_is_input_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        list(read_bed(tmp_path / "missing.bed"))


def test_read_narrowpeak(tmp_path):
    path = tmp_path / "p.narrowPeak"
    path.write_text("chr1\t100\t300\tp1\t0\t.\t5.5\t10.2\t8.1\t120\n"
                    "chr1\t400\t450\tp2\t0\t.\t2\t-1\t-1\t-1\n")
    peaks = list(read_narrowpeak(path))
    assert (peaks[0].signal_value, peaks[0].p_value, peaks[0].q_value, peaks[0].peak) == (5.5, 10.2, 8.1, 120)
    assert peaks[0].start + peaks[0].peak == 220  # summit position
    assert peaks[1].peak == -1 and peaks[1].line == 2
    bad = tmp_path / "bad.narrowPeak"
    bad.write_text("chr1\t100\t300\tp1\t0\t.\t5.5\t10.2\t8.1\n")
    with pytest.raises(InputError, match="10 columns") as err:
        list(read_narrowpeak(bad))
    assert err.value.line == 1


def test_write_bed_round_trips(tmp_path):
    src = tmp_path / "a.bed"
    src.write_text(BED)
    out = tmp_path / "out" / "b.bed"
    assert write_bed(out, read_bed(src)) == 5
    assert out.read_text().splitlines() == [
        "chr1\t10\t20", "chr1\t30\t45\tgeneA", "chr2\t5\t9\tgeneB\t900\t-",
        "chrM\t0\t16\tpeak\t12.5\t.\t2\t14\t255,0,0",
        "chr1\t0\t100\ttx\t0\t+\t10\t90\t0\t2\t10,20,\t0,80,"]
    assert [p.name for p in out.parent.iterdir()] == ["b.bed"]  # no temporary left behind
