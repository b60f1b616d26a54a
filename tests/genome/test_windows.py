import random

import pytest

from genomics_bigbird.errors import InputError
from genomics_bigbird.genome import ReferenceGenome
from genomics_bigbird.genome.intervals import BedRecord
from genomics_bigbird.genome.windows import centered_window, extract_windows, tss_window

CHR1 = "".join(random.Random(7).choice("ACGT") for _ in range(60))
CHR2 = "ttgacNNRYAGGCTA"  # soft-masked and IUPAC bases
PAIR = {"A": "T", "C": "G", "G": "C", "T": "A", "N": "N"}


def rc_by_hand(seq: str) -> str:
    return "".join(PAIR[base] for base in reversed(seq))


@pytest.fixture
def genome(tmp_path):
    path = tmp_path / "ref.fa"
    path.write_text(f">chr1\n{CHR1[:25]}\n{CHR1[25:50]}\n{CHR1[50:]}\n>chr2\n{CHR2}\n")
    return ReferenceGenome(path)


def test_centered_window_arithmetic():
    assert centered_window(BedRecord("chr1", 10, 20), 6) == (12, 18)  # center 15
    assert centered_window(BedRecord("chr1", 10, 21), 6) == (12, 18)  # center 15 (floor)
    assert centered_window(BedRecord("chr1", 10, 20), 5) == (13, 18)  # odd width: 2 left of center, 3 right
    assert centered_window(BedRecord("chr1", 0, 0), 8000) == (-4000, 4000)


def test_tss_window_arithmetic():
    plus, minus = BedRecord("chr1", 20, 30, strand="+"), BedRecord("chr1", 20, 30, strand="-")
    assert tss_window(plus, 5000, 3000) == (-4980, 3020)
    assert tss_window(minus, 5, 3) == (27, 35)  # TSS 29: 3 downstream bases are 27, 28 (and 29 itself)
    with pytest.raises(InputError, match="TSS anchoring"):
        tss_window(BedRecord("chr1", 20, 30, strand=".", line=3), 5, 3)


def test_centered_windows_both_strands_in_input_order(genome):
    records = [BedRecord("chr1", 10, 20, "a", strand="+"), BedRecord("chr1", 10, 20, "b", strand="-"),
               BedRecord("2", 3, 9, "c")]
    windows = list(extract_windows(genome, records, width=8))
    assert [w.name for w in windows] == ["a", "b", "c"]
    assert windows[0].sequence == CHR1[11:19] and (windows[0].start, windows[0].end) == (11, 19)
    assert windows[1].sequence == rc_by_hand(CHR1[11:19]) and windows[1].strand == "-"
    assert windows[2].sequence == "GACNNNNA" and windows[2].chrom == "2"  # CHR2[2:10]: upper case, IUPAC -> N
    assert [w.n_padded for w in windows] == [0, 0, 0]


def test_windows_at_contig_ends_are_padded_and_counted(genome):
    records = [BedRecord("chr1", 0, 2, "left"), BedRecord("chr1", 58, 60, "right", strand="-"),
               BedRecord("chr2", 0, 15, "whole")]
    left, right, whole = extract_windows(genome, records, width=10)
    assert (left.start, left.end, left.sequence, left.n_padded) == (-4, 6, "NNNN" + CHR1[:6], 4)
    assert (right.start, right.end, right.n_padded) == (54, 64, 4)
    assert right.sequence == rc_by_hand(CHR1[54:] + "NNNN") == "NNNN" + rc_by_hand(CHR1[54:])
    assert len(whole.sequence) == 10 and whole.n_padded == 0


def test_tss_anchor_index_on_both_strands(genome):
    plus = BedRecord("chr1", 20, 30, "p", strand="+")
    minus = BedRecord("chr1", 20, 30, "m", strand="-")
    wp, wm = extract_windows(genome, [plus, minus], anchor="tss", upstream=5, downstream=3)
    assert wp.sequence == CHR1[15:23] and wp.sequence[5] == CHR1[20]
    assert wm.sequence == rc_by_hand(CHR1[27:35]) and wm.sequence[5] == PAIR[CHR1[29]]
    # upstream on `-` is to the right in genome coordinates: the base 5' of the TSS is CHR1[30]
    assert wm.sequence[4] == PAIR[CHR1[30]]


def test_tss_window_past_contig_end_padded(genome):
    minus = BedRecord("chr1", 55, 59, "m", strand="-")  # TSS 58; upstream runs to 64, past the end (60)
    (window,) = extract_windows(genome, [minus], anchor="tss", upstream=6, downstream=2)
    assert (window.start, window.end, window.n_padded) == (57, 65, 5)
    assert window.sequence == "NNNNN" + rc_by_hand(CHR1[57:60]) and window.sequence[6] == PAIR[CHR1[58]]


def test_unknown_contig_carries_the_bed_line(genome):
    with pytest.raises(InputError) as err:
        list(extract_windows(genome, [BedRecord("chr3", 0, 5, line=7)], width=4))
    assert err.value.line == 7 and "unknown contig 'chr3'" in str(err.value)
