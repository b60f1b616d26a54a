"""A (bins x features) 0/1 label matrix on disk (.npy or TSV), checked and read in row blocks.

DeepSEA's 4.4M bins x 919 features are 4 GB as uint8: reading the matrix whole, and checking it
with `np.isin` (which needs ~15x the array), does not fit a workstation. Here every pass holds
one block of rows. A `.npy` block is copied out of a memory map opened for that block alone
and closed after it, so the mapped pages leave the process (a map kept open would count every
page read toward its resident memory, the whole file by the end).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from genomics_bigbird.data.labeled_rows import binary
from genomics_bigbird.errors import InputError

BLOCK_ROWS = 4096  # 3.8 MB of uint8 labels at 919 features


class LabelMatrix:
    """The label matrix of a bins BED: shape and 0/1 values checked on opening, rows read in blocks.

    `.npy` files hold the matrix (any integer, float or bool dtype); TSV files hold one row per
    bin with tab-separated 0/1 values, after an optional header of the feature names in order.
    """

    def __init__(self, path: str | os.PathLike, n_bins: int, feature_names: Sequence[str],
                 block_rows: int = BLOCK_ROWS):
        self.path = Path(path)
        self.block_rows = block_rows
        if not self.path.is_file():
            raise InputError("label matrix not found", self.path)
        self.is_npy = self.path.suffix == ".npy"
        self.has_header = False
        if self.is_npy:
            try:
                shape = np.load(self.path, mmap_mode="r", allow_pickle=False).shape
            except ValueError as err:
                raise InputError(f"not a numpy .npy array of numbers ({err})", self.path) from None
        else:
            first = self.path.open().readline().rstrip("\r\n").split("\t")
            self.has_header = not all(re.fullmatch(r"[01](\.0*)?", value.strip()) for value in first)
            if self.has_header and first != list(feature_names):
                raise InputError("the label TSV's header must list the feature table's names in order", self.path, 1)
            shape = (sum(len(block) for block in self._tsv_blocks()), len(first))
        if shape != (n_bins, len(feature_names)):
            raise InputError(f"label matrix has shape {shape}; expected ({n_bins} bins, {len(feature_names)} "
                             "features) to match the bins BED and the feature table", self.path)
        self.shape = shape
        first_row = 0
        for block in self._raw_blocks():
            if not binary(block):
                bad = first_row + int(np.flatnonzero(~((block == 0) | (block == 1)).all(axis=1))[0])
                line = bad + 1 + self.has_header if not self.is_npy else None
                raise InputError(f"labels must be 0 or 1 (row {bad + 1} is not)", self.path, line)
            first_row += len(block)

    def _tsv_blocks(self) -> Iterator[np.ndarray]:
        try:
            with pd.read_csv(self.path, sep="\t", header=0 if self.has_header else None,
                             chunksize=self.block_rows) as reader:
                for frame in reader:
                    yield frame.to_numpy()
        except (pd.errors.ParserError, UnicodeDecodeError) as err:
            raise InputError(f"cannot read the label TSV ({err})", self.path) from None

    def _raw_blocks(self) -> Iterator[np.ndarray]:
        if not self.is_npy:
            yield from self._tsv_blocks()
            return
        for first in range(0, self.shape[0], self.block_rows):
            mapped = np.load(self.path, mmap_mode="r")
            block = np.array(mapped[first:first + self.block_rows])
            del mapped  # unmapped here: its pages leave this process's resident memory
            yield block

    def blocks(self) -> Iterator[np.ndarray]:
        """The rows in order, `block_rows` at a time, as uint8 arrays (block_rows, features)."""
        for block in self._raw_blocks():
            yield block.astype(np.uint8)

    def read(self) -> np.ndarray:
        """The whole matrix as uint8 (bins, features): for small matrices; large ones stream with `blocks`."""
        out = np.empty(self.shape, dtype=np.uint8)
        first = 0
        for block in self.blocks():
            out[first:first + len(block)] = block
            first += len(block)
        return out


def read_label_matrix(path: str | os.PathLike, n_bins: int, feature_names: Sequence[str]) -> np.ndarray:
    """Read a (bins x features) 0/1 matrix from `.npy` or a TSV (optional header of feature names)."""
    return LabelMatrix(path, n_bins, feature_names).read()
