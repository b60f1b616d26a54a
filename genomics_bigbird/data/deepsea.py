"""The DeepSEA training bundle (Zhou & Troyanskaya 2015; BigBird F.3 source a) decoded to sequences.

Layouts, as shipped in deepsea_train_bundle.v0.9:
- `train.mat` is MATLAB v7.3 (HDF5): `trainxdata` (1000, 4, N) one-hot, `traindata` (919, N).
- `valid.mat` / `test.mat` are MATLAB v5 (scipy.io.loadmat): `validxdata` (N, 4, 1000),
  `validdata` (N, 919), likewise `testxdata` / `testdata`.
One-hot base order is A, G, C, T; an all-zero column is N. Each split is a forward half followed by
its reverse-complement half with the same labels (row i pairs with row i + N/2). Label columns are
DNase [0:125], TF [125:815], histone marks [815:919].

We keep the forward half (reverse-complement ensembling recomputes the other strand) and check
that the second half really is the reverse complement of the first, counting mismatches.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import h5py
import numpy as np
import scipy.io

from genomics_bigbird.data.labeled import LabeledWriter
from genomics_bigbird.data.labeled_rows import EncodedRows, binary, encode_rows
from genomics_bigbird.errors import InputError
from genomics_bigbird.parallel import ordered_map

log = logging.getLogger(__name__)

DEEPSEA_WINDOW = 1000
DEEPSEA_FEATURES = 919
BASE_ORDER = b"AGCT"
# Label columns per feature group (DHS = DNase I hypersensitivity, TF = TF binding, HM = histone marks).
GROUP_COLUMNS = {"DHS": (0, 125), "TF": (125, 815), "HM": (815, 919)}
SPLIT_FILES = {"train": "train.mat", "valid": "valid.mat", "test": "test.mat"}
_DECODE = np.frombuffer(BASE_ORDER + b"N", dtype=np.uint8)


def deepsea_feature_groups(n_features: int = DEEPSEA_FEATURES) -> list[str]:
    """The group (DHS/TF/HM) of each DeepSEA label column, from the bundle's fixed column ranges."""
    if n_features != DEEPSEA_FEATURES:
        raise ValueError(f"DeepSEA has {DEEPSEA_FEATURES} label columns, not {n_features}")
    groups = [""] * n_features
    for group, (first, last) in GROUP_COLUMNS.items():
        groups[first:last] = [group] * (last - first)
    return groups


def decode_onehot(onehot: np.ndarray) -> np.ndarray:
    """Decode one-hot windows (n, 4, length) in A, G, C, T order to bytes `S{length}`; all-zero columns -> N."""
    x = np.asarray(onehot)
    if x.ndim != 3 or x.shape[1] != 4:
        raise ValueError(f"one-hot windows must have shape (n, 4, length), got {x.shape}")
    if not binary(x):
        raise ValueError("one-hot windows must hold 0/1 with at most one 1 per position")
    x = x.astype(np.uint8, copy=False)
    counts = x.sum(axis=1, dtype=np.uint8)
    if (counts > 1).any():
        raise ValueError("one-hot windows must hold 0/1 with at most one 1 per position")
    codes = x[:, 1] + 2 * x[:, 2] + 3 * x[:, 3]  # the index of the one 1 (0 when none or A)
    codes[counts == 0] = 4
    bases = np.ascontiguousarray(_DECODE[codes])  # (n, length) uint8
    return bases.view(f"S{x.shape[2]}").reshape(len(x))


def encode_onehot(sequences: list[str]) -> np.ndarray:
    """Encode equal-length sequences to one-hot (n, 4, length) uint8 in A, G, C, T order (N -> zeros)."""
    raw = np.frombuffer("".join(sequences).encode("ascii"), dtype=np.uint8).reshape(len(sequences), -1)
    onehot = np.stack([raw == base for base in BASE_ORDER], axis=1)
    return onehot.astype(np.uint8)


def reverse_complement_onehot(onehot: np.ndarray) -> np.ndarray:
    """Reverse complement of one-hot windows (n, 4, length): in A, G, C, T order both axes reverse."""
    return onehot[:, ::-1, ::-1]


@dataclass
class DeepSEAChunk:
    """Forward-strand windows of one chunk of a split, with their labels and the strand-pair check."""

    first_row: int                # index of the first forward row in the .mat file
    sequences: np.ndarray         # (n,) bytes S1000, 5'->3'
    labels: np.ndarray            # (n, 919) uint8
    n_sequence_mismatch: int      # pairs whose second-half row is not the reverse complement
    n_label_mismatch: int         # pairs whose two rows carry different labels


class DeepSEASplit:
    """One split file of the DeepSEA bundle; HDF5 (v7.3) files are streamed, MATLAB v5 ones loaded.

    The HDF5 file is opened lazily in each process, so a split can be read by worker processes.
    """

    def __init__(self, path: str | os.PathLike, split: str):
        if split not in SPLIT_FILES:
            raise ValueError(f"split must be one of {list(SPLIT_FILES)}, got {split!r}")
        self.path = Path(path)
        self.split = split
        if not self.path.is_file():
            raise InputError(f"DeepSEA {split} file not found", self.path)
        self._x_key, self._y_key = x_key, y_key = f"{split}xdata", f"{split}data"
        self._h5: h5py.File | None = None
        self._pid = -1
        self.is_hdf5 = h5py.is_hdf5(self.path)
        if self.is_hdf5:
            with h5py.File(self.path, "r") as h5:
                if x_key not in h5 or y_key not in h5:
                    raise InputError(f"HDF5 .mat file has no {x_key!r}/{y_key!r} (found {sorted(h5)})", self.path)
                x_shape, y_shape = h5[x_key].shape, h5[y_key].shape
            self._x = self._y = None
            # MATLAB v7.3 stores arrays transposed: (length, 4, N) and (features, N).
            self.n_rows, self.window, self.n_features = x_shape[2], x_shape[0], y_shape[0]
            shapes_ok = len(x_shape) == 3 and x_shape[1] == 4 and y_shape[1] == self.n_rows
        else:
            try:
                mat = scipy.io.loadmat(self.path, variable_names=[x_key, y_key])
            except Exception as err:  # scipy raises several types for files that are not .mat
                raise InputError(f"not a MATLAB .mat file ({err})", self.path) from None
            if x_key not in mat or y_key not in mat:
                raise InputError(f"MATLAB file has no {x_key!r}/{y_key!r}", self.path)
            self._x, self._y = mat[x_key], mat[y_key]
            x_shape, y_shape = self._x.shape, self._y.shape
            self.n_rows, self.window, self.n_features = x_shape[0], x_shape[-1], y_shape[-1]
            shapes_ok = self._x.ndim == 3 and x_shape[1] == 4 and y_shape[0] == self.n_rows
        if not shapes_ok:
            raise InputError(f"{x_key} {x_shape} and {y_key} {y_shape} do not have the DeepSEA layout (one-hot "
                             "windows x 4 bases, labels x features, same row count)", self.path)
        if self.n_rows % 2:
            raise InputError(f"{self.n_rows} rows: a DeepSEA split is a forward half plus its reverse-complement "
                             "half, so the row count must be even", self.path)
        self.n_forward = self.n_rows // 2

    def _rows(self, first: int, last: int) -> tuple[np.ndarray, np.ndarray]:
        """One-hot (n, 4, length) and labels (n, features) of rows [first, last)."""
        if not self.is_hdf5:
            return self._x[first:last], self._y[first:last]
        if self._h5 is None or self._pid != os.getpid():
            self._h5, self._pid = h5py.File(self.path, "r"), os.getpid()
        onehot = np.transpose(self._h5[self._x_key][:, :, first:last], (2, 1, 0))
        return onehot, self._h5[self._y_key][:, first:last].T

    def forward_rows(self, first: int, last: int) -> DeepSEAChunk:
        """Forward rows [first, last) decoded and checked against their reverse-complement partners."""
        onehot, labels = self._rows(first, last)
        rc_onehot, rc_labels = self._rows(first + self.n_forward, last + self.n_forward)
        try:
            sequences = decode_onehot(onehot)
        except ValueError as err:
            raise InputError(f"{self.split}xdata rows {first}-{last - 1}: {err}", self.path) from None
        if not binary(labels):
            raise InputError(f"{self.split}data rows {first}-{last - 1}: labels must be 0 or 1", self.path)
        seq_mismatch = (reverse_complement_onehot(onehot) != rc_onehot).any(axis=(1, 2))
        label_mismatch = (labels != rc_labels).any(axis=1)
        return DeepSEAChunk(first, sequences, labels.astype(np.uint8),
                            int(seq_mismatch.sum()), int(label_mismatch.sum()))

    def chunks(self, chunk_size: int = 8192) -> Iterator[DeepSEAChunk]:
        """Yield the forward half in chunks of `chunk_size` rows (never the whole file at once)."""
        for first in range(0, self.n_forward, chunk_size):
            yield self.forward_rows(first, min(first + chunk_size, self.n_forward))

    def close(self) -> None:
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5, self._pid = None, -1

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_h5"], state["_pid"] = None, -1
        return state

    def __enter__(self) -> "DeepSEASplit":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def deepsea_split_paths(directory: str | os.PathLike) -> dict[str, Path]:
    """The train/valid/test .mat files of an unpacked DeepSEA bundle; a missing one is an InputError."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError("DeepSEA bundle directory not found", directory)
    paths = {split: directory / name for split, name in SPLIT_FILES.items()}
    missing = [p.name for p in paths.values() if not p.is_file()]
    if missing:
        raise InputError(f"DeepSEA bundle is missing {', '.join(missing)} (expected train.mat, valid.mat, "
                         "test.mat from deepsea_train_bundle.v0.9.tar.gz)", directory)
    return paths


@dataclass(frozen=True)
class DeepSEAEncoder:
    """Decode, check and compress blocks of forward rows (picklable: it runs in worker processes)."""

    splits: dict[str, DeepSEASplit]
    window: int
    n_features: int

    def __call__(self, segments: list[tuple[str, int, int]]) -> tuple[EncodedRows, dict[str, list[int]]]:
        """(encoded rows, per split [rows, sequence mismatches, label mismatches]) of (split, first, last) ranges."""
        chunks = [(split, self.splits[split].forward_rows(first, last)) for split, first, last in segments]
        counts = {}
        for split, chunk in chunks:
            before = counts.get(split, [0, 0, 0])
            counts[split] = [before[0] + len(chunk.sequences), before[1] + chunk.n_sequence_mismatch,
                             before[2] + chunk.n_label_mismatch]
        encoded = encode_rows(
            np.concatenate([c.sequences for _, c in chunks]), np.concatenate([c.labels for _, c in chunks]),
            [split for split, c in chunks for _ in range(len(c.sequences))], window=self.window,
            n_features=self.n_features,
            name=[f"{split}:{c.first_row + i}" for split, c in chunks for i in range(len(c.sequences))])
        return encoded, counts


def _segments(splits: dict[str, DeepSEASplit], block_rows: int) -> Iterator[list[tuple[str, int, int]]]:
    """The forward rows of every split in order, cut into blocks of `block_rows` (last shorter), across splits."""
    block, size = [], 0
    for name, data in splits.items():
        first = 0
        while first < data.n_forward:
            last = min(data.n_forward, first + block_rows - size)
            block.append((name, first, last))
            size += last - first
            first = last
            if size == block_rows:
                yield block
                block, size = [], 0
    if block:
        yield block


def write_deepsea(writer: LabeledWriter, paths: dict[str, Path], *,
                  progress: Callable[[int], None] | None = None, workers: int = 1) -> dict[str, dict[str, int]]:
    """Append the forward half of each split to `writer`; return rows and strand-pair mismatches per split.

    `workers` processes decode and compress blocks of `writer.block_rows` rows; this one writes
    them in order, so the file is the same for any count.
    """
    splits = {split: DeepSEASplit(path, split) for split, path in paths.items()}
    try:
        for split, data in splits.items():
            if data.window != writer.window or data.n_features != writer.n_features:
                raise InputError(f"{split} has {data.window} bp windows and {data.n_features} labels; expected "
                                 f"{writer.window} and {writer.n_features}", data.path)
        report = {split: {"rows": 0, "sequence_mismatches": 0, "label_mismatches": 0} for split in splits}
        encoder = DeepSEAEncoder(splits, writer.window, writer.n_features)
        for encoded, counts in ordered_map(encoder, _segments(splits, writer.block_rows), workers):
            writer.append_encoded(encoded)
            for split, (rows, sequence_mismatches, label_mismatches) in counts.items():
                report[split]["rows"] += rows
                report[split]["sequence_mismatches"] += sequence_mismatches
                report[split]["label_mismatches"] += label_mismatches
            if progress is not None:
                progress(encoded.n)
    finally:
        for data in splits.values():
            data.close()
    for split, counts in report.items():
        if counts["sequence_mismatches"] or counts["label_mismatches"]:
            log.warning("%s: %d of %d rows of the second half are not the reverse complement of their "
                        "forward row, %d carry different labels", paths[split], counts["sequence_mismatches"],
                        counts["rows"], counts["label_mismatches"])
    return report
