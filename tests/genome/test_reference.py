import logging
import pickle

import pysam
import pytest

from genomics_bigbird.errors import InputError
from genomics_bigbird.genome import ReferenceGenome

# Two contigs written by hand; expected windows are slices of these strings.
CHR1 = "ACGTACGGTTACCAGTNNNNacgtRYacgtTTGACCA" * 3
MT = "GATTACAGATTACA"
COMPLEMENT = str.maketrans("ACGTN", "TGCAN")


def rc_by_hand(seq: str) -> str:
    return seq.translate(COMPLEMENT)[::-1]


def upper_n(seq: str) -> str:
    return "".join(base if base in "ACGT" else "N" for base in seq.upper())


def write_fasta(path, records, width=10):
    with open(path, "w") as handle:
        for name, seq in records:
            handle.write(f">{name} description\n")
            for i in range(0, len(seq), width):
                handle.write(seq[i:i + width] + "\n")
    return path


@pytest.fixture
def fasta(tmp_path):
    return write_fasta(tmp_path / "ref.fa", [("chr1", CHR1), ("chrM", MT)])


def test_contigs_in_file_order_and_index_built(fasta, caplog):
    with caplog.at_level(logging.INFO):
        genome = ReferenceGenome(fasta)
    assert genome.contigs == {"chr1": len(CHR1), "chrM": len(MT)}
    assert list(genome.contigs) == ["chr1", "chrM"]
    assert (fasta.parent / "ref.fa.fai").exists()
    assert "built index" in caplog.text


def test_fetch_both_strands_upper_case_and_iupac_to_n(fasta):
    genome = ReferenceGenome(fasta)
    assert genome.fetch("chr1", 0, 4) == "ACGT"
    assert genome.fetch("chr1", 16, 30) == "NNNNACGTNNACGT"  # soft mask upper-cased, R/Y -> N
    assert genome.fetch("chr1", 5, 70) == upper_n(CHR1[5:70])
    assert genome.fetch("chr1", 5, 70, strand="-") == rc_by_hand(upper_n(CHR1[5:70]))
    assert genome.fetch("chr1", 0, 3, strand="-") == "CGT"
    assert genome.fetch("chr1", 7, 7) == ""


def test_fetch_outside_contig_is_value_error(fasta):
    genome = ReferenceGenome(fasta)
    assert genome.fetch("chrM", 0, len(MT)) == MT
    for start, end in [(-1, 5), (0, len(MT) + 1), (6, 5)]:
        with pytest.raises(ValueError):
            genome.fetch("chrM", start, end)


def test_aliases_resolve_both_ways(fasta):
    genome = ReferenceGenome(fasta)
    assert genome.resolve("1") == "chr1"
    assert genome.resolve("MT") == genome.resolve("M") == genome.resolve("chrM") == "chrM"
    assert genome.fetch("MT", 0, 7) == "GATTACA"
    assert genome.fetch("1", 0, 4, strand="-") == "ACGT"


def test_alias_from_unprefixed_fasta(tmp_path):
    genome = ReferenceGenome(write_fasta(tmp_path / "ensembl.fa", [("1", CHR1), ("MT", MT)]))
    assert genome.resolve("chr1") == "1"
    assert genome.resolve("chrM") == "MT"
    assert genome.fetch("chrM", 7, 14) == "GATTACA"


def test_unknown_contig_names_the_closest(fasta):
    genome = ReferenceGenome(fasta)
    with pytest.raises(InputError) as err:
        genome.fetch("chr11", 0, 10)
    message = str(err.value)
    assert "unknown contig 'chr11'" in message and "closest: chr1" in message
    assert message.startswith(str(fasta))


def test_fetch_padded_counts_padding_at_both_ends(fasta):
    genome = ReferenceGenome(fasta)
    n = len(MT)
    assert genome.fetch_padded_count("chrM", -3, 4) == ("NNNGATT", 3)
    assert genome.fetch_padded_count("chrM", n - 3, n + 2) == ("ACANN", 2)
    assert genome.fetch_padded_count("chrM", -2, n + 1) == ("NN" + MT + "N", 3)
    assert genome.fetch_padded_count("chrM", -3, 4, strand="-") == (rc_by_hand("NNNGATT"), 3)
    assert genome.fetch_padded_count("chrM", n + 5, n + 9) == ("NNNN", 4)
    assert genome.fetch_padded("chrM", 2, 6) == "TTAC"
    with pytest.raises(ValueError):
        genome.fetch_padded("chrM", 5, 2)


def test_bgzip_fasta_reads_the_same_and_warns(fasta, tmp_path, caplog):
    bgz = tmp_path / "ref.fa.gz"
    pysam.tabix_compress(str(fasta), str(bgz))
    with caplog.at_level(logging.INFO):
        genome = ReferenceGenome(bgz)
    assert "25x slower" in caplog.text
    assert (tmp_path / "ref.fa.gz.gzi").exists() and (tmp_path / "ref.fa.gz.fai").exists()
    assert genome.fetch("chr1", 5, 70, strand="-") == rc_by_hand(upper_n(CHR1[5:70]))
    assert genome.fetch("MT", 0, 7) == "GATTACA"


def test_plain_gzip_fasta_is_input_error_with_fix(fasta, tmp_path):
    import gzip

    gz = tmp_path / "plain.fa.gz"
    gz.write_bytes(gzip.compress(fasta.read_bytes()))
    with pytest.raises(InputError, match="bgzip"):
        ReferenceGenome(gz)


def test_missing_file_is_input_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        ReferenceGenome(tmp_path / "nope.fa")


def test_pickle_reopens_and_context_manager_closes(fasta):
    with ReferenceGenome(fasta) as genome:
        genome.fetch("chr1", 0, 4)
        copy = pickle.loads(pickle.dumps(genome))
    assert copy.fetch("chr1", 0, 8) == "ACGTACGG"
    assert genome.fetch("chr1", 0, 4) == "ACGT"  # re-opens after close


def test_forked_child_reopens_its_own_handle(fasta):
    import multiprocessing

    genome = ReferenceGenome(fasta)
    assert genome.fetch("chr1", 0, 4) == "ACGT"  # parent handle open before the fork
    ctx = multiprocessing.get_context("fork")
    parent_end, child_end = ctx.Pipe()

    def child():
        child_end.send(genome.fetch("chrM", 0, 7, strand="-"))

    process = ctx.Process(target=child)
    process.start()
    process.join(timeout=30)
    assert process.exitcode == 0 and parent_end.recv() == rc_by_hand("GATTACA")
    assert genome.fetch("chr1", 4, 8) == "ACGG"  # the parent's handle still works
