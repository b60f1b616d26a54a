"""PeakIndex: peak files as merged intervals, bins labelled a block at a time, the genome tiles peaks touch."""
import numpy as np

from genomics_bigbird.data.peaks import PeakIndex
from genomics_bigbird.genome import ReferenceGenome
from genomics_bigbird.genome.intervals import BedRecord


def test_tiles_and_blocks_equal_a_brute_force_over_every_tile(tmp_path):
    rng = np.random.default_rng(5)
    lengths = {"chr1": 5_000, "chr2": 2_150}  # chr2 ends inside its 11th tile: that partial tile has no label
    (tmp_path / "g.fa").write_text("".join(f">{n}\n{'A' * size}\n" for n, size in lengths.items()))
    genome = ReferenceGenome(tmp_path / "g.fa")
    peaks = {}
    for feature in ("a", "b", "c"):
        records = []
        for _ in range(12):
            chrom = "chr1" if rng.random() < 0.7 else "2"  # "2" is chr2: contig names resolve
            start = int(rng.integers(0, lengths["chr1" if chrom == "chr1" else "chr2"] - 50))
            records.append(BedRecord(chrom, start, start + int(rng.integers(20, 400))))
        peaks[feature] = records
    index = PeakIndex.from_records(peaks, ["a", "b", "c"])

    tiles = [BedRecord(name, s, s + 200) for name, size in lengths.items() for s in range(0, size - 199, 200)]

    def touched(tile):
        return any((p.chrom.lstrip("chr") == tile.chrom.lstrip("chr")) and p.start < tile.end and p.end > tile.start
                   for records in peaks.values() for p in records)

    expected = [t for t in tiles if touched(t)]
    candidates = list(index.candidate_bins(genome))
    assert [(b.chrom, b.start) for b in candidates] == [(t.chrom, t.start) for t in expected]
    assert index.count_candidate_bins(genome) == len(expected)

    whole = index.labels(candidates)  # brute force: covered bases of each tile, feature by feature
    for row, tile in enumerate(candidates):
        for column, feature in enumerate("abc"):
            covered = np.zeros(200, bool)
            for p in peaks[feature]:
                if p.chrom.lstrip("chr") == tile.chrom.lstrip("chr"):
                    covered[max(p.start, tile.start) - tile.start:max(min(p.end, tile.end) - tile.start, 0)] = True
            assert whole[row, column] == (covered.sum() >= 100)
    blocks = list(index.labeled_blocks(candidates, block=7))
    assert max(len(b) for b, _, _ in blocks) <= 7 and sum(read for _, _, read in blocks) == len(candidates)
    np.testing.assert_array_equal(np.concatenate([labels for _, labels, _ in blocks]), whole)
    positive = list(index.labeled_blocks(candidates, block=7, positive_only=True))
    assert [b for chunk, _, _ in positive for b in chunk] == [b for b, row in zip(candidates, whole) if row.any()]
    assert sum(read for _, _, read in positive) == len(candidates)
