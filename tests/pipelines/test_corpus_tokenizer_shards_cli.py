import json

import numpy as np
import pytest

from genomics_bigbird.data.corpus import read_documents
from genomics_bigbird.data.shards import ShardSet
from genomics_bigbird.tokenizer import DNATokenizer
from pipelines import cli


@pytest.fixture(scope="module")
def fasta(tmp_path_factory):
    rng = np.random.default_rng(11)
    motifs = np.array(["TATAAA", "GGGCGG", "CCAAT", "ACGTTT"])
    path = tmp_path_factory.mktemp("cli") / "genome.fa"
    with open(path, "w") as handle:
        for name, length in (("chr1", 80_000), ("chr2", 50_000)):
            pieces = np.where(rng.random(length // 6) < 0.3, rng.choice(motifs, length // 6),
                              ["".join(p) for p in rng.choice(list("acgt"), (length // 6, 6))])
            seq = "".join(pieces)
            handle.write(f">{name}\n" + "\n".join(seq[i:i + 70] for i in range(0, len(seq), 70)) + "\n")
    return path


def test_corpus_tokenizer_shards_end_to_end(fasta, tmp_path, capsys):
    corpus, prefix, shards = tmp_path / "corpus", tmp_path / "tok" / "dna_bpe", tmp_path / "shards"
    assert cli.main(["corpus", "--fasta", str(fasta), "--out", str(corpus), "--passes", "2", "--seed", "4",
                     "--contigs", "1", "chr2", "--quiet"]) == 0
    counts = json.loads((corpus / "counts.json").read_text())
    documents = [d for name in ("chr1.txt", "chr2.txt") for d in read_documents(corpus / name)]
    assert counts["documents"] == len(documents) > 2 and counts["passes"] == 2
    manifest = json.loads((corpus / "manifest.json").read_text())
    assert manifest["seed"] == 4 and manifest["outputs"]["documents"] == len(documents)
    assert manifest["inputs"][0]["path"].endswith("genome.fa")

    assert cli.main(["tokenizer", "train", "--corpus", str(corpus), "--vocab-size", "150", "--out", str(prefix),
                     "--threads", "1", "--holdout-fraction", "0.3", "--quiet"]) == 0
    report = json.loads(prefix.with_name("dna_bpe.json").read_text())
    tokenizer = DNATokenizer.load(prefix.with_name("dna_bpe.model"))
    assert report["sha256"] == tokenizer.sha256 and report["vocab_size"] == len(tokenizer) == 150
    assert 0 < report["holdout_documents"] < len(documents)
    assert report["bp_per_token"] == pytest.approx(report["holdout_bp"] / report["holdout_tokens"], abs=1e-4)
    assert report["bp_per_token"] > 1.5
    assert prefix.with_name("dna_bpe.manifest.json").is_file()

    assert cli.main(["shards", "--corpus", str(corpus), "--tokenizer", str(prefix.with_name("dna_bpe.model")),
                     "--out", str(shards), "--documents-per-shard", "2", "--threads", "1", "--quiet"]) == 0
    shard_set = ShardSet(shards)
    shard_set.check_tokenizer(tokenizer)
    assert len(shard_set) == len(documents) and len(shard_set.shards) == -(-len(documents) // 2)
    assert [tokenizer.decode(ids) for ids in shard_set.document(len(documents) - 1)] == documents[-1]
    assert json.loads((shards / "manifest.json").read_text())["outputs"]["documents"] == len(documents)


@pytest.mark.parametrize("argv, message", [
    (["corpus", "--fasta", "{tmp}/missing.fa", "--out", "{tmp}/c"], "FASTA file not found"),
    (["corpus", "--fasta", "{fasta}", "--out", "{tmp}/c", "--contigs", "chr9"], "unknown contig 'chr9'"),
    (["corpus", "--fasta", "{fasta}", "--out", "{tmp}/c", "--passes", "0"], "--passes must be >= 1"),
    (["tokenizer", "train", "--corpus", "{tmp}", "--out", "{tmp}/t"], "no corpus files"),
    (["shards", "--corpus", "{tmp}", "--tokenizer", "{tmp}/none.model", "--out", "{tmp}/s"], "no corpus files"),
    (["shards", "--out", "{tmp}/s"], "--corpus and --tokenizer required (or --merge"),
    (["corpus", "--fasta", "{fasta}", "--out", "{tmp}/c", "--workers", "0"], "--workers must be at least 1"),
    (["corpus", "--merge", "{tmp}", "--out", "{tmp}/c"], "no counts.json here: not a finished `gbb corpus`"),
    (["shards", "--merge", "{tmp}", "--out", "{tmp}/s"], "no shards.json here: not a finished `gbb shards`"),
])
def test_bad_inputs_exit_2_with_one_line(fasta, tmp_path, capsys, argv, message):
    argv = [a.format(tmp=tmp_path, fasta=fasta) for a in argv]
    assert cli.main(argv + ["--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_vocab_too_large_and_missing_tokenizer_exit_2(fasta, tmp_path, capsys):
    corpus = tmp_path / "corpus"
    assert cli.main(["corpus", "--fasta", str(fasta), "--out", str(corpus), "--passes", "1", "--contigs", "chr2",
                     "--quiet"]) == 0
    capsys.readouterr()
    assert cli.main(["tokenizer", "train", "--corpus", str(corpus), "--vocab-size", "60000", "--out",
                     str(tmp_path / "t"), "--threads", "1", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "too large for this corpus: use --vocab-size" in err[0]
    assert cli.main(["shards", "--corpus", str(corpus), "--tokenizer", str(tmp_path / "none.model"), "--out",
                     str(tmp_path / "s"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tokenizer model not found" in err[0]


def test_per_contig_jobs_gathered_with_merge_equal_one_run(fasta, tmp_path):
    """The workflow's cluster fan-out: a corpus and shards job per contig, then `--merge` gathers them."""
    def gbb(*argv):
        assert cli.main([*argv, "--quiet"]) == 0

    gbb("corpus", "--fasta", str(fasta), "--out", str(tmp_path / "whole"), "--passes", "2", "--seed", "3")
    for contig in ("chr1", "chr2"):
        gbb("corpus", "--fasta", str(fasta), "--contigs", contig, "--out", str(tmp_path / "parts" / contig),
            "--passes", "2", "--seed", "3")
    gbb("corpus", "--merge", str(tmp_path / "parts" / "chr1"), str(tmp_path / "parts" / "chr2"),
        "--out", str(tmp_path / "corpus"))
    whole = json.loads((tmp_path / "whole" / "counts.json").read_text())
    merged = json.loads((tmp_path / "corpus" / "counts.json").read_text())
    assert merged["files"] == ["../parts/chr1/chr1.txt", "../parts/chr2/chr2.txt"]
    assert {k: v for k, v in merged.items() if k != "files"} == {k: v for k, v in whole.items() if k != "files"}
    rows = [line.split("\t", 1) for line in (tmp_path / "corpus" / "documents.tsv").read_text().splitlines()]
    whole_rows = [line.split("\t", 1) for line in (tmp_path / "whole" / "documents.tsv").read_text().splitlines()]
    assert [r[1] for r in rows] == [r[1] for r in whole_rows] and rows[-1][0] == "../parts/chr2/chr2.txt"

    tokenizer = tmp_path / "tok" / "dna_bpe"
    gbb("tokenizer", "train", "--corpus", str(tmp_path / "corpus"), "--vocab-size", "150", "--out", str(tokenizer))
    model = str(tokenizer.with_name("dna_bpe.model"))
    gbb("shards", "--corpus", str(tmp_path / "whole"), "--tokenizer", model, "--out", str(tmp_path / "shards_whole"),
        "--documents-per-shard", "3")
    for contig in ("chr1", "chr2"):
        gbb("shards", "--corpus", str(tmp_path / "parts" / contig), "--tokenizer", model, "--out",
            str(tmp_path / "shard_parts" / contig), "--documents-per-shard", "3")
    gbb("shards", "--merge", str(tmp_path / "shard_parts" / "chr1"), str(tmp_path / "shard_parts" / "chr2"),
        "--out", str(tmp_path / "shards"))
    one, gathered = ShardSet(tmp_path / "shards_whole"), ShardSet(tmp_path / "shards")
    assert len(gathered) == len(one) == whole["documents"]
    for index in range(len(one)):
        assert [ids.tolist() for ids in gathered.document(index)] == [ids.tolist() for ids in one.document(index)]
    assert json.loads((tmp_path / "shards" / "shards.json").read_text())["counts"] == one.summary["counts"]
