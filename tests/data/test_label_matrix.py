"""Label matrices read in row blocks: the same answer as reading them whole, in bounded memory."""
import tracemalloc

import numpy as np
import pytest

from genomics_bigbird.data.label_matrix import LabelMatrix, read_label_matrix
from genomics_bigbird.errors import InputError

NAMES = [f"f{i}" for i in range(919)]


def test_blocks_equal_the_whole_matrix_and_hold_at_most_block_rows(tmp_path):
    rng = np.random.default_rng(0)
    labels = (rng.random((2500, 919)) < 0.05).astype(np.int64)  # numpy's default integer type
    np.save(tmp_path / "labels.npy", labels)
    matrix = LabelMatrix(tmp_path / "labels.npy", 2500, NAMES, block_rows=1000)
    blocks = list(matrix.blocks())
    assert [len(b) for b in blocks] == [1000, 1000, 500] and all(b.dtype == np.uint8 for b in blocks)
    np.testing.assert_array_equal(np.concatenate(blocks), labels)
    np.testing.assert_array_equal(read_label_matrix(tmp_path / "labels.npy", 2500, NAMES), labels)


def test_checking_and_streaming_a_matrix_holds_a_few_blocks_not_the_matrix(tmp_path):
    rng = np.random.default_rng(1)
    labels = (rng.random((20_000, 919)) < 0.05).astype(np.uint8)  # 18.4 MB
    np.save(tmp_path / "labels.npy", labels)
    block_bytes = 1024 * 919
    tracemalloc.start()
    try:
        matrix = LabelMatrix(tmp_path / "labels.npy", 20_000, NAMES, block_rows=1024)  # checks every value
        positives = sum(int(block.sum()) for block in matrix.blocks())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert positives == int(labels.sum())
    assert peak < 4 * block_bytes < labels.nbytes / 4, peak  # reading it whole (or np.isin) needs > 18 MB


def test_tsv_blocks_and_bad_values_name_the_line(tmp_path):
    labels = np.array([[0, 1], [1, 1], [0, 0], [1, 0], [0, 1]], dtype=np.uint8)
    lines = ["a\tb"] + ["\t".join(map(str, row)) for row in labels]
    (tmp_path / "labels.tsv").write_text("\n".join(lines) + "\n")
    matrix = LabelMatrix(tmp_path / "labels.tsv", 5, ["a", "b"], block_rows=2)
    assert [len(b) for b in matrix.blocks()] == [2, 2, 1]
    np.testing.assert_array_equal(np.concatenate(list(matrix.blocks())), labels)
    lines[4] = "1\t2"  # row 4 of the matrix, line 5 of the file
    (tmp_path / "bad.tsv").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"bad.tsv:5: labels must be 0 or 1 \(row 4 is not\)"):
        LabelMatrix(tmp_path / "bad.tsv", 5, ["a", "b"], block_rows=2)
    np.save(tmp_path / "half.npy", np.full((5, 2), 0.5))
    with pytest.raises(InputError, match=r"labels must be 0 or 1 \(row 1 is not\)"):
        LabelMatrix(tmp_path / "half.npy", 5, ["a", "b"])
    with pytest.raises(InputError, match=r"expected \(6 bins, 2 features\)"):
        LabelMatrix(tmp_path / "labels.tsv", 6, ["a", "b"])
