from genomics_bigbird.genome import normalize, reverse_complement
from genomics_bigbird.genome.sequence import normalize_reverse_complement


def test_reverse_complement_by_hand():
    assert reverse_complement("AACGTT") == "AACGTT"  # palindrome
    assert reverse_complement("ACCGGGTTTN") == "NAAACCCGGT"
    assert reverse_complement("") == ""


def test_reverse_complement_keeps_case_and_iupac():
    assert reverse_complement("acgTN") == "NAcgt"
    # R=A/G <-> Y=C/T, K=G/T <-> M=A/C, S and W self-complementary, B<->V, D<->H
    assert reverse_complement("RYKMSWBVDH") == "DHBVWSKMRY"
    assert reverse_complement("ry") == "ry"


def test_reverse_complement_is_an_involution():
    seq = "ACGTacgtNnRYKMSWBDHV"
    assert reverse_complement(reverse_complement(seq)) == seq


def test_normalize_uppercases_soft_mask_and_maps_iupac_to_n():
    assert normalize("acgtACGT") == "ACGTACGT"
    assert normalize("ARYKMSWBDHVNn") == "ANNNNNNNNNNNN"
    assert normalize("") == ""


def test_normalize_reverse_complement_matches_the_two_steps():
    seq = "aCgTRnGGt"
    assert normalize_reverse_complement(seq) == reverse_complement(normalize(seq)) == "ACCNNACGT"
