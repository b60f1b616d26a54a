import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from genomics_bigbird.data.pretraining import (
    PretrainingDataset, chunk_boundaries, collate_pretraining, fit_pair)
from genomics_bigbird.data.shards import ShardSet, write_shards
from genomics_bigbird.errors import InputError
from genomics_bigbird.tokenizer import DNATokenizer

MAX_LENGTH = 96


def documents(seed, n_docs):
    """Documents of 20-40 sentences of 60-120 bp (the F.1 shape, scaled down)."""
    rng = np.random.default_rng(seed)
    return [["".join(rng.choice(list("ACGT"), size=int(rng.integers(60, 121))))
             for _ in range(int(rng.integers(20, 41)))] for _ in range(n_docs)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretraining")
    docs = documents(0, 12)
    corpus = root / "chr1.txt"
    corpus.write_text("".join("\n".join(d) + "\n\n" for d in docs))
    tokenizer = DNATokenizer.train([corpus], vocab_size=120, model_prefix=root / "dna_bpe")
    write_shards([corpus], tokenizer, root / "shards", documents_per_shard=5)
    return tokenizer, root / "shards"


def document_tokens(shards, index):
    return np.concatenate(shards.document(index)).astype(np.int64)


def contains(haystack, needle):
    """Whether `needle` occurs as a contiguous run in `haystack`."""
    if len(needle) == 0:
        return True
    windows = np.lib.stride_tricks.sliding_window_view(haystack, len(needle))
    return bool((windows == needle).all(axis=1).any())


def test_chunks_and_pair_fitting():
    lengths = np.array([10] * 30)
    cuts = chunk_boundaries(lengths, 100)
    assert cuts == [0, 10, 20, 30]
    assert chunk_boundaries(np.array([500, 5]), 100) == [0, 1, 2]  # never an empty chunk
    assert chunk_boundaries(np.array([7]), 100) == [0, 1]
    assert fit_pair(5000, 100, 4093) == (3993, 100)
    assert fit_pair(3000, 3000, 4093) == (2047, 2046)
    assert fit_pair(10, 20, 4093) == (10, 20)


def test_instances_are_well_formed(setup):
    tokenizer, shard_dir = setup
    dataset = PretrainingDataset(shard_dir, tokenizer, max_length=MAX_LENGTH, seed=1)
    shards = ShardSet(shard_dir)
    # chunks tile every document: their sentence ranges cover each document once, in order
    for doc in range(len(shards)):
        rows = dataset.instances[dataset.instances[:, 0] == doc]
        assert rows[0, 1] == 0 and rows[-1, 2] == len(shards.sentence_lengths(doc))
        assert np.all(rows[1:, 1] == rows[:-1, 2])
    for index in range(0, len(dataset), 7):
        item = dataset[index]
        ids, segments, labels = item["input_ids"], item["segment_ids"], item["mlm_labels"]
        length = len(ids)
        assert length <= MAX_LENGTH and item["attention_mask"].all() and item["is_next"].shape == ()
        seps = torch.nonzero(ids == tokenizer.sep_id).flatten().tolist()
        assert ids[0] == tokenizer.cls_id and len(seps) == 2 and seps[1] == length - 1
        assert (segments[:seps[0] + 1] == 0).all() and (segments[seps[0] + 1:] == 1).all()
        original = torch.where(labels != -100, labels, ids).numpy()
        assert labels[0] == -100 and labels[seps[0]] == -100 and labels[-1] == -100
        assert original[1:seps[0]].min() >= 5 and original[seps[0] + 1:-1].min() >= 5
        a, b = original[1:seps[0]], original[seps[0] + 1:-1]
        doc = int(dataset.instances[index, 0])
        own = document_tokens(shards, doc)
        assert contains(own, a)
        if item["is_next"] == 1:
            assert contains(own, np.concatenate([a, b]))  # B continues A in the same document
        else:
            assert any(contains(document_tokens(shards, d), b) for d in range(len(shards)) if d != doc)


def test_masking_and_nsp_proportions(setup):
    tokenizer, shard_dir = setup
    dataset = PretrainingDataset(shard_dir, tokenizer, max_length=MAX_LENGTH, seed=2, in_memory=True)
    n_items = 2400
    selected = masked = randomized = kept = is_next = 0
    for i in range(n_items):
        dataset.set_epoch(i // len(dataset))
        item = dataset[i % len(dataset)]
        ids, labels = item["input_ids"], item["mlm_labels"]
        chosen = labels != -100
        assert int(chosen.sum()) == max(1, round(0.15 * (len(ids) - 3)))  # exactly 15% of non-special tokens
        selected += int(chosen.sum())
        masked += int((ids[chosen] == tokenizer.mask_id).sum())
        kept += int((ids[chosen] == labels[chosen]).sum())
        randomized += int(((ids[chosen] != labels[chosen]) & (ids[chosen] != tokenizer.mask_id)).sum())
        assert (ids[chosen & (ids != tokenizer.mask_id)] >= 5).all()  # random replacements are never special
        is_next += int(item["is_next"])
    # a random replacement equals the original with probability 1 / (regular tokens)
    same = 1 / (len(tokenizer) - 5)
    for count, p in ((masked, 0.8), (randomized, 0.1 * (1 - same)), (kept, 0.1 + 0.1 * same)):
        assert abs(count / selected - p) < 5 * np.sqrt(p * (1 - p) / selected), (count, selected, p)
    assert abs(is_next / n_items - 0.5) < 5 * np.sqrt(0.25 / n_items)


def test_instances_depend_only_on_seed_epoch_index(setup):
    tokenizer, shard_dir = setup
    first = PretrainingDataset(shard_dir, tokenizer, max_length=MAX_LENGTH, seed=3)
    second = PretrainingDataset(shard_dir, tokenizer, max_length=MAX_LENGTH, seed=3, in_memory=True)
    indices = [0, 5, len(first) - 1, 17]
    for index in indices[::-1]:  # order and history do not matter
        a, b = first[index], second[index]
        assert all(torch.equal(a[k], b[k]) for k in a)
    first.set_epoch(1)
    changed = [not torch.equal(first[i]["mlm_labels"], second[i]["mlm_labels"]) for i in indices]
    assert all(changed)  # dynamic masking: a new epoch draws new masks
    second.set_epoch(1)
    assert torch.equal(first[5]["input_ids"], second[5]["input_ids"])

    # DataLoader worker processes (each reopening the shards) build the same instances
    second.set_epoch(0)
    loader = DataLoader(PretrainingDataset(shard_dir, tokenizer, max_length=MAX_LENGTH, seed=3), batch_size=4,
                        num_workers=2, collate_fn=lambda items: collate_pretraining(items, tokenizer.pad_id))
    for row, batch in zip(range(3), loader):
        direct = collate_pretraining([second[i] for i in range(4 * row, 4 * row + 4)], tokenizer.pad_id)
        assert all(torch.equal(batch[k], direct[k]) for k in direct)


def test_collate_pads_to_a_multiple(setup):
    tokenizer, shard_dir = setup
    dataset = PretrainingDataset(shard_dir, tokenizer, max_length=MAX_LENGTH, seed=4)
    items = [dataset[i] for i in range(3)]
    items[1] = {k: (v[:40] if v.ndim else v) for k, v in items[1].items()}
    batch = collate_pretraining(items, tokenizer.pad_id, pad_to_multiple_of=64)
    longest = max(len(i["input_ids"]) for i in items)
    assert batch["input_ids"].shape == (3, -(-longest // 64) * 64)
    assert batch["attention_mask"][1].sum() == 40 and not batch["attention_mask"][1, 40:].any()
    assert (batch["input_ids"][1, 40:] == tokenizer.pad_id).all() and (batch["mlm_labels"][1, 40:] == -100).all()
    assert batch["is_next"].shape == (3,) and batch["is_next"].dtype == torch.long


def test_bad_inputs(setup, tmp_path):
    tokenizer, shard_dir = setup
    with pytest.raises(InputError, match="max_length"):
        PretrainingDataset(shard_dir, tokenizer, max_length=4)
    corpus = tmp_path / "one.txt"
    corpus.write_text("\n".join(documents(1, 1)[0]) + "\n")
    write_shards([corpus], tokenizer, tmp_path / "one")
    with pytest.raises(InputError, match="at least 2 documents"):
        PretrainingDataset(tmp_path / "one", tokenizer)
