"""VCF -> ref/alt windows, checked against windows cut by hand from the FASTA string."""
import random

import pysam
import pytest

from genomics_bigbird.errors import InputError
from genomics_bigbird.genome import ReferenceGenome
from genomics_bigbird.genome.variants import VariantSource, allele_kind, parse_region, read_variant_windows

W = 24  # window width; the variant's first REF base sits at index W // 2 = 12
rng = random.Random(7)
CHR1 = "".join(rng.choice("ACGT") for _ in range(300))
CHR2 = "".join(rng.choice("ACGT") for _ in range(150))


def other(base: str) -> str:
    return "C" if base != "C" else "T"


# (CHROM, POS, ID, REF, ALT); POS 1-based, so the REF of POS p is CHR1[p-1 : p-1+len(REF)].
RECORDS = [
    ("chr1", 100, "snv", CHR1[99], other(CHR1[99])),
    ("chr1", 120, "mismatch", other(CHR1[119]), "A"),
    ("chr1", 130, "symbolic", CHR1[129], "<DEL>"),
    ("chr1", 140, "bnd", CHR1[139], CHR1[139] + "]chr2:10]"),
    ("chr1", 150, "ins", CHR1[149], CHR1[149] + "TTT"),
    ("chr1", 200, "del", CHR1[199:203], CHR1[199]),
    ("chr1", 250, "multi", CHR1[249], f"{other(CHR1[249])},G,*"),
    ("chr2", 3, "start", CHR2[2], other(CHR2[2])),
    ("chr2", 20, "noalt", CHR2[19], "."),
    ("chr2", 145, "end", CHR2[144], other(CHR2[144])),
    ("chr5", 10, "unknown", "A", "G"),
]


def vcf_text(records=RECORDS) -> str:
    header = ["##fileformat=VCFv4.2", "##contig=<ID=chr1,length=300>", "##contig=<ID=chr2,length=150>",
              "##contig=<ID=chr5,length=1000>",
              '##INFO=<ID=END,Number=1,Type=Integer,Description="End position">',
              '##ALT=<ID=DEL,Description="Deletion">', "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    body = ["\t".join([c, str(p), i, r, a, ".", "PASS", "."]) for c, p, i, r, a in records]
    return "\n".join(header + body) + "\n"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("variants")
    fasta = root / "toy.fa"
    fasta.write_text(f">chr1\n{CHR1}\n>chr2\n{CHR2}\n")
    vcf = root / "toy.vcf"
    vcf.write_text(vcf_text())
    return ReferenceGenome(fasta), vcf


def by_id(rows):
    return {(r.id, r.allele): r for r in rows}


def test_every_record_once_per_alt_in_file_order(files):
    genome, vcf = files
    rows = list(read_variant_windows(vcf, genome, W))
    assert [(r.id, r.allele) for r in rows] == [
        ("snv", 1), ("mismatch", 1), ("symbolic", 1), ("bnd", 1), ("ins", 1), ("del", 1),
        ("multi", 1), ("multi", 2), ("multi", 3), ("start", 1), ("noalt", 0), ("end", 1), ("unknown", 1)]
    assert {r.id: r.status for r in rows if r.allele <= 1} == {
        "snv": "ok", "mismatch": "ref_mismatch", "symbolic": "symbolic_alt", "bnd": "breakend",
        "ins": "ok", "del": "ok", "multi": "ok", "start": "padded", "noalt": "no_alt",
        "end": "padded", "unknown": "unknown_contig"}
    assert [r.record_index for r in rows] == [0, 1, 2, 3, 4, 5, 6, 6, 6, 7, 8, 9, 10]
    unscored = [r for r in rows if not r.scored]
    assert all(r.ref_seq == r.alt_seq == "" for r in unscored)


def test_snv_insertion_deletion_windows_by_hand(files):
    genome, vcf = files
    rows = by_id(read_variant_windows(vcf, genome, W))
    snv = rows["snv", 1]
    assert snv.pos == 100 and snv.ref_seq == CHR1[87:111]
    assert snv.alt_seq == CHR1[87:99] + other(CHR1[99]) + CHR1[100:111]
    assert snv.ref_seq[12] == CHR1[99] and len(snv.alt_seq) == W and snv.n_padded == 0

    ins = rows["ins", 1]  # ALT = base + TTT: 3 bases pushed out of the right end
    assert ins.ref_seq == CHR1[137:161]
    assert ins.alt_seq == CHR1[137:149] + CHR1[149] + "TTT" + CHR1[150:158]

    deletion = rows["del", 1]  # REF 4 bases -> 1: the right flank is filled from further right
    assert deletion.ref_seq == CHR1[187:211]
    assert deletion.alt_seq == CHR1[187:199] + CHR1[199] + CHR1[203:214]
    assert len(ins.alt_seq) == len(deletion.alt_seq) == W


def test_multiallelic_gives_one_row_per_alt(files):
    genome, vcf = files
    rows = by_id(read_variant_windows(vcf, genome, W))
    first, second, star = rows["multi", 1], rows["multi", 2], rows["multi", 3]
    assert (first.alt, second.alt, star.alt) == (other(CHR1[249]), "G", "*")
    assert first.alt_seq == CHR1[237:249] + other(CHR1[249]) + CHR1[250:261]
    assert second.alt_seq == CHR1[237:249] + "G" + CHR1[250:261]
    assert first.ref_seq == second.ref_seq == CHR1[237:261]
    assert (first.status, second.status, star.status) == ("ok", "ok", "spanning_deletion")


def test_windows_past_contig_ends_are_n_padded(files):
    genome, vcf = files
    rows = by_id(read_variant_windows(vcf, genome, W))
    end = rows["end", 1]  # chr2 is 150 bp: window [132, 156) has 6 bases past the end
    assert end.ref_seq == CHR2[132:150] + "N" * 6 and end.n_padded == 6
    assert end.alt_seq == CHR2[132:144] + other(CHR2[144]) + CHR2[145:150] + "N" * 6
    start = rows["start", 1]  # window [-10, 14)
    assert start.ref_seq == "N" * 10 + CHR2[0:14] and start.n_padded == 10
    assert start.alt_seq == "N" * 10 + CHR2[0:2] + other(CHR2[2]) + CHR2[3:14]


def test_allele_kinds():
    assert [allele_kind(a) for a in ["<DEL>", "<*>", "*", "G]chr2:10]", "[chr1:5[A", "A.", ".A", ".", "ACGT"]] == [
        "symbolic", "symbolic", "spanning_deletion", "breakend", "breakend", "breakend", "breakend", "missing",
        "sequence"]


def test_region_filter_with_tabix_index(files, tmp_path):
    genome, vcf = files
    plain = tmp_path / "toy.vcf"
    plain.write_text(vcf.read_text())
    with pytest.raises(InputError, match="tabix index"):
        list(read_variant_windows(plain, genome, W, region="chr1:140-210"))
    indexed = pysam.tabix_index(str(plain), preset="vcf", force=True)
    rows = list(read_variant_windows(indexed, genome, W, region="chr1:140-210"))
    assert [(r.id, r.pos) for r in rows] == [("bnd", 140), ("ins", 150), ("del", 200)]
    # `1` names chr1 too; a deletion starting before the region but overlapping it is kept (tabix rule).
    rows = list(read_variant_windows(indexed, genome, W, region="1:201-202"))
    assert [r.id for r in rows] == ["del"] and rows[0].alt_seq == CHR1[187:200] + CHR1[203:214]
    with pytest.raises(InputError, match="not in the VCF index"):
        list(read_variant_windows(indexed, genome, W, region="chr9:1-10"))
    assert parse_region("chr1:1,000-2,000") == ("chr1", 999, 2000)


def test_bed_filter_keeps_overlapping_records(files, tmp_path):
    genome, vcf = files
    bed = tmp_path / "keep.bed"
    bed.write_text("chr1\t95\t100\n1\t98\t105\nchr2\t144\t146\n")  # 0-based; pos 100 is [99, 100)
    assert [r.id for r in read_variant_windows(vcf, genome, W, bed=bed)] == ["snv", "end"]


def test_shards_partition_records_and_merge_back(files):
    genome, vcf = files
    source = VariantSource(vcf, genome, W)
    full = [(r.record_index, r.allele, r.id) for r in source]
    parts = [[(r.record_index, r.allele, r.id) for r in source.shard(rank, 3)] for rank in range(3)]
    assert all(index % 3 == rank for rank, part in enumerate(parts) for index, _, _ in part)
    assert sorted(parts[0] + parts[1] + parts[2]) == full
    assert [a for i, a, _ in parts[0] if i == 6] == [1, 2, 3]  # ALTs of one record stay together


def test_bcf_reads_like_vcf(files, tmp_path):
    genome, vcf = files
    bcf = tmp_path / "toy.bcf"
    with pysam.VariantFile(str(vcf)) as src, pysam.VariantFile(str(bcf), "wb", header=src.header) as out:
        for record in src:
            out.write(record)
    key = lambda r: (r.id, r.allele, r.status, r.ref_seq, r.alt_seq)
    assert [key(r) for r in read_variant_windows(bcf, genome, W)] == [key(r) for r in read_variant_windows(vcf, genome, W)]


def test_malformed_record_names_its_line(files, tmp_path):
    genome, _ = files
    bad = tmp_path / "bad.vcf"
    lines = vcf_text(RECORDS[:3]).splitlines()
    lines.insert(8, "chr1\tnot-a-number\t.\tA\tG\t.\tPASS\t.")  # line 9, after one good record
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as err:
        list(read_variant_windows(bad, genome, W))
    assert err.value.line == 9 and str(err.value).startswith(f"{bad}:9: malformed VCF record")


def test_malformed_header_names_its_line(files, tmp_path):
    genome, _ = files
    bad = tmp_path / "bad_header.vcf"
    bad.write_text("##fileformat=VCFv4.2\n##INFO=<ID=DP,Number=1,Type=Integer\n#CHROM\tPOS\n")
    with pytest.raises(InputError) as err:
        list(read_variant_windows(bad, genome, W))
    assert err.value.line == 2 and "meta-information" in err.value.message
    headless = tmp_path / "headless.vcf"
    headless.write_text("##fileformat=VCFv4.2\nchr1\t5\t.\tA\tG\t.\t.\t.\n")
    with pytest.raises(InputError) as err:
        list(read_variant_windows(headless, genome, W))
    assert err.value.line == 2 and "#CHROM" in err.value.message


def test_malformed_record_inside_a_region_names_its_line(files, tmp_path):
    genome, _ = files
    bad = tmp_path / "bad_region.vcf"
    lines = vcf_text(RECORDS[:6]).splitlines()
    lines[11] = lines[11].replace("\t.\tPASS\t.", "\t.\tPASS")  # the `ins` record (line 12) loses INFO
    bad.write_text("\n".join(lines) + "\n")
    indexed = pysam.tabix_index(str(bad), preset="vcf", force=True)
    with pytest.raises(InputError) as err:
        list(read_variant_windows(indexed, genome, W, region="chr1:145-300"))
    assert err.value.line == 12 and "malformed VCF record" in err.value.message
