"""Rows of the labeled-windows format, checked and compressed: the part of writing that can run anywhere.

`checked_rows` validates rows as `LabeledWriter.append` takes them. `encode_rows` also
gzip-compresses the `sequences` and `labels` chunks exactly as HDF5's gzip filter stores them,
so a worker process can do the expensive part and `LabeledWriter.append_encoded` only writes the
chunks. Chunk row counts are powers of two, so a block of `LabeledWriter.block_rows` rows starts
on a chunk boundary of both datasets.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

SPLITS = ("train", "valid", "test")
GZIP_LEVEL = 4  # h5py's default gzip level; encode_rows compresses chunks the same way
_ALLOWED_BASES = np.zeros(256, dtype=bool)
_ALLOWED_BASES[list(b"ACGTN")] = True


def _power_of_two_at_most(n: int) -> int:
    return 1 << (max(1, n).bit_length() - 1)


def sequence_chunk_rows(window: int) -> int:
    """Rows per `sequences` chunk: at most 128 KiB, so random access decompresses little.

    Chunk row counts are powers of two, so blocks of `LabeledWriter.block_rows` rows start on a
    chunk boundary of every column and can be compressed in other processes (`encode_rows`).
    """
    return _power_of_two_at_most((128 * 1024) // max(window, 1))


def label_chunk_rows(n_features: int) -> int:
    """Rows per `labels` chunk: at most 64 KiB and 4096 rows, a power of two."""
    return _power_of_two_at_most(min(4096, (1 << 16) // max(n_features, 1)))


def binary(values: np.ndarray) -> bool:
    """Whether every value is 0 or 1 (without np.isin, which needs ~15x the array's memory)."""
    values = np.asarray(values)
    if values.dtype == np.bool_:
        return True
    if np.issubdtype(values.dtype, np.unsignedinteger):
        return values.size == 0 or int(values.max()) <= 1
    return bool(((values == 0) | (values == 1)).all())


def checked_rows(sequences: Sequence[str] | np.ndarray, labels: np.ndarray, split: Sequence[str], *, window: int,
                 n_features: int, first_row: int = 0, chrom: Sequence[str] | None = None,
                 start: Sequence[int] | None = None, end: Sequence[int] | None = None,
                 strand: Sequence[str] | None = None, name: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """The columns of rows to append, checked (ValueError names the problem); unnamed rows are named by number."""
    seq = np.asarray([s.encode("ascii") if isinstance(s, str) else s for s in sequences], dtype=f"S{window}")
    n = len(seq)
    raw = seq.view(np.uint8).reshape(n, -1) if n else np.zeros((0, window), np.uint8)
    if raw.shape[1] != window or (raw == 0).any():
        raise ValueError(f"every sequence must have exactly {window} bases")
    if not _ALLOWED_BASES[raw].all():
        raise ValueError("sequences may only contain upper-case A, C, G, T and N")
    labels = np.asarray(labels)
    if labels.shape != (n, n_features):
        raise ValueError(f"labels have shape {labels.shape}, expected {(n, n_features)}")
    if not binary(labels):
        raise ValueError("labels must be 0 or 1")
    split = np.asarray(split, dtype="S5")
    unknown = set(np.unique(split).astype(str)) - set(SPLITS)
    if len(split) != n or unknown:
        raise ValueError(f"split must give one of {SPLITS} per row (unknown: {sorted(unknown)})")
    values = {
        "sequences": seq, "labels": labels.astype(np.uint8), "split": split,
        "chrom": np.asarray(["."] * n if chrom is None else list(chrom), dtype=object),
        "name": np.asarray([f"{first_row + i}" for i in range(n)] if name is None else list(name), dtype=object),
        "strand": np.asarray(["+"] * n if strand is None else list(strand), dtype="S1"),
        "start": np.asarray([-1] * n if start is None else start, dtype=np.int64),
        "end": np.asarray([-1] * n if end is None else end, dtype=np.int64),
    }
    for key, value in values.items():
        if len(value) != n:
            raise ValueError(f"{key} has {len(value)} rows, expected {n}")
    return values


@dataclass
class EncodedRows:
    """Rows checked and gzip-compressed for `LabeledWriter.append_encoded`: the work a worker process does.

    `chunks` holds each compressed dataset's chunks (`sequences`, `labels`); `columns` the other
    columns, small enough for HDF5 to compress in the writing process.
    """

    n: int
    chunks: dict[str, list[bytes]]
    columns: dict[str, np.ndarray]
    split_counts: dict[str, int]
    positives: dict[str, np.ndarray]


def _compressed_chunks(values: np.ndarray, chunk_rows: int) -> list[bytes]:
    """Row chunks of `values` as HDF5's gzip filter stores them (zlib, GZIP_LEVEL), the last zero-padded."""
    chunks = []
    for first in range(0, len(values), chunk_rows):
        block = np.ascontiguousarray(values[first:first + chunk_rows])
        data = block.tobytes()
        if len(block) < chunk_rows:
            data += bytes((chunk_rows - len(block)) * (len(data) // max(len(block), 1)))
        chunks.append(zlib.compress(data, GZIP_LEVEL))
    return chunks


def encode_rows(sequences: Sequence[str] | np.ndarray, labels: np.ndarray, split: Sequence[str], *, window: int,
                n_features: int, **columns) -> EncodedRows:
    """Check and compress rows for `LabeledWriter.append_encoded` (arguments as `LabeledWriter.append`)."""
    values = checked_rows(sequences, labels, split, window=window, n_features=n_features, **columns)
    split_values = values["split"]
    return EncodedRows(
        n=len(split_values),
        chunks={"sequences": _compressed_chunks(values.pop("sequences"), sequence_chunk_rows(window)),
                "labels": _compressed_chunks(values["labels"], label_chunk_rows(n_features))},
        columns={k: v for k, v in values.items() if k != "labels"},
        split_counts={s: int((split_values == s.encode()).sum()) for s in SPLITS},
        positives={s: values["labels"][split_values == s.encode()].sum(axis=0, dtype=np.int64) for s in SPLITS})
