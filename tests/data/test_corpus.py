import json

import numpy as np
import pytest

from genomics_bigbird.data.corpus import (
    iter_contig_documents, iter_documents, read_documents, write_corpus)
from genomics_bigbird.genome import ReferenceGenome

LENGTHS = {"chr1": 260_000, "chr2": 40_000, "chrN": 30_000}


def random_bases(rng, n):
    return "".join(rng.choice(list("ACGT"), size=n))


@pytest.fixture(scope="module")
def fasta(tmp_path_factory):
    """chr1 with a 4 kbp leading N run and a 20 kbp N gap, soft-masked stretches and IUPAC codes; chr2 short; chrN all N."""
    rng = np.random.default_rng(7)
    chr1 = list(random_bases(rng, LENGTHS["chr1"]))
    chr1[:4000] = "N" * 4000
    chr1[100_000:120_000] = "N" * 20_000
    chr1[150_000:150_500] = "".join(chr1[150_000:150_500]).lower()
    chr1[160_000] = "R"
    seqs = {"chr1": "".join(chr1), "chr2": random_bases(rng, LENGTHS["chr2"]), "chrN": "N" * LENGTHS["chrN"]}
    path = tmp_path_factory.mktemp("corpus") / "genome.fa"
    with open(path, "w") as handle:
        for name, seq in seqs.items():
            handle.write(f">{name}\n")
            handle.writelines(seq[i:i + 60] + "\n" for i in range(0, len(seq), 60))
    return path, seqs


def expected(seq):
    """The genome layer's rule: upper case, IUPAC codes other than ACGT become N."""
    return "".join(c if c in "ACGT" else "N" for c in seq.upper())


def test_documents_follow_f1_rules(fasta):
    path, seqs = fasta
    genome = ReferenceGenome(path)
    for pass_index in range(3):
        docs = list(iter_contig_documents(genome, "chr1", pass_index, seed=0))
        assert 0 <= docs[0].start < 5000
        for i, doc in enumerate(docs):
            last = i == len(docs) - 1
            n_spans = len(doc.sentences) + doc.dropped
            assert last or 50 <= n_spans <= 100
            for j, (sentence, start) in enumerate(zip(doc.sentences, doc.sentence_starts)):
                final_sentence = last and start + len(sentence) == LENGTHS["chr1"]
                assert final_sentence or 500 <= len(sentence) <= 1000
                assert sentence == expected(seqs["chr1"][start:start + len(sentence)])
                assert set(sentence) != {"N"}
                if j:
                    prev_end = doc.sentence_starts[j - 1] + len(doc.sentences[j - 1])
                    assert start == prev_end or doc.dropped  # consecutive unless an all-N sentence was dropped
        assert docs[-1].end == LENGTHS["chr1"]
        # document coverage: consecutive documents tile the contig from the offset to the end
        assert all(b.start == a.end for a, b in zip(docs, docs[1:]))


def test_all_n_sentences_dropped_and_partial_n_kept(fasta):
    path, _ = fasta
    genome = ReferenceGenome(path)
    docs = list(iter_documents(genome, ["chr1", "chrN"], passes=2, seed=3))
    chr1 = [d for d in docs if d.contig == "chr1"]
    # a 20 kbp gap holds at least 20_000 / 1000 - 2 = 18 whole sentences per pass
    assert sum(d.dropped for d in chr1) >= 2 * 18
    partial = [s for d in chr1 for s in d.sentences if "N" in s]
    assert partial and all(set(s) != {"N"} for s in partial)
    chrn = [d for d in docs if d.contig == "chrN"]
    assert chrn and all(d.sentences == [] and d.dropped > 0 for d in chrn)


def test_documents_are_deterministic_and_seed_dependent(fasta):
    path, _ = fasta
    genome = ReferenceGenome(path)
    first = [(d.start, d.end, d.sentence_starts) for d in iter_documents(genome, ["2"], passes=2, seed=11)]
    again = [(d.start, d.end, d.sentence_starts) for d in iter_documents(genome, ["chr2"], passes=2, seed=11)]
    other = [(d.start, d.end, d.sentence_starts) for d in iter_documents(genome, ["chr2"], passes=2, seed=12)]
    assert first == again and first != other
    # a contig's documents do not depend on the other contigs processed alongside it
    alone = [d.sentence_starts for d in iter_documents(genome, ["chr1"], passes=1, seed=5)]
    together = [d.sentence_starts for d in iter_documents(genome, ["chr2", "chr1"], passes=1, seed=5)
                if d.contig == "chr1"]
    assert alone == together


def test_start_offsets_are_uniform_below_5000(fasta):
    path, _ = fasta
    genome = ReferenceGenome(path)
    starts = [next(iter_contig_documents(genome, "chr2", p, seed=0)).start for p in range(200)]
    assert 0 <= min(starts) and max(starts) < 5000
    # uniform on [0, 5000): mean 2500, sd 5000/sqrt(12); 5 sd of the mean of 200 draws = 510
    assert abs(np.mean(starts) - 2500) < 5 * (5000 / np.sqrt(12)) / np.sqrt(200)


def test_write_corpus_files_and_counts(fasta, tmp_path):
    path, seqs = fasta
    genome = ReferenceGenome(path)
    counts = write_corpus(genome, tmp_path, passes=2, seed=1)
    assert sorted(p.name for p in tmp_path.glob("*.txt")) == ["chr1.txt", "chr2.txt", "chrN.txt"]
    docs = list(read_documents(tmp_path / "chr1.txt")) + list(read_documents(tmp_path / "chr2.txt"))
    assert list(read_documents(tmp_path / "chrN.txt")) == []
    assert len(docs) == counts.documents
    assert sum(len(d) for d in docs) == counts.sentences
    assert sum(len(s) for d in docs for s in d) == counts.bp
    # two passes over the non-N bases, less the < 5 kbp start offsets, plus the N part of sentences
    # straddling the three N-run edges of chr1 (< 1000 bp each) and the one R base
    non_n = 2 * (LENGTHS["chr1"] - 24_000 - 1 + LENGTHS["chr2"])
    assert non_n - 4 * 5000 <= counts.bp <= non_n + 2 * (3 * 1000 + 1)
    assert counts.dropped_documents >= 2  # chrN: at least one all-N document per pass
    summary = json.loads((tmp_path / "counts.json").read_text())
    assert summary["documents"] == counts.documents and summary["files"][0] == "chr1.txt"
    rows = (tmp_path / "documents.tsv").read_text().splitlines()
    assert len(rows) == 1 + counts.documents
    file_name, contig, pass_index, start, end, n_sentences, dropped = rows[1].split("\t")
    assert (file_name, contig, pass_index) == ("chr1.txt", "chr1", "0") and int(n_sentences) == len(docs[0])
    assert docs[0][0] in expected(seqs["chr1"][int(start):int(end)])


def test_contigs_in_worker_processes_write_the_same_corpus(fasta, tmp_path):
    path, _ = fasta
    genome = ReferenceGenome(path)
    spans = {1: [], 2: []}
    for workers in (1, 2):
        write_corpus(genome, tmp_path / str(workers), ["chr2", "chrN", "chr1"], passes=2, seed=5,
                     progress=spans[workers].append, workers=workers)
    names = sorted(p.name for p in (tmp_path / "1").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "2").iterdir())
    for name in names:  # the contig files, documents.tsv (in the given contig order) and counts.json
        assert (tmp_path / "2" / name).read_bytes() == (tmp_path / "1" / name).read_bytes(), name
    rows = (tmp_path / "2" / "documents.tsv").read_text().splitlines()[1:]
    assert [r.split("\t")[1] for r in rows] == sorted((r.split("\t")[1] for r in rows),
                                                        key=["chr2", "chr1"].index)
    # one progress call per document in this process; one per contig from workers; the same bases
    assert len(spans[2]) == 3 and len(spans[1]) > 3 and sum(spans[1]) == sum(spans[2])
