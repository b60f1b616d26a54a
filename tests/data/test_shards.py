import json

import h5py
import numpy as np
import pytest

from genomics_bigbird.data.corpus import corpus_files, read_documents, write_corpus
from genomics_bigbird.data.shards import ShardSet, TokenShard, write_shards
from genomics_bigbird.errors import InputError
from genomics_bigbird.genome import ReferenceGenome
from genomics_bigbird.tokenizer import DNATokenizer


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A 2-pass F.1 corpus of a 150 kbp two-contig genome (soft-masked and N stretches) and a 200-token BPE."""
    root = tmp_path_factory.mktemp("shards")
    rng = np.random.default_rng(3)
    motifs = np.array(["TATAAA", "GGGCGG", "CCAAT", "ACGTTT"])
    seqs = {}
    for name, length in (("chr1", 90_000), ("chr2", 60_000)):
        pieces = np.where(rng.random(length // 6) < 0.3, rng.choice(motifs, length // 6),
                          ["".join(p) for p in rng.choice(list("ACGT"), (length // 6, 6))])
        seq = "".join(pieces)
        seqs[name] = seq[:20_000] + seq[20_000:21_000].lower() + "N" * 1500 + seq[22_500:]
    fasta = root / "genome.fa"
    fasta.write_text("".join(f">{n}\n{s}\n" for n, s in seqs.items()))
    write_corpus(ReferenceGenome(fasta), root / "corpus", passes=2, seed=0)
    files = corpus_files(root / "corpus")
    tokenizer = DNATokenizer.train(files, vocab_size=200, model_prefix=root / "tok" / "dna_bpe")
    return files, tokenizer, root


def test_shards_round_trip_the_corpus_text(corpus, tmp_path):
    files, tokenizer, _ = corpus
    summary = write_shards(files, tokenizer, tmp_path, documents_per_shard=3)
    documents = [doc for f in files for doc in read_documents(f)]
    shards = ShardSet(tmp_path)
    assert len(shards) == len(documents) == summary["counts"]["documents"]
    assert len(shards.shards) == -(-len(documents) // 3)
    for index, sentences in enumerate(documents):
        decoded = [tokenizer.decode(ids) for ids in shards.document(index)]
        assert decoded == sentences
        assert shards.sentence_lengths(index).tolist() == [len(ids) for ids in tokenizer.encode_batch(sentences)]
    assert summary["counts"]["bp"] == sum(len(s) for d in documents for s in d)
    assert summary["counts"]["sentences"] == sum(len(d) for d in documents)
    assert summary["counts"]["tokens"] == sum(s.num_tokens for s in shards.shards)
    on_disk = json.loads((tmp_path / "shards.json").read_text())
    assert on_disk["tokenizer_sha256"] == tokenizer.sha256 and on_disk["params"]["documents_per_shard"] == 3
    assert on_disk["params"]["corpus"] == {"passes": 2, "seed": 0}
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == sorted(
        ["shards.json"] + [s["file"] for s in on_disk["shards"]])  # no temporary files left behind
    assert int(shards.shards[0].sentence_bp.sum()) == sum(len(s) for d in documents[:3] for s in d)
    # the same corpus and tokenizer give the same bytes
    write_shards(files, tokenizer, tmp_path / "again", documents_per_shard=3)
    for name in ["shards.json"] + [s["file"] for s in on_disk["shards"]]:
        assert (tmp_path / "again" / name).read_bytes() == (tmp_path / name).read_bytes()


def test_shard_layout_is_uint16_chunked_and_compressed(corpus, tmp_path):
    files, tokenizer, _ = corpus
    write_shards(files, tokenizer, tmp_path, documents_per_shard=100)
    with h5py.File(tmp_path / "shard-00000.h5") as h5:
        tokens = h5["token_ids"]
        assert tokens.dtype == np.uint16 and tokens.compression == "gzip" and tokens.chunks is not None
        assert h5.attrs["tokenizer_sha256"] == tokenizer.sha256
        offsets = h5["sentence_offsets"][:]
        assert offsets[0] == 0 and offsets[-1] == len(tokens) and np.all(np.diff(offsets) > 0)
    in_memory = TokenShard(tmp_path / "shard-00000.h5", in_memory=True)
    lazy = TokenShard(tmp_path / "shard-00000.h5")
    for d in range(in_memory.num_documents):
        assert all(np.array_equal(a, b) for a, b in zip(in_memory.document(d), lazy.document(d)))
    assert np.array_equal(lazy.sentence(5), in_memory.tokens(int(lazy.sentence_offsets[5]),
                                                             int(lazy.sentence_offsets[6])))


def test_shards_refuse_another_tokenizer_and_missing_inputs(corpus, tmp_path):
    files, tokenizer, root = corpus
    write_shards(files, tokenizer, tmp_path / "a")
    other = DNATokenizer.train(files, vocab_size=150, model_prefix=root / "tok" / "other")
    with pytest.raises(InputError, match="tokenized with tokenizer"):
        ShardSet(tmp_path / "a").check_tokenizer(other)
    with pytest.raises(InputError, match="gbb shards"):
        ShardSet(tmp_path / "nothing")
    with pytest.raises(InputError, match="documents per shard"):
        write_shards(files, tokenizer, tmp_path / "b", documents_per_shard=0)
    with pytest.raises(InputError, match="no corpus files"):
        corpus_files(tmp_path / "a")


def test_shards_tokenized_by_worker_processes_are_the_same_bytes(corpus, tmp_path):
    files, tokenizer, _ = corpus
    one = write_shards(files, tokenizer, tmp_path / "one", documents_per_shard=3, workers=1)
    two = write_shards(files, tokenizer, tmp_path / "two", documents_per_shard=3, workers=2)
    assert one["counts"] == two["counts"] and len(one["shards"]) > 2
    for name in ["shards.json"] + [s["file"] for s in one["shards"]]:
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
