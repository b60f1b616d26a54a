"""DeepSEA bundle readers on small files written in the bundle's exact layouts (HDF5 train, MATLAB v5 valid/test)."""
import h5py
import numpy as np
import pytest
import scipy.io

from genomics_bigbird.data.deepsea import (
    DeepSEASplit, decode_onehot, deepsea_feature_groups, deepsea_split_paths, write_deepsea)
from genomics_bigbird.data.labeled import LabeledWindows, LabeledWriter
from genomics_bigbird.errors import InputError
from genomics_bigbird.genome import reverse_complement

ORDER = "AGCT"  # the bundle's one-hot row order


def one_hot(sequence: str) -> np.ndarray:
    """(4, length) in A, G, C, T order, N = all zeros: written independently of the reader."""
    x = np.zeros((4, len(sequence)), dtype=np.uint8)
    for position, base in enumerate(sequence):
        if base != "N":
            x[ORDER.index(base), position] = 1
    return x


def make_split(n_forward: int, seed: int, length: int = 1000):
    """Forward windows then their reverse complements, labels repeated: (sequences, x (N,4,L), y (N,919))."""
    rng = np.random.default_rng(seed)
    forward = ["".join(rng.choice(list("ACGTN"), length, p=[0.24, 0.24, 0.24, 0.24, 0.04])) for _ in range(n_forward)]
    both = forward + [reverse_complement(s) for s in forward]
    x = np.stack([one_hot(s) for s in both])
    labels = (rng.random((n_forward, 919)) < 0.1).astype(np.uint8)
    return forward, x, np.concatenate([labels, labels])


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("deepsea")
    splits = {"train": make_split(6, 0), "valid": make_split(2, 1), "test": make_split(3, 2)}
    _, x, y = splits["train"]
    with h5py.File(root / "train.mat", "w") as f:  # MATLAB v7.3 layout, as h5py sees it
        f["trainxdata"] = np.transpose(x, (2, 1, 0))  # (1000, 4, N)
        f["traindata"] = y.T                          # (919, N)
    for split in ("valid", "test"):
        _, x, y = splits[split]
        scipy.io.savemat(root / f"{split}.mat", {f"{split}xdata": x, f"{split}data": y})
    return root, splits


def test_decode_uses_agct_order_and_zero_columns_as_n():
    assert decode_onehot(one_hot("AGCTNTCGA")[None])[0] == b"AGCTNTCGA"
    with pytest.raises(ValueError, match="at most one 1"):
        decode_onehot(np.ones((1, 4, 3), dtype=np.uint8))


def test_feature_groups_follow_the_bundle_columns():
    groups = deepsea_feature_groups()
    assert (groups[0], groups[124], groups[125], groups[814], groups[815], groups[918]) == \
        ("DHS", "DHS", "TF", "TF", "HM", "HM")
    assert groups.count("DHS") == 125 and groups.count("TF") == 690 and groups.count("HM") == 104


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_each_split_decodes_to_its_forward_half(bundle, split):
    root, splits = bundle
    forward, _, y = splits[split]
    with DeepSEASplit(root / f"{split}.mat", split) as data:
        assert data.n_forward == len(forward) and data.window == 1000 and data.n_features == 919
        chunks = list(data.chunks(chunk_size=4))
    assert [s.decode() for c in chunks for s in c.sequences] == forward
    np.testing.assert_array_equal(np.concatenate([c.labels for c in chunks]), y[:len(forward)])
    assert sum(c.n_sequence_mismatch + c.n_label_mismatch for c in chunks) == 0


def test_bundle_to_labeled_windows(bundle, tmp_path):
    root, splits = bundle
    with LabeledWriter(tmp_path / "chromatin.h5", window=1000, feature_names=[f"f{i}" for i in range(919)],
                       feature_groups=deepsea_feature_groups(), task="chromatin", source="deepsea") as out:
        report = write_deepsea(out, deepsea_split_paths(root))
    assert {s: r["rows"] for s, r in report.items()} == {"train": 6, "valid": 2, "test": 3}
    data = LabeledWindows(tmp_path / "chromatin.h5")
    test_rows = data.indices("test")
    assert [data.sequence(i) for i in test_rows] == splits["test"][0]
    np.testing.assert_array_equal(data.labels(test_rows), splits["test"][2][:3])
    assert data.records("valid")["name"].tolist() == ["valid:0", "valid:1"]


def test_second_half_mismatch_is_counted(tmp_path):
    forward, x, y = make_split(3, 5, length=50)
    x[4] = one_hot("A" * 50)        # row 4 pairs with forward row 1
    y[5, 0] = 1 - y[5, 0]           # row 5 pairs with forward row 2
    scipy.io.savemat(tmp_path / "test.mat", {"testxdata": x, "testdata": y})
    with DeepSEASplit(tmp_path / "test.mat", "test") as data:
        (chunk,) = list(data.chunks())
    assert (chunk.n_sequence_mismatch, chunk.n_label_mismatch) == (1, 1)
    assert [s.decode() for s in chunk.sequences] == forward


def test_bad_bundles_are_input_errors(tmp_path):
    _, x, y = make_split(2, 3, length=20)
    scipy.io.savemat(tmp_path / "valid.mat", {"validxdata": x[:3], "validdata": y[:3]})
    with pytest.raises(InputError, match="row count must be even"):
        DeepSEASplit(tmp_path / "valid.mat", "valid")
    scipy.io.savemat(tmp_path / "test.mat", {"wrongname": x})
    with pytest.raises(InputError, match="no 'testxdata'"):
        DeepSEASplit(tmp_path / "test.mat", "test")
    with pytest.raises(InputError, match="missing train.mat"):
        deepsea_split_paths(tmp_path)


def test_worker_processes_write_the_same_file_in_blocks_across_splits(tmp_path):
    splits = {"train": make_split(200, 4), "valid": make_split(20, 5), "test": make_split(30, 6)}
    with h5py.File(tmp_path / "train.mat", "w") as f:
        f["trainxdata"] = np.transpose(splits["train"][1], (2, 1, 0))
        f["traindata"] = splits["train"][2].T
    for split in ("valid", "test"):
        scipy.io.savemat(tmp_path / f"{split}.mat", {f"{split}xdata": splits[split][1], f"{split}data": splits[split][2]})
    reports = []
    for workers in (1, 2):
        with LabeledWriter(tmp_path / f"w{workers}.h5", window=1000, feature_names=[f"f{i}" for i in range(919)],
                           feature_groups=deepsea_feature_groups(), task="chromatin", rows_per_block=128) as out:
            reports.append(write_deepsea(out, deepsea_split_paths(tmp_path), workers=workers))  # blocks of 128 rows
    assert reports[0] == reports[1] and {s: r["rows"] for s, r in reports[0].items()} == {"train": 200, "valid": 20,
                                                                                          "test": 30}
    one, two = LabeledWindows(tmp_path / "w1.h5"), LabeledWindows(tmp_path / "w2.h5")
    expected = [s for split in ("train", "valid", "test") for s in splits[split][0]]
    assert [two.sequence(i) for i in range(250)] == expected == [one.sequence(i) for i in range(250)]
    np.testing.assert_array_equal(two.labels(), np.concatenate([splits[s][2][:n] for s, n in
                                                                (("train", 200), ("valid", 20), ("test", 30))]))
    assert two.records().equals(one.records()) and two.records()["name"][200] == "valid:0"
