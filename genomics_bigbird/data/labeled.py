"""Labeled windows: the one on-disk format of every fine-tuning data set (promoter, chromatin).

One HDF5 file per data set, rows in a fixed order:

    sequences  (n,)             fixed-width bytes `S{window}`, the window read 5'->3' (A/C/G/T/N)
    labels     (n, n_features)  uint8, 1 = positive
    split      (n,)             b"train" / b"valid" / b"test"
    chrom, name (n,)            UTF-8 strings ("." for sources without coordinates, e.g. DeepSEA)
    start, end (n,)             int64, 0-based half-open window on the reference (-1 when unknown)
    strand     (n,)             b"+" / b"-" (the strand the sequence is read on)
    features/name, features/group   (n_features,) the label columns and their group (DHS/TF/HM, ...)
    attrs: format, version, task, window, scheme, source, seed

The file is written under a temporary name and renamed when complete; a JSON manifest with the
counts (rows per split, positives per feature and split) is written beside it as `<stem>.json`.
torch and pandas are imported where tokens and tables are made, so writing a data set
(`gbb promoter/chromatin prepare`) imports neither.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Protocol, Sequence

import h5py
import numpy as np

from genomics_bigbird.atomic import atomic_path
from genomics_bigbird.data.labeled_rows import (
    GZIP_LEVEL, SPLITS, EncodedRows, checked_rows, label_chunk_rows, sequence_chunk_rows)
from genomics_bigbird.errors import InputError
from genomics_bigbird.genome.sequence import reverse_complement
from genomics_bigbird.manifest import write_manifest

if TYPE_CHECKING:
    import pandas as pd
    import torch

FORMAT = "genomics-bigbird labeled windows"
VERSION = 1
_STR = h5py.string_dtype("utf-8")


class Tokenizer(Protocol):
    """What `TokenizedWindows` needs of `genomics_bigbird.tokenizer.DNATokenizer`."""

    cls_id: int
    sep_id: int
    pad_id: int

    def encode(self, sequence: str) -> list[int]: ...


@dataclass
class LabeledWriter:
    """Append labeled windows to a new HDF5 file; renamed into place (with its manifest) on success.

    Use as a context manager: `with LabeledWriter(path, window=8000, ...) as out: out.append(...)`.
    """

    path: str | os.PathLike
    window: int
    feature_names: Sequence[str]
    feature_groups: Sequence[str]
    task: str
    scheme: str = ""
    source: str = ""
    seed: int | None = None
    inputs: Sequence[str | os.PathLike] = ()
    config: Mapping[str, Any] | None = None
    rows_per_block: int = 4096  # rows `encode_rows` compresses at once (rounded up to whole chunks)
    n_rows: int = field(default=0, init=False)
    split_counts: dict[str, int] = field(default_factory=lambda: {s: 0 for s in SPLITS}, init=False)
    positives: dict[str, np.ndarray] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if self.window <= 0:
            raise ValueError(f"window must be positive, got {self.window}")
        if len(self.feature_names) != len(self.feature_groups) or not self.feature_names:
            raise ValueError("feature_names and feature_groups must be non-empty and of equal length")
        self.path = Path(self.path)
        self.n_features = len(self.feature_names)
        self.positives = {s: np.zeros(self.n_features, dtype=np.int64) for s in SPLITS}
        self._atomic = None
        self._file: h5py.File | None = None

    def __enter__(self) -> "LabeledWriter":
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        self._file = h5py.File(tmp, "w")
        self._create(self._file)
        return self

    @property
    def block_rows(self) -> int:
        """Rows per `encode_rows` block (`rows_per_block` rounded up to whole chunks of every column).

        Every block passed to `append_encoded` but the last must hold exactly this many rows.
        """
        chunk = max(sequence_chunk_rows(self.window), label_chunk_rows(self.n_features))  # powers of two
        return -(-max(1, self.rows_per_block) // chunk) * chunk

    def _create(self, f: h5py.File) -> None:
        def column(name, dtype, shape=(), chunk_rows=4096):
            f.create_dataset(name, shape=(0, *shape), maxshape=(None, *shape), dtype=dtype,
                             chunks=(chunk_rows, *shape), compression="gzip", compression_opts=GZIP_LEVEL)

        column("sequences", f"S{self.window}", chunk_rows=sequence_chunk_rows(self.window))
        column("labels", np.uint8, (self.n_features,), chunk_rows=label_chunk_rows(self.n_features))
        for name, dtype in (("split", "S5"), ("chrom", _STR), ("name", _STR), ("strand", "S1"),
                            ("start", np.int64), ("end", np.int64)):
            column(name, dtype)
        group = f.create_group("features")
        group.create_dataset("name", data=np.array(list(self.feature_names), dtype=object), dtype=_STR)
        group.create_dataset("group", data=np.array(list(self.feature_groups), dtype=object), dtype=_STR)
        f.attrs.update({"format": FORMAT, "version": VERSION, "task": self.task, "window": self.window,
                        "scheme": self.scheme, "source": self.source,
                        "seed": -1 if self.seed is None else int(self.seed)})

    def append(self, sequences: Sequence[str] | np.ndarray, labels: np.ndarray, split: Sequence[str], *,
               chrom: Sequence[str] | None = None, start: Sequence[int] | None = None,
               end: Sequence[int] | None = None, strand: Sequence[str] | None = None,
               name: Sequence[str] | None = None) -> None:
        """Append rows; sequences are `window` bases of A/C/G/T/N, labels (rows, n_features) of 0/1."""
        values = checked_rows(sequences, labels, split, window=self.window, n_features=self.n_features,
                              first_row=self.n_rows, chrom=chrom, start=start, end=end, strand=strand, name=name)
        n = len(values["split"])
        if n == 0:
            return
        self._write_columns(values, n)
        for s in SPLITS:
            rows = values["split"] == s.encode()
            self.split_counts[s] += int(rows.sum())
            self.positives[s] += values["labels"][rows].sum(axis=0, dtype=np.int64)

    def append_encoded(self, rows: EncodedRows) -> None:
        """Append rows compressed by `encode_rows` (in any process) by writing their chunks as they are.

        Rows must arrive in blocks of `block_rows` (the last may be shorter), so each block starts
        on a chunk boundary.
        """
        if rows.n == 0:
            return
        if self.n_rows % self.block_rows:
            raise ValueError(f"encoded rows must follow whole blocks of {self.block_rows} rows; "
                             f"the file holds {self.n_rows}")
        for key, chunks in rows.chunks.items():
            dataset = self._file[key]
            dataset.resize(self.n_rows + rows.n, axis=0)
            chunk_rows = dataset.chunks[0]
            for index, data in enumerate(chunks):
                offset = (self.n_rows + index * chunk_rows,) + (0,) * (dataset.ndim - 1)
                dataset.id.write_direct_chunk(offset, data)
        self._write_columns(rows.columns, rows.n)
        for s in SPLITS:
            self.split_counts[s] += rows.split_counts[s]
            self.positives[s] += rows.positives[s]

    def _write_columns(self, values: Mapping[str, np.ndarray], n: int) -> None:
        for key, value in values.items():
            dataset = self._file[key]
            dataset.resize(self.n_rows + n, axis=0)
            dataset[self.n_rows:] = value
        self.n_rows += n

    def summary(self) -> dict[str, Any]:
        """Counts for reports and manifests: rows per split and positives per feature and split."""
        return {
            "path": str(self.path), "task": self.task, "scheme": self.scheme, "source": self.source,
            "window": self.window, "n_features": self.n_features, "rows": self.n_rows,
            "rows_per_split": dict(self.split_counts),
            "positives_per_split": {s: int(self.positives[s].sum()) for s in SPLITS},
            "positives_per_feature": {s: {n: int(c) for n, c in zip(self.feature_names, self.positives[s])}
                                      for s in SPLITS},
        }

    def __exit__(self, exc_type, exc, tb) -> None:
        self._file.close()
        self._atomic.__exit__(exc_type, exc, tb)
        if exc_type is None:
            write_manifest(self.path.parent, command=f"labeled windows: {self.task}", inputs=self.inputs,
                           config=self.config, seed=self.seed, outputs=self.summary(),
                           name=self.path.stem + ".json")


def _text(values: np.ndarray) -> np.ndarray:
    """Decode an HDF5 string column to a numpy array of str."""
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values], dtype=object)


class LabeledWindows:
    """Read a labeled-windows HDF5 file: metadata in memory, sequences and labels on demand.

    The HDF5 handle is opened lazily in each process, so the reader can be sent to DataLoader workers.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError("labeled-windows file not found", self.path)
        if not h5py.is_hdf5(self.path):
            raise InputError("not an HDF5 file (expected the output of `gbb promoter/chromatin prepare`)", self.path)
        import pandas as pd

        with h5py.File(self.path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise InputError(f"not a labeled-windows file (attribute format is {f.attrs.get('format')!r})", self.path)
            self.attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
            self.window = int(self.attrs["window"])
            self.features = pd.DataFrame({"name": _text(f["features/name"][:]),
                                          "group": _text(f["features/group"][:])})
            self.split = np.char.decode(f["split"][:], "ascii")  # fixed-width str: 20 bytes a row, not a str object
        self.task, self.scheme, self.source = self.attrs["task"], self.attrs["scheme"], self.attrs["source"]
        self._file: h5py.File | None = None
        self._pid = -1
        self._columns: dict[str, h5py.Dataset] = {}

    @property
    def feature_names(self) -> list[str]:
        return list(self.features["name"])

    @property
    def feature_groups(self) -> list[str]:
        return list(self.features["group"])

    def _h5(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            self._file, self._pid, self._columns = h5py.File(self.path, "r"), os.getpid(), {}
        return self._file

    def _column(self, name: str) -> h5py.Dataset:
        """An open dataset, kept: looking it up by name per row cost ~1 ms, most of a random row read."""
        f = self._h5()
        if name not in self._columns:
            self._columns[name] = f[name]
        return self._columns[name]

    def __len__(self) -> int:
        return len(self.split)

    def indices(self, split: str | None = None) -> np.ndarray:
        """Row numbers of one split (all rows when None), in file order."""
        if split is None:
            return np.arange(len(self))
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return np.flatnonzero(self.split == split)

    def sequence(self, index: int) -> str:
        """The window of row `index`, 5'->3'."""
        return self._column("sequences")[int(index)].decode("ascii")

    def sequences(self, rows: np.ndarray) -> list[str]:
        """The windows of several rows in one read (~100x cheaper per row than `sequence` for a block)."""
        rows = np.asarray(rows, dtype=np.int64)
        if not len(rows):
            return []
        first, last = int(rows.min()), int(rows.max()) + 1
        if last - first <= 4 * len(rows):  # a nearby span: one contiguous read
            block = self._column("sequences")[first:last]
            return [block[i - first].decode("ascii") for i in rows.tolist()]
        unique, inverse = np.unique(rows, return_inverse=True)
        return [s.decode("ascii") for s in self._column("sequences")[unique][inverse]]

    def labels(self, rows: np.ndarray | int | None = None) -> np.ndarray:
        """Labels (uint8) of one row, of several rows, or of all rows."""
        data = self._column("labels")
        if rows is None:
            return data[:]
        if np.ndim(rows) == 0:
            return data[int(rows)]
        # h5py reads fancy indices only in increasing order without repeats.
        unique, inverse = np.unique(np.asarray(rows, dtype=np.int64), return_inverse=True)
        if not len(unique):
            return np.zeros((0, data.shape[1]), dtype=np.uint8)
        return data[unique][inverse]

    def records(self, split: str | None = None) -> pd.DataFrame:
        """The rows' coordinates, strand, name and split as a table (BED-like, 0-based half-open)."""
        import pandas as pd

        f = self._h5()
        frame = pd.DataFrame({
            "chrom": _text(f["chrom"][:]), "start": f["start"][:], "end": f["end"][:],
            "name": _text(f["name"][:]), "strand": np.char.decode(f["strand"][:], "ascii"), "split": self.split})
        return frame if split is None else frame.iloc[self.indices(split)].reset_index(drop=True)

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file, self._pid, self._columns = None, -1, {}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_file"], state["_pid"], state["_columns"] = None, -1, {}
        return state

    def __repr__(self) -> str:
        counts = {s: int((self.split == s).sum()) for s in SPLITS}
        return f"LabeledWindows({str(self.path)!r}, task={self.task!r}, window={self.window}, {counts})"


def middle_tokens(tokens: Sequence[int], keep: int) -> Sequence[int]:
    """The middle `keep` tokens of a window too long for the model: the labeled center stays in view."""
    if len(tokens) <= keep:
        return tokens
    first = (len(tokens) - keep) // 2
    return tokens[first:first + keep]


class TokenizedWindows:
    """One split of a labeled data set as token ids: `[CLS] tokens [SEP]`, with float labels
    (a map-style dataset for torch's DataLoader).

    `reverse_complement=True` tokenizes the reverse complement of each window (for ensembling).
    `max_length` (special tokens included) keeps the middle tokens of a longer window, so the
    labeled center stays in view; None keeps every token.
    """

    def __init__(self, labeled: LabeledWindows, tokenizer: Tokenizer, split: str | None,
                 reverse_complement: bool = False, max_length: int | None = None):
        if max_length is not None and max_length < 3:
            raise ValueError(f"max_length must be at least 3 ([CLS] token [SEP]), got {max_length}")
        self.labeled = labeled
        self.tokenizer = tokenizer
        self.split = split
        self.reverse_complement = reverse_complement
        self.max_length = max_length
        self.rows = labeled.indices(split)

    def __len__(self) -> int:
        return len(self.rows)

    def input_ids(self, items: Sequence[int]) -> list[torch.Tensor]:
        """`[CLS] tokens [SEP]` (long, (length,)) of windows `items` of this split, read in one go; no labels."""
        import torch

        out = []
        for sequence in self.labeled.sequences(self.rows[np.asarray(items, dtype=np.int64)]):
            if self.reverse_complement:
                sequence = reverse_complement(sequence)
            tokens = list(self.tokenizer.encode(sequence))
            if self.max_length is not None:
                tokens = middle_tokens(tokens, self.max_length - 2)
            out.append(torch.tensor([self.tokenizer.cls_id, *tokens, self.tokenizer.sep_id], dtype=torch.long))
        return out

    def __getitem__(self, item: int) -> dict[str, torch.Tensor | int]:
        import torch

        index = int(self.rows[item])
        (ids,) = self.input_ids([item])
        return {
            "input_ids": ids,                                        # (length,)
            "attention_mask": torch.ones(len(ids), dtype=torch.bool),  # True = real token
            "labels": torch.from_numpy(self.labeled.labels(index).astype(np.float32)),  # (n_features,)
            "index": index,
        }


def collate_windows(items: Iterable[Mapping[str, Any]], pad_id: int,
                    pad_to_multiple_of: int | None = None) -> dict[str, torch.Tensor]:
    """Stack items into a batch, right-padding input_ids with `pad_id` (mask False at padding)."""
    import torch

    items = list(items)
    if not items:
        raise ValueError("cannot collate an empty batch")
    length = max(len(item["input_ids"]) for item in items)
    if pad_to_multiple_of:
        length = -(-length // pad_to_multiple_of) * pad_to_multiple_of
    input_ids = torch.full((len(items), length), pad_id, dtype=torch.long)   # (batch, length)
    attention_mask = torch.zeros((len(items), length), dtype=torch.bool)    # (batch, length)
    for row, item in enumerate(items):
        n = len(item["input_ids"])
        input_ids[row, :n] = torch.as_tensor(item["input_ids"], dtype=torch.long)
        attention_mask[row, :n] = torch.as_tensor(item["attention_mask"], dtype=torch.bool)
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "labels": torch.stack([torch.as_tensor(item["labels"], dtype=torch.float32) for item in items]),
        "index": torch.tensor([int(item["index"]) for item in items], dtype=torch.long),
    }
