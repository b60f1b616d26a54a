import numpy as np
import pytest

from genomics_bigbird.errors import InputError
from genomics_bigbird.tokenizer import DNATokenizer
from genomics_bigbird.tokenizer.bpe import sample_sentences

MOTIFS = ["TATAAA", "GGGCGG", "CCAAT", "ACGTACGTTT", "NNNNNNNN"]


def sentences(seed, n=400, length=600):
    """DNA sentences with recurring motifs (so BPE has something to merge) and some N runs."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        parts = []
        while sum(map(len, parts)) < length:
            parts.append(MOTIFS[rng.integers(len(MOTIFS))] if rng.random() < 0.3
                         else "".join(rng.choice(list("ACGT"), size=int(rng.integers(1, 12)))))
        out.append("".join(parts)[:length])
    return out


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "chr1.txt"
    docs = [sentences(1, 200), sentences(2, 200)]
    path.write_text("\n\n".join("\n".join(d) for d in docs) + "\n\n")
    return path


@pytest.fixture(scope="module")
def tokenizer(corpus_file, tmp_path_factory):
    return DNATokenizer.train([corpus_file], vocab_size=300, model_prefix=tmp_path_factory.mktemp("m") / "dna_bpe",
                              seed=0)


def test_special_ids_are_reserved(tokenizer):
    assert (tokenizer.pad_id, tokenizer.unk_id, tokenizer.cls_id, tokenizer.sep_id, tokenizer.mask_id) == (0, 1, 2, 3, 4)
    assert [tokenizer.id_to_piece(i) for i in range(5)] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert len(tokenizer) == 300
    for base in "ACGTN":
        assert tokenizer.encode(base) not in ([0], [1], [2], [3], [4])
    # literal special names, lower case, IUPAC and spaces never produce a special id
    tricky = ["[CLS]ACGT[SEP]", "[MASK]", "acgtn", "RYKMSWBDHV", "AC GT", "NNNNNNNNNNNN", "A" * 2000]
    for ids in tokenizer.encode_batch(tricky + sentences(9, 50)):
        assert ids and min(ids) >= 5


def test_round_trip_normalizes_case_and_iupac(tokenizer):
    seq = "acgtNNNNacgtRYTATAAAggg" + "N" * 30 + sentences(5, 1)[0]
    ids = tokenizer.encode(seq)
    normalized = "ACGTNNNNACGTNNTATAAAGGG" + "N" * 30 + sentences(5, 1)[0]
    assert tokenizer.decode(ids) == normalized
    assert tokenizer.decode([tokenizer.cls_id, *ids, tokenizer.sep_id]) == normalized
    assert tokenizer.encode_batch([seq, "acgt"]) == [ids, tokenizer.encode("ACGT")]
    # a trained BPE merges: fewer tokens than bases, and the held-out figure counts bases per token
    held_out = sentences(77, 50)
    tokens = sum(len(tokenizer.encode(s)) for s in held_out)
    assert tokenizer.bp_per_token(held_out) == pytest.approx(50 * 600 / tokens)
    assert tokenizer.bp_per_token(held_out) > 2.0


def test_training_is_deterministic_and_files_load(corpus_file, tokenizer, tmp_path):
    again = DNATokenizer.train([corpus_file], vocab_size=300, model_prefix=tmp_path / "again", seed=0)
    assert again.sha256 == tokenizer.sha256
    assert (tmp_path / "again.model").read_bytes() == tokenizer.path.read_bytes()
    vocab = (tmp_path / "again.vocab").read_text().splitlines()
    assert len(vocab) == 300 and vocab[4].startswith("[MASK]\t")
    loaded = DNATokenizer.load(tmp_path / "again.model")
    assert loaded.sha256 == tokenizer.sha256 and loaded.encode("TATAAAGGGCGG") == tokenizer.encode("TATAAAGGGCGG")
    # sentence sampling is seeded: with sampling on, the same seed gives the same model
    sampled = [DNATokenizer.train(sentences(3, 300), vocab_size=200, model_prefix=tmp_path / f"s{i}", seed=seed,
                                  input_sentence_size=150).sha256 for i, seed in enumerate([4, 4, 5])]
    assert sampled[0] == sampled[1] != sampled[2]


def test_n_is_a_token_even_when_training_has_none(tmp_path):
    tok = DNATokenizer.train(sentences(4, 100), vocab_size=100, model_prefix=tmp_path / "no_n")
    ids = tok.encode("ACGTNACGT")
    assert tok.unk_id not in ids and tok.decode(ids) == "ACGTNACGT"


def test_vocab_too_large_names_the_size_to_use(tmp_path):
    with pytest.raises(InputError, match=r"use --vocab-size \d+ or less"):
        DNATokenizer.train(sentences(6, 20, 50), vocab_size=5000, model_prefix=tmp_path / "big")
    assert not (tmp_path / "big.model").exists()
    with pytest.raises(InputError, match="no T bases"):
        DNATokenizer.train(["ACGACGGCA" * 20] * 30, vocab_size=50, model_prefix=tmp_path / "not")
    with pytest.raises(InputError, match="not found"):
        DNATokenizer.load(tmp_path / "missing.model")


def test_sentence_sampling_is_uniform_and_seeded():
    items = [f"s{i}" for i in range(200)]
    assert sample_sentences(items, 500, np.random.default_rng(0)) == items
    rng = np.random.default_rng(1)
    counts = np.zeros(200)
    for _ in range(2000):
        sample = sample_sentences(items, 20, rng)
        assert len(set(sample)) == 20
        counts[[int(s[1:]) for s in sample]] += 1
    # each item is kept with probability 20/200: Binomial(2000, 0.1), sd 13.4; 5 sd over 200 items
    assert np.abs(counts - 200).max() < 5 * np.sqrt(2000 * 0.1 * 0.9)
    assert counts[:100].sum() == pytest.approx(counts[100:].sum(), rel=0.05)  # the tail is not favoured
    a = sample_sentences(items, 20, np.random.default_rng(3))
    assert a == sample_sentences(items, 20, np.random.default_rng(3)) != sample_sentences(items, 20, np.random.default_rng(4))
