"""Chromatin-profile data sets (BigBird F.3): 200 bp bins with binary labels, widened to W bp windows.

Sources: (a) the DeepSEA bundle (see `deepsea.py`); (b) a bins BED with a label matrix; (c) labels
made from one narrowPeak file per feature: a bin is positive for a feature when at least half of
it lies in that feature's peaks (their union). Splits follow DeepSEA: test contigs (chr8, chr9),
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
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from genomics_bigbird.errors import InputError
from genomics_bigbird.genome.intervals import BedRecord, read_bed, read_narrowpeak
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


# ---------------------------------------------------------------- peak overlap (source c)

def merge_intervals(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Union of half-open intervals as sorted, disjoint (starts, ends)."""
    order = np.argsort(starts, kind="stable")
    starts, ends = np.asarray(starts)[order], np.asarray(ends)[order]
    if not len(starts):
        return starts.astype(np.int64), ends.astype(np.int64)
    running_end = np.maximum.accumulate(ends)
    # A new merged interval begins where a start lies beyond every earlier end.
    begins = np.r_[True, starts[1:] > running_end[:-1]]
    group = np.cumsum(begins) - 1
    merged_starts = starts[begins]
    merged_ends = np.zeros(len(merged_starts), dtype=np.int64)
    np.maximum.at(merged_ends, group, ends)
    return merged_starts.astype(np.int64), merged_ends


def covered_bases(bin_starts: np.ndarray, bin_ends: np.ndarray,
                  peak_starts: np.ndarray, peak_ends: np.ndarray) -> np.ndarray:
    """Bases of each bin [start, end) covered by the union of the peaks, by a sorted sweep (binary search)."""
    starts, ends = merge_intervals(peak_starts, peak_ends)
    cumulative = np.r_[0, np.cumsum(ends - starts)]

    def covered_before(x: np.ndarray) -> np.ndarray:
        # Peaks ending at or before x count fully; the next one (if it started) partially.
        j = np.searchsorted(ends, x, side="right")
        partial = np.where(j < len(starts), np.maximum(0, x - starts[np.minimum(j, len(starts) - 1)]), 0) \
            if len(starts) else np.zeros_like(x)
        return cumulative[j] + partial

    bin_starts, bin_ends = np.asarray(bin_starts, dtype=np.int64), np.asarray(bin_ends, dtype=np.int64)
    return covered_before(bin_ends) - covered_before(bin_starts)


def peak_labels(bins: Sequence[BedRecord], peaks: Mapping[str, Iterable[BedRecord]],
                feature_names: Sequence[str], min_fraction: float = 0.5) -> np.ndarray:
    """Labels (bins x features): 1 where >= `min_fraction` of the bin lies in that feature's peaks."""
    chroms = np.array([contig_key(b.chrom) for b in bins], dtype=object)
    rows_of = {chrom: np.flatnonzero(chroms == chrom) for chrom in dict.fromkeys(chroms)}  # once, not per feature
    bin_starts = np.array([b.start for b in bins], dtype=np.int64)
    bin_ends = np.array([b.end for b in bins], dtype=np.int64)
    lengths = bin_ends - bin_starts
    labels = np.zeros((len(bins), len(feature_names)), dtype=np.uint8)
    for column, feature in enumerate(feature_names):
        by_chrom: dict[str, list[tuple[int, int]]] = {}
        for peak in peaks.get(feature, ()):
            by_chrom.setdefault(contig_key(peak.chrom), []).append((peak.start, peak.end))
        for chrom, intervals in by_chrom.items():
            rows = rows_of.get(chrom)
            if rows is None:
                continue
            peak_array = np.array(intervals, dtype=np.int64)
            covered = covered_bases(bin_starts[rows], bin_ends[rows], peak_array[:, 0], peak_array[:, 1])
            labels[rows, column] = covered >= min_fraction * lengths[rows]
    return labels


def peak_files(directory: str | os.PathLike, features: pd.DataFrame) -> dict[str, Path]:
    """The peak file of each feature: the table's `file` column, else `<dir>/<name>.narrowPeak[.gz]`."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError("peaks directory not found", directory)
    files = {}
    for row in features.itertuples():
        given = getattr(row, "file", "") or ""
        candidates = [directory / given] if given else [directory / f"{row.name}.narrowPeak",
                                                         directory / f"{row.name}.narrowPeak.gz"]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise InputError(f"no peak file for feature {row.name!r} (looked for "
                             f"{', '.join(p.name for p in candidates)})", directory)
        files[row.name] = path
    return files


def read_peaks_dir(directory: str | os.PathLike, features: pd.DataFrame) -> dict[str, list[BedRecord]]:
    """Read every feature's narrowPeak file (see `peak_files`)."""
    return {name: list(read_narrowpeak(path)) for name, path in peak_files(directory, features).items()}


def candidate_bins(peaks: Mapping[str, Iterable[BedRecord]], genome: ReferenceGenome,
                   bin_size: int = BIN_SIZE) -> list[BedRecord]:
    """Genome-tiled bins ([k*bin_size, (k+1)*bin_size)) touching any peak, sorted by contig and start."""
    touched: dict[str, set[int]] = {}
    for records in peaks.values():
        for peak in records:
            name = genome.resolve(peak.chrom)
            last = min(peak.end, genome.contigs[name])
            touched.setdefault(name, set()).update(range(peak.start // bin_size, -(-last // bin_size)))
    bins = []
    for name in genome.contigs:
        for k in sorted(touched.get(name, ())):
            end = min((k + 1) * bin_size, genome.contigs[name])
            if end - k * bin_size == bin_size:  # a partial bin at the contig end has no 200 bp label
                bins.append(BedRecord(name, k * bin_size, end, f"{name}:{k * bin_size}-{end}"))
    return bins


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
        """(encoded rows, padded bases, padded windows, bins consumed) of (kept bins, their labels, splits, bins)."""
        records, labels, splits, consumed = task
        windows = list(extract_windows(self.genome, records, anchor="center", width=self.width))
        encoded = encode_rows([w.sequence for w in windows], labels, splits, window=self.width,
                              n_features=self.n_features, chrom=[w.chrom for w in windows],
                              start=[w.start for w in windows], end=[w.end for w in windows],
                              strand=["+"] * len(windows), name=[w.name for w in windows])
        padded = [w.n_padded for w in windows]
        return encoded, sum(padded), sum(p > 0 for p in padded), consumed


def _label_blocks(labels: np.ndarray | LabelMatrix, rows: int) -> Iterator[np.ndarray]:
    if isinstance(labels, LabelMatrix):
        yield from labels.blocks()
        return
    for first in range(0, len(labels), rows):
        yield np.asarray(labels[first:first + rows])


def _bin_tasks(bins: Iterable[BedRecord], labels: np.ndarray | LabelMatrix, split: ChromatinSplit,
               block_rows: int, report: BinWindowsReport) -> Iterator[tuple[list[BedRecord], np.ndarray, list[str], int]]:
    """Blocks of exactly `block_rows` kept bins (the last may be shorter) with their labels and splits.

    Bins on excluded contigs are counted in `report` and dropped here; each task also says how
    many input bins it consumed, for progress.
    """
    records: list[BedRecord] = []
    label_rows: list[np.ndarray] = []
    splits: list[str] = []
    consumed = 0
    bin_iter = iter(bins)
    for block in _label_blocks(labels, BLOCK_ROWS):
        chunk = list(itertools.islice(bin_iter, len(block)))
        if len(chunk) != len(block):
            raise ValueError(f"fewer bins than label rows ({consumed + len(chunk)} bins)")
        keep = []
        for offset, record in enumerate(chunk):
            assigned = split.assign(record.chrom, record.start, record.end)
            if assigned is None:
                report.excluded[record.chrom] = report.excluded.get(record.chrom, 0) + 1
            else:
                keep.append(offset)
                records.append(record)
                splits.append(assigned)
        label_rows.append(block[keep])
        consumed += len(chunk)
        while len(records) >= block_rows:
            kept = np.concatenate(label_rows)
            yield records[:block_rows], kept[:block_rows], splits[:block_rows], consumed
            records, splits, label_rows, consumed = records[block_rows:], splits[block_rows:], [kept[block_rows:]], 0
    if next(bin_iter, None) is not None:
        raise ValueError("more bins than label rows")
    if records or consumed:
        yield records, np.concatenate(label_rows), splits, consumed


def write_bin_windows(writer: LabeledWriter, genome: ReferenceGenome, bins: Iterable[BedRecord],
                      labels: np.ndarray | LabelMatrix, split: ChromatinSplit, width: int, *,
                      progress: Callable[[int], None] | None = None, workers: int = 1) -> BinWindowsReport:
    """Append the width-W windows centered on each bin, with the bin's labels and split, to `writer`.

    Streams: bins are read and labels (`LabelMatrix`, or an array) taken in blocks, so memory
    holds a few blocks whatever the number of bins. `workers` processes extract and compress
    blocks of windows; this one writes them in bin order, so the file is the same for any count.
    `progress(n)` is called with the bins each written block consumed.
    """
    report = BinWindowsReport()
    encoder = BinWindowEncoder(genome, width, writer.n_features)
    tasks = _bin_tasks(bins, labels, split, writer.block_rows, report)
    for encoded, padded_bases, padded_windows, consumed in ordered_map(encoder, tasks, workers):
        writer.append_encoded(encoded)
        report.rows += encoded.n
        report.padded_bases += padded_bases
        report.padded_windows += padded_windows
        if progress is not None:
            progress(consumed)
    if report.excluded:
        log.info("left out %d bins on excluded contigs %s", sum(report.excluded.values()), report.excluded)
    return report


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
