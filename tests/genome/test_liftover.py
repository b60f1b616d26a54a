import gzip

import pytest

from genomics_bigbird.errors import InputError
from genomics_bigbird.genome.intervals import BedRecord
from genomics_bigbird.genome.liftover import ChainLifter, liftover_bed

# Hand-written UCSC chains (source = old assembly, target = new):
#  chrA [0,100) -> chrA [100,200); source gap [100,150) deleted; target gap of 70;
#       chrA [150,300) -> chrA [270,420).
#  chrB [0,200) -> chrC on the minus strand, target [100,300) counted on chrC's reverse strand
#       (chrC length 800), i.e. chrB position p -> chrC + strand position 699 - p.
#  chrD [0,100) -> chrE [0,100) and chrD [100,200) -> chrF [0,100).
CHAIN = """chain 1000 chrA 1000 + 0 300 chrA 1200 + 100 420 1
100\t50\t70
150

chain 900 chrB 500 + 0 200 chrC 800 - 100 300 2
200

chain 800 chrD 300 + 0 100 chrE 500 + 0 100 3
100

chain 700 chrD 300 + 100 200 chrF 500 + 0 100 4
100
"""


@pytest.fixture
def chain(tmp_path):
    path = tmp_path / "old_to_new.over.chain"
    path.write_text(CHAIN)
    return path


RECORDS = [
    BedRecord("chrA", 10, 20, "plain", strand="+", line=1),       # -> chrA [110, 120) +
    BedRecord("chrA", 160, 200, "second_block", strand="-", line=2),  # -> chrA [280, 320) -
    BedRecord("chrA", 110, 140, "in_gap", strand="+", line=3),
    BedRecord("chrA", 90, 120, "half_gap", strand="+", line=4),
    BedRecord("chrA", 50, 200, "spans_insertion", strand="+", line=5),  # lifted length 170 vs 150
    BedRecord("chrZ", 0, 10, "unknown", strand="+", line=6),
    BedRecord("chrB", 10, 20, "flipped", strand="+", line=7),       # -> chrC [680, 690) -
    BedRecord("chrB", 40, 41, "tss", strand="-", line=8),           # -> chrC [659, 660) +
    BedRecord("chrD", 90, 110, "split", strand="+", line=9),
    BedRecord("A", 0, 1, "alias", line=10),                          # `A` resolves to the chain's chrA
]


def test_liftover_counts_and_coordinates(chain):
    result = liftover_bed(chain, RECORDS)
    assert result.n_input == len(RECORDS) == len(result.mapped) + len(result.unmapped)
    mapped = {r.name: (r.chrom, r.start, r.end, r.strand) for r in result.mapped}
    assert mapped == {
        "plain": ("chrA", 110, 120, "+"),
        "second_block": ("chrA", 280, 320, "-"),
        "flipped": ("chrC", 680, 690, "-"),
        "tss": ("chrC", 659, 660, "+"),
        "alias": ("chrA", 100, 101, "."),
    }
    assert [r.name for r in result.mapped] == ["plain", "second_block", "flipped", "tss", "alias"]
    reasons = {u.record.name: u.reason for u in result.unmapped}
    assert reasons == {"in_gap": "deleted_in_new", "half_gap": "partially_deleted_in_new",
                       "spans_insertion": "length_changed", "unknown": "unknown_chromosome",
                       "split": "split_in_new"}
    assert result.unmapped[0].record == RECORDS[2]  # unmapped keep their original coordinates
    assert result.n_strand_flipped == 2
    assert result.reasons()["deleted_in_new"] == 1


def test_length_tolerance_is_configurable(chain):
    lifter = ChainLifter(chain, length_tolerance=0.2)  # 170 vs 150 bp is within 20%
    lifted = lifter.lift(RECORDS[4])
    assert (lifted.chrom, lifted.start, lifted.end) == ("chrA", 150, 320)


def test_gzip_chain_and_bad_chain(chain, tmp_path):
    gz = tmp_path / "chain.gz"
    gz.write_bytes(gzip.compress(chain.read_bytes()))
    assert ChainLifter(gz).lift(RECORDS[0]).start == 110
    bad = tmp_path / "bad.chain"
    bad.write_text("chain 1000 chrA 1000 + 0 300 chrA 1200 + 100 420 1\n100\t50\t70\n999\n")
    with pytest.raises(InputError, match="not a valid UCSC chain"):
        ChainLifter(bad)
    with pytest.raises(InputError, match="not found"):
        ChainLifter(tmp_path / "missing.chain")
