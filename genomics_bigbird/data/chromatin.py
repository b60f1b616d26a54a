"""Chromatin-profile data sets (BigBird F.3): 200 bp bins with binary labels, widened to W bp windows.

Sources: (a) the DeepSEA bundle (see `deepsea.py`); (b) a bins BED with a label matrix
(`label_matrix.py`); (c) labels made from one narrowPeak file per feature (`peaks.py`): a bin is
positive for a feature when at least half of it lies in that feature's peaks (their union).
Bins, labels and windows stream a block at a time (`write_labeled_bins`). Splits follow DeepSEA: test contigs (chr8, chr9),
a validation region (chr7:30,508,751-35,296,850), other autosomes train; chrX, chrY and chrM are
left out by default and counted.
"""
from __future__ import annotations

import itertools
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import pandas as pd

from genomics_bigbird.errors import InputError
from genomics_bigbird.genome.intervals import BedRecord, read_bed
from genomics_bigbird.genome.reference import ReferenceGenome, contig_key
from genomics_bigbird.genome.windows import extract_windows
from genomics_bigbird.data.label_matrix import BLOCK_ROWS, LabelMatrix
from genomics_bigbird.data.labeled import LabeledWriter
from genomics_bigbird.data.labeled_rows import EncodedRows, encode_rows
from genomics_bigbird.parallel import ordered_map

log = logging.getLogger(__name__)

FEATURE_GROUPS = ("DHS", "TF", "HM")
_GROUP_ALIASES = {"dhs": "DHS", "dnase": "DHS", "tf": "TF", "hm": "HM", "histone": "HM"}
BIN_SIZE = 200


# ---------------------------------------------------------------- feature table

def read_feature_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a TSV of features (columns `name`, `group`, optionally `file`), one row per label column.

    Groups are DHS, TF or HM (DNase and histone are accepted as aliases).
    """
    path = Path(path)
    try:
        table = pd.read_csv(path, sep="\t", dtype=str, comment=None, keep_default_na=False)
    except FileNotFoundError:
        raise InputError("feature table not found", path) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read the feature table as TSV ({err})", path) from None
    table.columns = [c.strip().lower() for c in table.columns]
    missing = {"name", "group"} - set(table.columns)
    if missing:
        raise InputError(f"feature table needs tab-separated columns 'name' and 'group' (missing "
                         f"{sorted(missing)}; found {list(table.columns)})", path, 1)
    if table.empty:
        raise InputError("feature table has no rows", path)
    groups = []
    for row, (name, group) in enumerate(zip(table["name"], table["group"]), start=2):
        if not name.strip():
            raise InputError("feature name is empty", path, row)
        canonical = _GROUP_ALIASES.get(group.strip().lower())
        if canonical is None:
            raise InputError(f"feature {name!r} has group {group!r}; groups are {', '.join(FEATURE_GROUPS)}",
                             path, row)
        groups.append(canonical)
    table["group"] = groups
    duplicated = table["name"][table["name"].duplicated()].tolist()
    if duplicated:
        raise InputError(f"feature names must be unique; repeated: {duplicated[:5]}", path)
    return table.reset_index(drop=True)


# ---------------------------------------------------------------- splits

def parse_region(text: str) -> tuple[str, int, int]:
    """Parse `chr7:30,508,751-35,296,850` (1-based, inclusive) to (chrom, start, end) 0-based half-open."""
    match = re.fullmatch(r"\s*([^:\s]+):([\d,]+)-([\d,]+)\s*", text)
    if not match:
        raise InputError(f"region {text!r} must look like chr7:30508751-35296850")
    chrom, first, last = match[1], int(match[2].replace(",", "")), int(match[3].replace(",", ""))
    if first < 1 or last < first:
        raise InputError(f"region {text!r}: positions are 1-based with start <= end")
    return chrom, first - 1, last


@dataclass(frozen=True)
class ChromatinSplit:
    """DeepSEA's split: test contigs, a validation region (bins centered inside), other contigs train.

    Contigs in `exclude_contigs` (sex chromosomes and chrM by default) are left out of every split.
    """

    test_contigs: tuple[str, ...] = ("chr8", "chr9")
    valid_region: str = "chr7:30508751-35296850"
    exclude_contigs: tuple[str, ...] = ("chrX", "chrY", "chrM")
    _region: tuple[str, int, int] = field(init=False, repr=False, compare=False)
    _test_keys: frozenset[str] = field(init=False, repr=False, compare=False)
    _exclude_keys: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # assign() runs once per bin: parse the region and key the contig lists once here.
        region_chrom, region_start, region_end = parse_region(self.valid_region)
        object.__setattr__(self, "_region", (contig_key(region_chrom), region_start, region_end))
        object.__setattr__(self, "_test_keys", frozenset(map(contig_key, self.test_contigs)))
        object.__setattr__(self, "_exclude_keys", frozenset(map(contig_key, self.exclude_contigs)))

    def assign(self, chrom: str, start: int, end: int) -> str | None:
        """Return "train", "valid" or "test" for a bin, or None when its contig is excluded."""
        name = contig_key(chrom)
        if name in self._test_keys:
            return "test"
        region_key, region_start, region_end = self._region
        if name == region_key and region_start <= (start + end) // 2 < region_end:
            return "valid"
        if name in self._exclude_keys:
            return None
        return "train"


# ---------------------------------------------------------------- writing windows

@dataclass
class BinWindowsReport:
    """What `write_bin_windows` did: rows written, bins left out, N padding."""

    rows: int = 0
    excluded: dict[str, int] = field(default_factory=dict)  # contig -> bins left out of every split
    padded_bases: int = 0
    padded_windows: int = 0


@dataclass(frozen=True)
class BinWindowEncoder:
    """Extract, check and compress one block of bin windows (picklable: it runs in worker processes)."""

    genome: ReferenceGenome
    width: int
    n_features: int

    def __call__(self, task: tuple[list[BedRecord], np.ndarray, list[str], int]) -> tuple[EncodedRows, int, int, int]:
        """(encoded rows, padded bases, padded windows, bins read) of (kept bins, their labels, splits, bins read)."""
        records, labels, splits, read = task
        windows = list(extract_windows(self.genome, records, anchor="center", width=self.width))
        encoded = encode_rows([w.sequence for w in windows], labels, splits, window=self.width,
                              n_features=self.n_features, chrom=[w.chrom for w in windows],
                              start=[w.start for w in windows], end=[w.end for w in windows],
                              strand=["+"] * len(windows), name=[w.name for w in windows])
        padded = [w.n_padded for w in windows]
        return encoded, sum(padded), sum(p > 0 for p in padded), read


def bins_with_labels(bins: Iterable[BedRecord], labels: np.ndarray | LabelMatrix
                     ) -> Iterator[tuple[list[BedRecord], np.ndarray, int]]:
    """(bins, their label rows, bins read) a block at a time, from a bins iterable and its label matrix."""
    blocks = labels.blocks() if isinstance(labels, LabelMatrix) else (
        np.asarray(labels[first:first + BLOCK_ROWS]) for first in range(0, len(labels), BLOCK_ROWS))
    bin_iter, read = iter(bins), 0
    for block in blocks:
        chunk = list(itertools.islice(bin_iter, len(block)))
        read += len(chunk)
        if len(chunk) != len(block):
            raise ValueError(f"fewer bins ({read}) than label rows")
        yield chunk, block, len(chunk)
    if next(bin_iter, None) is not None:
        raise ValueError("more bins than label rows")


def _bin_tasks(blocks: Iterable[tuple[list[BedRecord], np.ndarray, int]], split: ChromatinSplit, block_rows: int,
               report: BinWindowsReport) -> Iterator[tuple[list[BedRecord], np.ndarray, list[str], int]]:
    """Tasks of exactly `block_rows` kept bins (the last may be shorter) with their labels, splits and bins read.

    Bins on excluded contigs are counted in `report` and dropped here.
    """
    records: list[BedRecord] = []
    label_rows: list[np.ndarray] = []
    splits: list[str] = []
    read = 0
    for chunk, labels, chunk_read in blocks:
        keep = []
        for offset, record in enumerate(chunk):
            assigned = split.assign(record.chrom, record.start, record.end)
            if assigned is None:
                report.excluded[record.chrom] = report.excluded.get(record.chrom, 0) + 1
            else:
                keep.append(offset)
                records.append(record)
                splits.append(assigned)
        label_rows.append(labels[keep])
        read += chunk_read
        while len(records) >= block_rows:
            kept = np.concatenate(label_rows)
            yield records[:block_rows], kept[:block_rows], splits[:block_rows], read
            records, splits, label_rows, read = records[block_rows:], splits[block_rows:], [kept[block_rows:]], 0
    if records or read:
        yield records, np.concatenate(label_rows), splits, read


def write_labeled_bins(writer: LabeledWriter, genome: ReferenceGenome,
                       blocks: Iterable[tuple[list[BedRecord], np.ndarray, int]], split: ChromatinSplit, width: int,
                       *, progress: Callable[[int], None] | None = None, workers: int = 1) -> BinWindowsReport:
    """Append the width-W windows centered on each bin, with the bin's labels and split, to `writer`.

    `blocks` yields (bins, their labels, bins read) a block at a time (`bins_with_labels`,
    `PeakIndex.labeled_blocks`), so memory holds a few blocks whatever the number of bins.
    `workers` processes extract and compress blocks of windows; this one writes them in bin
    order, so the file is the same for any count. `progress(n)` gets the bins each block read.
    """
    report = BinWindowsReport()
    encoder = BinWindowEncoder(genome, width, writer.n_features)
    for encoded, padded_bases, padded_windows, read in ordered_map(
            encoder, _bin_tasks(blocks, split, writer.block_rows, report), workers):
        writer.append_encoded(encoded)
        report.rows += encoded.n
        report.padded_bases += padded_bases
        report.padded_windows += padded_windows
        if progress is not None:
            progress(read)
    if report.excluded:
        log.info("left out %d bins on excluded contigs %s", sum(report.excluded.values()), report.excluded)
    return report


def write_bin_windows(writer: LabeledWriter, genome: ReferenceGenome, bins: Iterable[BedRecord],
                      labels: np.ndarray | LabelMatrix, split: ChromatinSplit, width: int, *,
                      progress: Callable[[int], None] | None = None, workers: int = 1) -> BinWindowsReport:
    """`write_labeled_bins` of bins (streamed) and their label matrix (`LabelMatrix`, or an array)."""
    return write_labeled_bins(writer, genome, bins_with_labels(bins, labels), split, width, progress=progress,
                              workers=workers)


def read_bins(path: str | os.PathLike) -> list[BedRecord]:
    """Read the bins BED (one bin per label row, in order); a bin must not be empty."""
    bins = list(read_bed(path))
    if not bins:
        raise InputError("bins BED has no records", path)
    for record in bins:
        if record.length <= 0:
            raise InputError(f"bin {record.chrom}:{record.start}-{record.end} is empty", path, record.line)
    return bins


def count_bins(path: str | os.PathLike, genome: ReferenceGenome) -> int:
    """Check every bin of a bins BED (not empty, on a contig of `genome`) without keeping them; return the count."""
    count = 0
    for record in read_bed(path):
        if record.length <= 0:
            raise InputError(f"bin {record.chrom}:{record.start}-{record.end} is empty", path, record.line)
        try:
            genome.resolve(record.chrom)
        except InputError as err:
            raise InputError(err.message, path, record.line) from None
        count += 1
    if not count:
        raise InputError("bins BED has no records", path)
    return count
