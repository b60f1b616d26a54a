"""The records real VCFs contain: telomeres, breakends, `*`, empty ALTs, malformed lines, htslib's noise."""
import random

import pysam
import pytest

from genomics_bigbird.errors import InputError
from genomics_bigbird.genome import ReferenceGenome
from genomics_bigbird.genome.variants import STATUSES, VariantSource, read_variant_windows

W = 20
rng = random.Random(3)
CHR1 = "".join(rng.choice("ACGT") for _ in range(200))
HEADER = ["##fileformat=VCFv4.2", "##contig=<ID=chr1,length=200>",
          '##ALT=<ID=DEL,Description="Deletion">', "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]


def write_vcf(path, records, header=HEADER):
    path.write_text("\n".join(header + ["\t".join(map(str, r)) for r in records]) + "\n")
    return path


@pytest.fixture
def genome(tmp_path):
    fasta = tmp_path / "g.fa"
    fasta.write_text(f">chr1\n{CHR1}\n")
    with ReferenceGenome(fasta) as reference:
        yield reference


def rows(path, genome, **options):
    return [(r.id, r.alt, r.status) for r in read_variant_windows(path, genome, W, **options)]


def test_telomere_records_get_a_row_with_status_telomere(genome, tmp_path):
    # VCF 4.2 section 1.6.1: POS 0 and contig length + 1 mark the telomeres
    vcf = write_vcf(tmp_path / "tel.vcf", [
        ("chr1", 0, "left", "N", ".[chr1:1[", ".", "PASS", "."),
        ("chr1", 50, "snv", CHR1[49], "A" if CHR1[49] != "A" else "C", ".", "PASS", "."),
        ("chr1", 201, "right", "N", "]chr1:200].", ".", "PASS", ".")])
    assert rows(vcf, genome) == [("left", ".[chr1:1[", "telomere"), ("snv", "A" if CHR1[49] != "A" else "C", "ok"),
                                 ("right", "]chr1:200].", "telomere")]


def test_breakend_and_symbolic_alleles_are_copied_exactly_sequence_alleles_upper_cased(genome, tmp_path):
    vcf = write_vcf(tmp_path / "bnd.vcf", [
        ("chr1", 40, "bnd", CHR1[39], f"{CHR1[39]}[chr7_random:100[", ".", "PASS", "."),
        ("chr1", 41, "sym", CHR1[40], "<DEL>", ".", "PASS", "."),
        ("chr1", 42, "lower", CHR1[41].lower(), "t" if CHR1[41] != "T" else "g", ".", "PASS", ".")])
    got = list(read_variant_windows(vcf, genome, W))
    assert [r.alt for r in got] == [f"{CHR1[39]}[chr7_random:100[", "<DEL>", "T" if CHR1[41] != "T" else "G"]
    assert [r.status for r in got] == ["breakend", "symbolic_alt", "ok"] and got[2].ref == CHR1[41]


def test_spanning_deletion_and_empty_alleles_have_their_own_status(genome, tmp_path):
    vcf = write_vcf(tmp_path / "star.vcf", [
        ("chr1", 60, "star", CHR1[59], "*", ".", "PASS", "."),
        ("chr1", 61, "empty", CHR1[60], "", ".", "PASS", "."),
        ("chr1", 62, "trailing", CHR1[61], "G,", ".", "PASS", "."),
        ("chr1", 63, "dot", CHR1[62], ".", ".", "PASS", ".")])
    got = rows(vcf, genome)
    assert [status for _, _, status in got] == [
        "spanning_deletion", "no_alt", "ok" if CHR1[61] != "G" else "ref_mismatch", "no_alt", "no_alt"]
    assert {status for _, _, status in got} <= set(STATUSES)


def test_htslib_prints_nothing_for_unindexed_gz_and_undeclared_contigs(genome, tmp_path, capfd):
    plain = write_vcf(tmp_path / "quiet.vcf", [
        ("chr1", 70, "a", CHR1[69], "A", ".", "PASS", "."), ("chrZ", 5, "b", "A", "G", ".", "PASS", ".")])
    gz = tmp_path / "quiet.vcf.gz"
    pysam.tabix_compress(str(plain), str(gz))  # bgzip without an index: htslib looks for one and complains
    got = rows(gz, genome)
    assert [status for _, _, status in got][1] == "unknown_contig"
    captured = capfd.readouterr()
    assert "[E::" not in captured.err and "[W::" not in captured.err, captured.err
    assert pysam.set_verbosity(pysam.set_verbosity(3)) == 3  # htslib's level is restored afterwards


@pytest.mark.parametrize("line, reason", [
    ("chr1\t80\tx\tA", "it has 4 tab-separated columns, a record needs at least 8"),
    ("chr1 80 x A G . PASS .", "it has 1 tab-separated column, a record needs at least 8: CHROM POS ID REF ALT "
                               "QUAL FILTER INFO (are the columns separated by spaces instead of tabs?)"),
    ("chr1\teighty\tx\tA\tG\t.\tPASS\t.", "POS 'eighty' is not a whole number"),
])
def test_malformed_line_message_says_what_is_wrong_and_shows_the_line_with_its_tabs(genome, tmp_path, line, reason):
    vcf = tmp_path / "bad.vcf"
    vcf.write_text("\n".join(HEADER + [f"chr1\t10\tok\t{CHR1[9]}\tA\t.\tPASS\t.", line]) + "\n")
    with pytest.raises(InputError) as err:
        list(read_variant_windows(vcf, genome, W))
    message = str(err.value)
    assert message.startswith(f"{vcf}:6: malformed VCF record, {reason}")
    assert message.endswith(f": {line}") and "\\t" not in message and len(message.splitlines()) == 1


def test_record_count_comes_from_the_index_or_one_pass(genome, tmp_path):
    records = [("chr1", p, f"v{p}", CHR1[p - 1], "N", ".", "PASS", ".") for p in range(30, 130, 10)]
    plain = write_vcf(tmp_path / "count.vcf", records)
    bed = tmp_path / "keep.bed"
    bed.write_text("chr1\t40\t60\n")
    assert VariantSource(plain, genome, W).count_records() == 10
    assert VariantSource(plain, genome, W, bed=bed).count_records() == 10  # records read, before the filter
    indexed = pysam.tabix_index(str(plain), preset="vcf", force=True, keep_original=True)
    assert VariantSource(indexed, genome, W).count_records() == 10
    assert VariantSource(indexed, genome, W, region="chr1:45-100").count_records() == 6


def test_groups_split_among_parts_cut_windows_only_for_their_own(genome, tmp_path):
    def two_alts(ref):
        return ",".join([b for b in "ACGT" if b != ref][:2])
    records = [("chr1", p, f"v{p}", CHR1[p - 1], two_alts(CHR1[p - 1]), ".", "PASS", ".") for p in range(20, 180, 7)]
    records.insert(3, ("chrZ", 5, "unknown", "A", "G", ".", "PASS", "."))
    vcf = write_vcf(tmp_path / "groups.vcf", records)
    source = VariantSource(vcf, genome, W)
    whole = list(source.groups(5))
    assert [v for g in whole for v in g.variants] == list(source)  # windows and statuses as streamed
    assert all(sum(v.scored for v in g.variants) == 5 for g in whole[:-1])
    assert [g.progress for g in whole][-1] == len(records)
    parts = [list(source.groups(5, part, 3)) for part in range(3)]
    assert [g.variants for g in parts[1]] == [g.variants for g in whole[1::3]]
    assert sum(len(p) for p in parts) == len(whole)
