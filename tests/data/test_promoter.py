"""Promoter data set: DeePromoter negatives, TSS records, liftover accounting, TSS-anchored windows."""
from collections import Counter

import numpy as np
import pytest

from genomics_bigbird.data.promoter import (
    contig_split, deepromoter_negative, lift_promoters, piece_bounds, tss_record)
from genomics_bigbird.errors import InputError
from genomics_bigbird.genome import ReferenceGenome
from genomics_bigbird.genome.intervals import BedRecord, read_bed
from genomics_bigbird.genome.liftover import ChainLifter
from genomics_bigbird.genome.windows import extract_windows


def random_window(seed, length=8000):
    return "".join(np.random.default_rng(seed).choice(list("ACGT"), length))


def pieces(sequence):
    bounds = piece_bounds(len(sequence))
    return [sequence[bounds[i]:bounds[i + 1]] for i in range(20)]


@pytest.mark.parametrize("seed", range(5))
def test_replace_keeps_exactly_8_of_20_pieces(seed):
    positive = random_window(100 + seed)
    negative, changed = deepromoter_negative(positive, np.random.default_rng(seed), "replace")
    assert len(negative) == 8000 and set(negative) <= set("ACGT")
    kept = [i for i, (p, n) in enumerate(zip(pieces(positive), pieces(negative))) if p == n]
    assert len(kept) == 8 and len(changed) == 12
    assert sorted(kept + list(changed)) == list(range(20))


def test_shuffle_permutes_the_12_chosen_pieces():
    positive = random_window(7)
    negative, changed = deepromoter_negative(positive, np.random.default_rng(3), "shuffle")
    before, after = pieces(positive), pieces(negative)
    unchanged = [i for i in range(20) if i not in set(changed)]
    assert len(unchanged) == 8 and all(before[i] == after[i] for i in unchanged)
    assert Counter(before[i] for i in changed) == Counter(after[i] for i in changed)
    assert negative != positive


def test_negatives_are_reproducible_from_the_seed():
    positive = random_window(1)
    first = deepromoter_negative(positive, np.random.default_rng(42))[0]
    assert first == deepromoter_negative(positive, np.random.default_rng(42))[0]
    assert first != deepromoter_negative(positive, np.random.default_rng(43))[0]


def test_unequal_lengths_are_cut_into_near_equal_pieces():
    assert np.diff(piece_bounds(8010)).tolist().count(401) == 10
    with pytest.raises(ValueError, match="cannot be cut"):
        piece_bounds(19)


def test_tss_of_epdnew_style_records():
    # UCSC's EPDnew track: 60 bp, thick part TSS..TSS+10 (hg38 sample rows of epdNewPromoter).
    plus = BedRecord("chr1", 166839300, 166839360, "POGK_2", 900, "+", ("166839349", "166839360"))
    minus = BedRecord("chr1", 166166977, 166167037, "FAM78B_1", 900, "-", ("166166977", "166166988"))
    assert (tss_record(plus).start, tss_record(minus).start) == (166839349, 166166987)
    # EPD's own 6-column BED: the same 60 bp records without thick columns.
    six = [BedRecord(r.chrom, r.start, r.end, r.name, r.score, r.strand) for r in (plus, minus)]
    assert [tss_record(r).start for r in six] == [166839349, 166166987]
    one_bp = BedRecord("chr1", 500, 501, "t", 0, "-")
    assert tss_record(one_bp).start == 500 and tss_record(one_bp).end == 501
    with pytest.raises(InputError, match="need '\\+' or '-'"):
        tss_record(BedRecord("chr1", 5, 6, "x", 0, "."))


def test_contig_split_accepts_both_spellings():
    assert contig_split("chr8", ["8", "chr9"], ["chr7"]) == "test"
    assert contig_split("9", ["8", "chr9"], ["chr7"]) == "test"
    assert contig_split("7", ["8"], ["chr7"]) == "valid"
    assert contig_split("chr1", ["8"], ["chr7"]) == "train"


def test_liftover_accounts_for_every_promoter(sim_genome):
    import json

    original = {r.name: r for r in read_bed(sim_genome.promoters_bed)}
    other = [tss_record(r) for r in read_bed(sim_genome.promoters_other_bed)]
    lifted = lift_promoters(other, ChainLifter(sim_genome.chain))
    summary = json.loads(sim_genome.summary.read_text())
    assert lifted.n_input == len(other) == sim_genome.n_promoters + sim_genome.n_unmapped_promoters
    assert sorted(u.record.name for u in lifted.unmapped) == sorted(summary["unmapped_promoters"])
    assert len(lifted.mapped) == sim_genome.n_promoters
    for record in lifted.mapped:  # each TSS lands on its base and strand in the simulated build
        truth = original[record.name]
        assert (record.chrom, record.start, record.end, record.strand) == \
            (truth.chrom, truth.start, truth.end, truth.strand)
    # chr7 is reverse-complemented between the builds: exactly its promoters flip strand.
    assert sorted(r.name for r in lifted.strand_flipped) == sorted(r.name for r in original.values()
                                                                    if r.chrom == "chr7")
    assert lifted.strand_flipped


def test_tss_sits_at_index_5000_on_both_strands(sim_genome):
    import json

    boxes = json.loads(sim_genome.summary.read_text())["promoter_boxes"]
    records = [tss_record(r) for r in read_bed(sim_genome.promoters_bed)]
    windows = list(extract_windows(ReferenceGenome(sim_genome.fasta), records, anchor="tss",
                                   upstream=5000, downstream=3000))
    assert {w.strand for w in windows} == {"+", "-"}
    tata = 5000 + boxes["tata_offset"]
    inr = 5000 + boxes["inr_offset"]
    for window in windows:
        assert len(window.sequence) == 8000
        assert window.sequence[tata:tata + len(boxes["tata"])] == boxes["tata"], window.name
        assert window.sequence[inr:inr + len(boxes["inr"])] == boxes["inr"], window.name
