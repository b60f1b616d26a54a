"""The labeled-windows HDF5 format: round trip, manifest, atomic writes, tokenized dataset and collation."""
import json

import numpy as np
import pytest
import torch

from genomics_bigbird.data.labeled import LabeledWindows, LabeledWriter, TokenizedWindows, collate_windows
from genomics_bigbird.data.labeled_rows import encode_rows
from genomics_bigbird.errors import InputError
from genomics_bigbird.genome import reverse_complement
from genomics_bigbird.tokenizer import DNATokenizer

WINDOW = 60


def _sequences(n, seed=0):
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list("ACGT"), WINDOW)) for _ in range(n)]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    training = _sequences(200, seed=1)
    return DNATokenizer.train(training, vocab_size=40, model_prefix=tmp_path_factory.mktemp("tok") / "bpe", seed=0)


@pytest.fixture()
def written(tmp_path):
    sequences = _sequences(5)
    sequences[4] = "N" * 10 + sequences[4][10:]
    labels = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0], [1, 1, 1], [0, 0, 1]], dtype=np.uint8)
    path = tmp_path / "set.h5"
    with LabeledWriter(path, window=WINDOW, feature_names=["CTCF", "DNase_a", "H3K4me3"],
                       feature_groups=["TF", "DHS", "HM"], task="chromatin", source="test", seed=7) as out:
        out.append(sequences[:3], labels[:3], ["train", "valid", "test"], chrom=["chr1", "chr2", "chr8"],
                   start=[0, 100, 200], end=[60, 160, 260], strand=["+", "-", "+"], name=["a", "b", "c"])
        out.append(sequences[3:], labels[3:], ["train", "train"])
    return path, sequences, labels


def test_round_trip_keeps_every_column(written):
    path, sequences, labels = written
    data = LabeledWindows(path)
    assert len(data) == 5 and data.window == WINDOW and data.task == "chromatin"
    assert data.attrs["seed"] == 7 and data.source == "test"
    assert [data.sequence(i) for i in range(5)] == sequences
    np.testing.assert_array_equal(data.labels(), labels)
    np.testing.assert_array_equal(data.labels([3, 0, 3]), labels[[3, 0, 3]])
    assert data.feature_names == ["CTCF", "DNase_a", "H3K4me3"]
    assert data.feature_groups == ["TF", "DHS", "HM"]
    assert list(data.indices("train")) == [0, 3, 4]
    assert list(data.indices("test")) == [2]
    records = data.records()
    assert records.loc[1, ["chrom", "start", "end", "strand", "name", "split"]].tolist() == \
        ["chr2", 100, 160, "-", "b", "valid"]
    assert records.loc[3, ["chrom", "start"]].tolist() == [".", -1]


def test_manifest_counts_rows_and_positives(written):
    path, _, _ = written
    manifest = json.loads((path.parent / "set.json").read_text())
    outputs = manifest["outputs"]
    assert outputs["rows_per_split"] == {"train": 3, "valid": 1, "test": 1}
    assert outputs["positives_per_feature"]["train"] == {"CTCF": 2, "DNase_a": 1, "H3K4me3": 2}
    assert manifest["seed"] == 7


def test_failed_write_leaves_no_file(tmp_path):
    path = tmp_path / "broken.h5"
    with pytest.raises(ValueError, match="exactly 60 bases"):
        with LabeledWriter(path, window=WINDOW, feature_names=["x"], feature_groups=["TF"], task="t") as out:
            out.append(_sequences(2), np.zeros((2, 1)), ["train", "train"])
            out.append(["ACGT"], np.zeros((1, 1)), ["train"])
    assert list(tmp_path.iterdir()) == []


def test_reader_rejects_other_files(tmp_path):
    other = tmp_path / "other.h5"
    other.write_text("not hdf5")
    with pytest.raises(InputError, match="not an HDF5 file"):
        LabeledWindows(other)


def test_tokenized_windows_frame_each_window_with_cls_and_sep(written, tokenizer):
    path, sequences, labels = written
    data = LabeledWindows(path)
    forward = TokenizedWindows(data, tokenizer, "train")
    assert len(forward) == 3
    item = forward[1]  # row 3
    ids = item["input_ids"].tolist()
    assert ids[0] == tokenizer.cls_id and ids[-1] == tokenizer.sep_id
    assert tokenizer.decode(ids[1:-1]) == sequences[3]
    assert item["index"] == 3 and item["attention_mask"].all()
    assert item["labels"].dtype == torch.float32 and item["labels"].tolist() == [1.0, 1.0, 1.0]
    rc = TokenizedWindows(data, tokenizer, "train", reverse_complement=True)[2]
    assert tokenizer.decode(rc["input_ids"][1:-1].tolist()) == reverse_complement(sequences[4])


def test_max_length_keeps_the_middle_tokens(written, tokenizer):
    path, sequences, _ = written
    data = LabeledWindows(path)
    full = TokenizedWindows(data, tokenizer, "test")[0]["input_ids"].tolist()
    short = TokenizedWindows(data, tokenizer, "test", max_length=8)[0]["input_ids"].tolist()
    tokens = full[1:-1]
    first = (len(tokens) - 6) // 2
    assert short == [tokenizer.cls_id, *tokens[first:first + 6], tokenizer.sep_id]


def test_collate_pads_right_and_masks_padding(written, tokenizer):
    path, _, labels = written
    data = LabeledWindows(path)
    dataset = TokenizedWindows(data, tokenizer, None)
    items = [dataset[0], dataset[4]]
    batch = collate_windows(items, pad_id=tokenizer.pad_id, pad_to_multiple_of=16)
    longest = max(len(i["input_ids"]) for i in items)
    assert batch["input_ids"].shape[1] == -(-longest // 16) * 16
    for row, item in enumerate(items):
        n = len(item["input_ids"])
        assert batch["input_ids"][row, :n].tolist() == item["input_ids"].tolist()
        assert (batch["input_ids"][row, n:] == tokenizer.pad_id).all()
        assert batch["attention_mask"][row].sum().item() == n
    assert batch["labels"].tolist() == labels[[0, 4]].astype(float).tolist()
    assert batch["index"].tolist() == [0, 4]


def test_rows_compressed_elsewhere_read_back_like_rows_appended_here(tmp_path):
    """Blocks made by encode_rows (in a worker process) and written as raw chunks equal plain appends."""
    rng = np.random.default_rng(4)
    n, features = 5000, 300  # blocks of 2048 rows: whole sequence chunks (2048 rows of 60 bp), label chunks (128)
    sequences = [row.tobytes().decode() for row in np.frombuffer(b"ACGTN", np.uint8)[rng.integers(0, 5, (n, WINDOW))]]
    labels = (rng.random((n, features)) < 0.3).astype(np.uint8)
    split = rng.choice(["train", "valid", "test"], n).tolist()
    names = [f"r{i}" for i in range(n)]
    kwargs = dict(window=WINDOW, feature_names=[f"f{i}" for i in range(features)], feature_groups=["TF"] * features,
                  task="chromatin", rows_per_block=100)
    with LabeledWriter(tmp_path / "plain.h5", **kwargs) as plain, LabeledWriter(tmp_path / "raw.h5", **kwargs) as raw:
        block = raw.block_rows
        assert block == 2048 and block % raw._file["sequences"].chunks[0] == 0 and block % raw._file["labels"].chunks[0] == 0
        for first in range(0, n, block):
            rows = slice(first, first + block)
            plain.append(sequences[rows], labels[rows], split[rows], name=names[rows], chrom=["chr2"] * len(names[rows]))
            raw.append_encoded(encode_rows(sequences[rows], labels[rows], split[rows], window=WINDOW,
                                           n_features=features, name=names[rows], chrom=["chr2"] * len(names[rows])))
        assert raw.summary() == {**plain.summary(), "path": str(tmp_path / "raw.h5")}
        with pytest.raises(ValueError, match="whole blocks"):  # a partial block must be the last
            raw.append_encoded(encode_rows(sequences[:3], labels[:3], split[:3], window=WINDOW, n_features=features))
    a, b = LabeledWindows(tmp_path / "plain.h5"), LabeledWindows(tmp_path / "raw.h5")
    assert [s.decode() for s in b._h5()["sequences"][:]] == sequences
    np.testing.assert_array_equal(b.labels(), labels)
    assert b.records().equals(a.records()) and b.split.tolist() == split
