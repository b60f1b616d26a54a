"""`DNATokenizer.load("tokenizer.json")`: an HF BPE built here like GENA-LM's, checked against `tokenizers` itself."""
import hashlib

import numpy as np
import pytest

from genomics_bigbird.errors import InputError
from genomics_bigbird.evaluate.classifier import check_tokenizer
from genomics_bigbird.tokenizer import DNATokenizer

GENA_SPECIALS = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]   # GENA-LM's order: [PAD] is 3


def dna(rng, n, length):
    """Sequences with motifs, short N runs (kept as N) and long ones (GENA-LM's normalizer makes them `-`)."""
    out = []
    for _ in range(n):
        parts = []
        while sum(map(len, parts)) < length:
            roll = rng.random()
            if roll < 0.05:
                parts.append("N" * int(rng.integers(10, 40)))
            elif roll < 0.1:
                parts.append("N" * int(rng.integers(1, 10)))
            elif roll < 0.3:
                parts.append(["TATAAA", "GGGCGG", "CCAAT"][int(rng.integers(3))])
            else:
                parts.append("".join(rng.choice(list("ACGT"), size=int(rng.integers(1, 12)))))
        out.append("".join(parts)[:length])
    return out


def gena_like_tokenizer(corpus, path, vocab_size=200, specials=GENA_SPECIALS):
    """A BPE trained by `tokenizers` with GENA-LM's pipeline: strip, N{10,} -> '-', split at '-', BERT template."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Sequence([normalizers.Strip(),
                                                 normalizers.Replace(Regex("N{10,}"), "-")])
    tokenizer.pre_tokenizer = pre_tokenizers.Split("-", behavior="isolated")
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[*specials, "-"], show_progress=False)
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    tokenizer.post_processor = processors.BertProcessing(("[SEP]", tokenizer.token_to_id("[SEP]")),
                                                         ("[CLS]", tokenizer.token_to_id("[CLS]")))
    tokenizer.save(str(path))
    return Tokenizer.from_file(str(path))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf_tok")
    rng = np.random.default_rng(0)
    reference = gena_like_tokenizer(dna(rng, 300, 500), root / "tokenizer.json")
    return root, reference


def test_special_ids_come_from_the_file(files):
    root, reference = files
    tok = DNATokenizer.load(root / "tokenizer.json")
    assert (tok.unk_id, tok.cls_id, tok.sep_id, tok.pad_id, tok.mask_id) == (0, 1, 2, 3, 4)
    assert tok.special_ids == (0, 1, 2, 3, 4, 5)                # GENA-LM's '-' is special too
    assert len(tok) == reference.get_vocab_size() and tok.kind == "hf"
    assert tok.sha256 == hashlib.sha256((root / "tokenizer.json").read_bytes()).hexdigest()


def test_ids_equal_the_tokenizers_library_on_dna_with_n_runs_and_lower_case(files):
    root, reference = files
    tok = DNATokenizer.load(root / "tokenizer.json")
    rng = np.random.default_rng(1)
    sequences = dna(rng, 40, 800)
    soft_masked = ["".join(c.lower() if rng.random() < 0.3 else c for c in s) for s in sequences]
    expected = [reference.encode(s, add_special_tokens=False).ids for s in sequences]
    assert [tok.encode(s) for s in soft_masked] == expected          # lower case is read as bases
    assert tok.encode_batch(soft_masked) == expected
    assert any(tok.id_to_piece(5) == "-" and 5 in ids for ids in expected)   # a long N run became '-'
    # the project's normalization runs first: IUPAC codes are N, as for sentencepiece models
    assert tok.encode("ACGTRYKM") == reference.encode("ACGTNNNN", add_special_tokens=False).ids
    # with the file's own template, the library adds [CLS] ... [SEP]: the data layer does that here
    assert reference.encode(sequences[0]).ids == [tok.cls_id, *expected[0], tok.sep_id]
    assert tok.decode(tok.encode("ACGTTTGCA")) == "ACGTTTGCA"


def test_checkpoint_checksum_tells_tokenizer_json_files_apart(files, tmp_path):
    root, _ = files
    tok = DNATokenizer.load(root / "tokenizer.json")
    meta = {"tokenizer_sha256": tok.sha256}
    check_tokenizer(meta, "ckpt", tok.sha256, tok.path)
    gena_like_tokenizer(dna(np.random.default_rng(4), 100, 300), tmp_path / "other.json")
    other = DNATokenizer.load(tmp_path / "other.json")
    with pytest.raises(InputError, match="token ids would not match"):
        check_tokenizer(meta, "ckpt", other.sha256, other.path)


def test_files_without_the_specials_or_not_bpe_are_refused(tmp_path):
    corpus = dna(np.random.default_rng(2), 50, 200)
    gena_like_tokenizer(corpus, tmp_path / "no_mask.json", specials=["[UNK]", "[CLS]", "[SEP]", "[PAD]"])
    with pytest.raises(InputError, match=r"no_mask\.json: the tokenizer has no \[MASK\] token"):
        DNATokenizer.load(tmp_path / "no_mask.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(InputError, match=r"broken\.json: not a Hugging Face tokenizer\.json"):
        DNATokenizer.load(tmp_path / "broken.json")
    from tokenizers import Tokenizer, models

    Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]")).save(str(tmp_path / "word.json"))
    with pytest.raises(InputError, match="the tokenizer model is 'WordLevel'"):
        DNATokenizer.load(tmp_path / "word.json")


def test_sentencepiece_model_converts_to_a_tokenizer_json_with_the_same_ids(tmp_path):
    from tokenizers import Tokenizer

    from genomics_bigbird.tokenizer.hf_json import to_tokenizer_json

    rng = np.random.default_rng(5)
    corpus = [s.replace("N" * 10, "") for s in dna(rng, 300, 400)]
    sentencepiece = DNATokenizer.train(corpus, vocab_size=300, model_prefix=tmp_path / "bpe", seed=0)
    data = to_tokenizer_json(sentencepiece)
    converted = Tokenizer.from_str(data.decode())
    sequences = dna(rng, 60, 700) + ["A" * 300, "AT" * 150, "ACGTN" * 60]
    raw = ["".join(c.lower() if rng.random() < 0.3 else c for c in s) + "ryk" for s in sequences]
    expected = [sentencepiece.encode(s) for s in raw]
    assert [converted.encode(s, add_special_tokens=False).ids for s in raw] == expected  # normalizer included
    assert converted.encode("ACGT").ids == [sentencepiece.cls_id, *sentencepiece.encode("ACGT"), sentencepiece.sep_id]
    (tmp_path / "tokenizer.json").write_bytes(data)
    reloaded = DNATokenizer.load(tmp_path / "tokenizer.json")
    assert (reloaded.pad_id, reloaded.cls_id, reloaded.mask_id) == (0, 2, 4)
    assert reloaded.encode_batch(raw) == expected and len(reloaded) == 300
    assert to_tokenizer_json(reloaded) == data                      # an HF file is passed on as it is
