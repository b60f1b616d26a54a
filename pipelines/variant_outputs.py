"""What `gbb score-variants` writes: the per-variant table, the HDF5 score matrices, and the merge of shard parts.

Both writers stream: the table row by row (TSV) or in row groups (Parquet), the matrices in whole
HDF5 chunks (rows are buffered until a chunk is full, so each compressed chunk is written once
and memory stays flat however many variants there are). Both are written under a temporary
name and renamed when complete.
"""
from __future__ import annotations

import contextlib
import functools
import heapq
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from genomics_bigbird.atomic import atomic_path, atomic_write
from genomics_bigbird.errors import InputError

if TYPE_CHECKING:  # h5py and pyarrow are imported where they write: `gbb score-variants --help` starts fast
    import pyarrow

    from genomics_bigbird.score.variants import ScoredBatch

TABLE_SUFFIXES = (".tsv", ".parquet")
H5_SUFFIXES = (".h5", ".hdf5")
INTEGER_COLUMNS = ("POS", "allele", "record_index", "n_padded")
# column -> meaning (documented in `gbb score-variants --help` and the README)
VARIANT_COLUMNS = {
    "CHROM": "contig as written in the VCF",
    "POS": "1-based position as written in the VCF",
    "ID": "VCF ID (. when missing)",
    "REF": "reference allele, upper case",
    "ALT": "this row's alternate allele: sequence alleles upper case, symbolic and breakend ones as written",
    "allele": "ALT's 1-based index among the record's ALTs (0 when ALT is .)",
    "record_index": "0-based index of the record among those read (after --region and --bed)",
    "status": "ok or padded when scored; otherwise why not (see statuses)",
    "n_padded": "bases of N past a contig end in the ref or alt window (the larger count)",
}
SUMMARY_COLUMNS = {
    "max_abs_diff": "max over features of |diff|",
    "max_abs_diff_feature": "the feature where |diff| is largest",
    "max_abs_log_odds_diff": "max over features of |log_odds_diff|",
    "max_abs_log_odds_diff_feature": "the feature where |log_odds_diff| is largest",
}
# HDF5 matrix -> formula, per variant and feature (p: sigmoid probability of a window)
MATRICES = {
    "ref": "(p(ref window) + p(reverse complement of the ref window)) / 2",
    "alt": "(p(alt window) + p(reverse complement of the alt window)) / 2",
    "diff": "alt - ref",
    "abs_diff": "|alt - ref|",
    "log_odds_diff": "logit(alt) - logit(ref), logit(p) = ln(p / (1 - p)) with p clipped to [1e-7, 1 - 1e-7]",
}
TABLE_COLUMNS = [*VARIANT_COLUMNS, *SUMMARY_COLUMNS]
MERGE_ROWS = 65536  # rows per write while merging (bounded memory)


@functools.cache
def parquet_schema() -> pyarrow.Schema:
    """The Parquet table's columns and types (TABLE_COLUMNS)."""
    import pyarrow as pa

    return pa.schema([(name, pa.int64() if name in INTEGER_COLUMNS else pa.string()) for name in VARIANT_COLUMNS]
                     + [(name, pa.string() if name.endswith("_feature") else pa.float64())
                        for name in SUMMARY_COLUMNS])


def part_path(path: Path, rank: int, world_size: int) -> Path:
    """The part file of `rank` for an output `path`: scores.tsv -> scores.part0-of-4.tsv."""
    return path.with_name(f"{path.stem}.part{rank}-of-{world_size}{path.suffix}")


def variant_columns(batch: ScoredBatch) -> dict[str, list]:
    """VARIANT_COLUMNS of a batch: the variant as written in the VCF, its ALT index, record index and status."""
    fields = {"CHROM": "chrom", "POS": "pos", "ID": "id", "REF": "ref", "ALT": "alt", "allele": "allele",
              "record_index": "record_index", "status": "status", "n_padded": "n_padded"}
    return {column: [getattr(v, field) for v in batch.variants] for column, field in fields.items()}


@dataclass
class TableRows:
    """A batch reduced to its table rows: what the main process needs of a batch when there is no --h5.

    Made where the batch was scored (`table_rows` is `score_variants`'s `prepare`), so with
    workers the (variants x features) matrices and the formatting stay in the workers. It holds
    the rows in one form, the table's: TSV text or Parquet columns.
    """

    tsv: str | None                   # the rows as TSV lines, for a TSV table
    columns: dict[str, list] | None   # TABLE_COLUMNS, for a Parquet table
    statuses: list[str]               # each variant's status, for the run's counts
    progress: int                     # input units read so far (ScoredBatch.progress)


def table_rows(batch: ScoredBatch, features: list[str], tsv: bool = True) -> TableRows:
    """The table's rows for one batch (empty summaries for unscored variants), as TSV text if `tsv`, else columns."""
    summaries = batch.summaries()
    columns = variant_columns(batch)
    for name in ("diff", "log_odds_diff"):
        columns[f"max_abs_{name}"] = [None if math.isnan(x) else x for x in summaries[f"max_abs_{name}"].tolist()]
        columns[f"max_abs_{name}_feature"] = [features[i] if i >= 0 else None
                                              for i in summaries[f"max_abs_{name}_feature"].tolist()]
    if not tsv:
        return TableRows(None, columns, columns["status"], batch.progress)
    text = "".join("\t".join(_tsv_field(value) for value in row) + "\n"
                   for row in zip(*(columns[name] for name in TABLE_COLUMNS)))
    return TableRows(text, None, columns["status"], batch.progress)


def _tsv_field(value) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


class TableWriter:
    """One row per variant to TSV (written as it comes) or Parquet (row groups of MERGE_ROWS), atomically."""

    def __init__(self, path: Path, features: list[str]):
        self.path, self.features = Path(path), features
        self.parquet = self.path.suffix.lower() == ".parquet"
        self._buffer: list[dict] = []

    def __enter__(self) -> "TableWriter":
        self._stack = contextlib.ExitStack()
        tmp = self._stack.enter_context(atomic_path(self.path))
        if self.parquet:
            import pyarrow.parquet as pq

            self._writer = pq.ParquetWriter(tmp, parquet_schema())
            self._stack.callback(self._writer.close)
            self._stack.callback(self._flush)  # runs before close (LIFO)
        else:
            self._handle = self._stack.enter_context(open(tmp, "w"))
            self._handle.write("\t".join(TABLE_COLUMNS) + "\n")
        return self

    def __exit__(self, *exc) -> bool | None:
        return self._stack.__exit__(*exc)

    def write(self, batch: ScoredBatch) -> None:
        self.write_rows(table_rows(batch, self.features, tsv=not self.parquet))

    def write_rows(self, rows: TableRows) -> None:
        """Write rows made for this table's format (`table_rows(..., tsv=not self.parquet)`)."""
        if not self.parquet:
            self._handle.write(rows.tsv)
            return
        self._buffer.append(rows.columns)
        if sum(len(c["CHROM"]) for c in self._buffer) >= MERGE_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            import pyarrow as pa

            merged = {name: [x for c in self._buffer for x in c[name]] for name in TABLE_COLUMNS}
            self._writer.write_table(pa.Table.from_pydict(merged, schema=parquet_schema()))
            self._buffer.clear()


class MatrixWriter:
    """The (variants x features) MATRICES and the variant columns in HDF5 (no-op without a path).

    Rows are buffered until a whole chunk is full and each chunk is written once: writing a few
    rows at a time into compressed chunks made HDF5 re-read and re-compress chunks, slowly, and
    made the process's memory grow with the number of variants.
    """

    def __init__(self, path: Path | None, features: list[str], attrs: dict | None = None):
        self.path, self.features, self.attrs = (Path(path) if path else None), features, attrs or {}
        self.n = 0
        self.chunk_rows = max(1, min(4096, (1 << 16) // max(len(features), 1)))  # ~256 KiB chunks of float32
        self._columns: dict[str, list] = {name: [] for name in VARIANT_COLUMNS}
        self._matrices: dict[str, list[np.ndarray]] = {name: [] for name in MATRICES}
        self._buffered = 0

    def __enter__(self) -> "MatrixWriter":
        self._stack = contextlib.ExitStack()
        if self.path is None:
            return self
        import h5py

        tmp = self._stack.enter_context(atomic_path(self.path))
        self.h5 = self._stack.enter_context(h5py.File(tmp, "w"))
        n_features = len(self.features)
        for name in MATRICES:
            self.h5.create_dataset(name, (0, n_features), maxshape=(None, n_features), dtype="f4",
                                   chunks=(self.chunk_rows, n_features), compression="gzip", compression_opts=1,
                                   fillvalue=np.nan)
        text = h5py.string_dtype("utf-8")
        for name in VARIANT_COLUMNS:
            dtype = np.int64 if name in INTEGER_COLUMNS else text
            self.h5.create_dataset(f"variants/{name}", (0,), maxshape=(None,), dtype=dtype, chunks=(self.chunk_rows,))
        self.h5.create_dataset("features/name", data=np.array(self.features, dtype=object), dtype=text)
        self.h5.attrs.update({k: v for k, v in self.attrs.items() if v is not None})
        self._stack.callback(self._finish)  # runs before the file closes (LIFO)
        return self

    def __exit__(self, exc_type, *exc) -> bool | None:
        self._failed = exc_type is not None
        return self._stack.__exit__(exc_type, *exc)

    def _finish(self) -> None:
        if not self._failed:
            self._flush(last=True)  # the last, partial chunk

    def write(self, batch: ScoredBatch) -> None:
        if self.path is None:
            return
        matrices = {"ref": batch.ref, "alt": batch.alt, "diff": batch.diff, "abs_diff": batch.abs_diff,
                    "log_odds_diff": batch.log_odds_diff}
        self.write_columns(variant_columns(batch), matrices)

    def write_columns(self, columns: dict, matrices: dict[str, np.ndarray]) -> None:
        if self.path is None:
            return
        for name in VARIANT_COLUMNS:
            self._columns[name].extend(columns[name])
        for name in MATRICES:
            self._matrices[name].append(np.asarray(matrices[name], dtype=np.float32))
        self._buffered += len(columns["CHROM"])
        if self._buffered >= self.chunk_rows:
            self._flush(False)

    def _flush(self, last: bool) -> None:
        """Write the buffered rows that fill whole chunks (all of them when `last`)."""
        take = self._buffered if last else self._buffered - self._buffered % self.chunk_rows
        if take == 0:
            return
        lo, hi = self.n, self.n + take
        for name in VARIANT_COLUMNS:
            dataset = self.h5[f"variants/{name}"]
            dataset.resize((hi,))
            dataset[lo:hi] = self._columns[name][:take]
            del self._columns[name][:take]
        for name in MATRICES:
            rows = np.concatenate(self._matrices[name])
            dataset = self.h5[name]
            dataset.resize((hi, len(self.features)))
            dataset[lo:hi] = rows[:take]
            self._matrices[name] = [rows[take:]]
        self.n, self._buffered = hi, self._buffered - take


def merge_parts(parts: list[Path], out: Path) -> Counter:
    """Merge shard outputs of one kind (tables, or HDF5 matrices) into `out` in VCF order; return status counts."""
    parts, out = [Path(p) for p in parts], Path(out)
    for part in parts:
        if not part.is_file():
            raise InputError("part not found", part)
        if part.suffix.lower() != out.suffix.lower():
            raise InputError(f"parts and their output must be the same format ({out.suffix})", part)
    return _merge_h5(parts, out) if out.suffix.lower() in H5_SUFFIXES else _merge_tables(parts, out)


def _tsv_rows(path: Path, header: str) -> Iterator[tuple[tuple[int, int], str, str]]:
    with open(path) as handle:
        if handle.readline() != header:
            raise InputError("header differs from the first part's: not parts of one run", path, 1)
        names = header.rstrip("\n").split("\t")
        record, allele, status = (names.index(n) for n in ("record_index", "allele", "status"))
        for line in handle:
            fields = line.rstrip("\n").split("\t")
            yield (int(fields[record]), int(fields[allele])), line, fields[status]


def _parquet_rows(path: Path) -> Iterator[tuple[tuple[int, int], dict, str]]:
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=MERGE_ROWS):
        for row in batch.to_pylist():
            yield (row["record_index"], row["allele"]), row, row["status"]


def _merge_tables(parts: list[Path], out: Path) -> Counter:
    """k-way merge of parts sorted by (record_index, allele): streamed, the unsharded row order."""
    counts: Counter = Counter()
    if out.suffix.lower() == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = parquet_schema()
        for part in parts:
            if not pq.read_schema(part).equals(schema):
                raise InputError("not a score-variants Parquet table (columns differ)", part)
        rows = heapq.merge(*(_parquet_rows(p) for p in parts), key=lambda r: r[0])
        with atomic_path(out) as tmp, pq.ParquetWriter(tmp, schema) as writer:
            buffer: list[dict] = []
            for _, row, status in rows:
                counts[status] += 1
                buffer.append(row)
                if len(buffer) == MERGE_ROWS:
                    writer.write_table(pa.Table.from_pylist(buffer, schema=schema))
                    buffer.clear()
            if buffer:
                writer.write_table(pa.Table.from_pylist(buffer, schema=schema))
        return counts
    with open(parts[0]) as handle:
        header = handle.readline()
    rows = heapq.merge(*(_tsv_rows(p, header) for p in parts), key=lambda r: r[0])
    with atomic_write(out) as handle:
        handle.write(header)
        for _, line, status in rows:
            counts[status] += 1
            handle.write(line)
    return counts


def _merge_h5(parts: list[Path], out: Path) -> Counter:
    """Merge HDF5 parts by (record_index, allele), copying rows in bounded chunks."""
    import h5py

    counts: Counter = Counter()
    with contextlib.ExitStack() as stack:
        files = [stack.enter_context(h5py.File(p, "r")) for p in parts]
        features = files[0]["features/name"].asstr()[:].tolist()
        for part, h5 in zip(parts, files):
            if ("variants/record_index" not in h5 or any(name not in h5 for name in MATRICES)
                    or h5["features/name"].asstr()[:].tolist() != features):
                raise InputError("not a part of the same score-variants run (datasets or features differ)", part)
        keys = [(h5["variants/record_index"][:], h5["variants/allele"][:]) for h5 in files]
        part_of = np.concatenate([np.full(len(k[0]), i) for i, k in enumerate(keys)])
        row_of = np.concatenate([np.arange(len(k[0])) for k in keys])
        order = np.lexsort((np.concatenate([k[1] for k in keys]), np.concatenate([k[0] for k in keys])))
        rows = max(1, min(MERGE_ROWS, (1 << 22) // len(features)))
        attrs = {**files[0].attrs, "shard": "0/1"}  # the merge is the unsharded run
        with MatrixWriter(out, features, attrs=attrs) as writer:
            for lo in range(0, len(order), rows):
                chosen = order[lo: lo + rows]
                columns = {name: [None] * len(chosen) for name in VARIANT_COLUMNS}
                matrices = {name: np.empty((len(chosen), len(features)), dtype=np.float32) for name in MATRICES}
                for p in np.unique(part_of[chosen]):
                    at = np.flatnonzero(part_of[chosen] == p)
                    index = row_of[chosen[at]]  # increasing: each part is in VCF order
                    for name in VARIANT_COLUMNS:
                        dataset = files[p][f"variants/{name}"]
                        values = (dataset.asstr() if dataset.dtype.kind == "O" else dataset)[index]
                        for j, value in zip(at, values.tolist()):
                            columns[name][j] = value
                    for name in MATRICES:
                        matrices[name][at] = files[p][name][index]
                counts.update(columns["status"])
                writer.write_columns(columns, matrices)
    return counts
