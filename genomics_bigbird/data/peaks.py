"""Chromatin labels from peak files (source c): a bin is positive for a feature when at least
`min_fraction` of it lies in that feature's peaks (their union).

`PeakIndex` holds each feature's peaks as merged, sorted intervals per contig in numpy arrays
(16 bytes a merged peak, not a Python object a peak), and labels bins a block at a time, so
neither the bins nor their (bins x features) label matrix are ever held whole.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from genomics_bigbird.data.chromatin import BIN_SIZE
from genomics_bigbird.errors import InputError
from genomics_bigbird.genome.intervals import BedRecord, read_narrowpeak
from genomics_bigbird.genome.reference import ReferenceGenome, contig_key

BLOCK_BINS = 4096  # bins labelled at once


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


def _covered_merged(bin_starts: np.ndarray, bin_ends: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                    cumulative: np.ndarray) -> np.ndarray:
    """Bases of each bin covered by merged intervals (`cumulative`: running total of their lengths)."""
    def covered_before(x: np.ndarray) -> np.ndarray:
        # Peaks ending at or before x count fully; the next one (if it started) partially.
        j = np.searchsorted(ends, x, side="right")
        partial = np.where(j < len(starts), np.maximum(0, x - starts[np.minimum(j, len(starts) - 1)]), 0) \
            if len(starts) else np.zeros_like(x)
        return cumulative[j] + partial

    return covered_before(bin_ends) - covered_before(bin_starts)


def covered_bases(bin_starts: np.ndarray, bin_ends: np.ndarray,
                  peak_starts: np.ndarray, peak_ends: np.ndarray) -> np.ndarray:
    """Bases of each bin [start, end) covered by the union of the peaks, by a sorted sweep (binary search)."""
    starts, ends = merge_intervals(peak_starts, peak_ends)
    return _covered_merged(np.asarray(bin_starts, dtype=np.int64), np.asarray(bin_ends, dtype=np.int64),
                           starts, ends, np.r_[0, np.cumsum(ends - starts)])


class PeakIndex:
    """Each feature's merged peaks per contig: labels for blocks of bins, and the genome tiles they touch."""

    def __init__(self, feature_names: Sequence[str], peaks: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]]):
        """`peaks`: feature -> contig key -> (starts, ends) of its peaks (any order, overlaps allowed)."""
        self.feature_names = list(feature_names)
        # contig key -> [(column, starts, ends, cumulative length)] of the features with peaks there
        self._by_contig: dict[str, list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]] = {}
        for column, feature in enumerate(self.feature_names):
            for key, (starts, ends) in peaks.get(feature, {}).items():
                merged_starts, merged_ends = merge_intervals(np.asarray(starts, np.int64), np.asarray(ends, np.int64))
                cumulative = np.r_[0, np.cumsum(merged_ends - merged_starts)]
                self._by_contig.setdefault(key, []).append((column, merged_starts, merged_ends, cumulative))

    @classmethod
    def from_records(cls, peaks: Mapping[str, Iterable[BedRecord]], feature_names: Sequence[str]) -> "PeakIndex":
        """From peak records per feature (e.g. read with `read_narrowpeak`)."""
        intervals: dict[str, dict[str, tuple[list[int], list[int]]]] = {}
        for feature, records in peaks.items():
            for peak in records:
                starts, ends = intervals.setdefault(feature, {}).setdefault(contig_key(peak.chrom), ([], []))
                starts.append(peak.start)
                ends.append(peak.end)
        return cls(feature_names, intervals)

    @classmethod
    def read(cls, files: Mapping[str, Path], genome: ReferenceGenome) -> "PeakIndex":
        """Read each feature's narrowPeak file a line at a time; a peak on a contig not in `genome` is an InputError."""
        intervals = {}
        for feature, path in files.items():
            per_contig: dict[str, tuple[list[int], list[int]]] = {}
            for peak in read_narrowpeak(path):
                try:
                    genome.resolve(peak.chrom)
                except InputError as err:
                    raise InputError(err.message, path, peak.line) from None
                starts, ends = per_contig.setdefault(contig_key(peak.chrom), ([], []))
                starts.append(peak.start)
                ends.append(peak.end)
            intervals[feature] = {key: (np.array(s, np.int64), np.array(e, np.int64))
                                  for key, (s, e) in per_contig.items()}
        return cls(list(files), intervals)

    def labels(self, bins: Sequence[BedRecord], min_fraction: float = 0.5) -> np.ndarray:
        """Labels (bins x features) uint8: 1 where >= `min_fraction` of the bin lies in that feature's peaks."""
        keys = np.array([contig_key(b.chrom) for b in bins], dtype=object)
        starts = np.array([b.start for b in bins], dtype=np.int64)
        ends = np.array([b.end for b in bins], dtype=np.int64)
        labels = np.zeros((len(bins), len(self.feature_names)), dtype=np.uint8)
        for key in dict.fromkeys(keys):
            rows = np.flatnonzero(keys == key)
            needed = min_fraction * (ends[rows] - starts[rows])
            for column, peak_starts, peak_ends, cumulative in self._by_contig.get(key, ()):
                covered = _covered_merged(starts[rows], ends[rows], peak_starts, peak_ends, cumulative)
                labels[rows, column] = covered >= needed
        return labels

    def _touched(self, genome: ReferenceGenome, bin_size: int) -> Iterator[tuple[str, np.ndarray]]:
        """(FASTA contig name, sorted indices of the whole bins any peak touches), contig by contig."""
        for name, length in genome.contigs.items():
            features = self._by_contig.get(contig_key(name), ())
            if not features:
                continue
            starts, ends = merge_intervals(np.concatenate([f[1] for f in features]),
                                           np.concatenate([f[2] for f in features]))
            first, last = starts // bin_size, -(-np.minimum(ends, length) // bin_size)
            counts = np.maximum(last - first, 0)
            index = np.repeat(first, counts) + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
            index = np.unique(index)
            yield name, index[(index + 1) * bin_size <= length]  # a partial bin at the contig end has no label

    def count_candidate_bins(self, genome: ReferenceGenome, bin_size: int = BIN_SIZE) -> int:
        return sum(len(index) for _, index in self._touched(genome, bin_size))

    def candidate_bins(self, genome: ReferenceGenome, bin_size: int = BIN_SIZE) -> Iterator[BedRecord]:
        """Genome-tiled bins ([k*bin_size, (k+1)*bin_size)) touching any peak, by contig (FASTA order) and start."""
        for name, index in self._touched(genome, bin_size):
            for start in (index * bin_size).tolist():
                yield BedRecord(name, start, start + bin_size, f"{name}:{start}-{start + bin_size}")

    def labeled_blocks(self, bins: Iterable[BedRecord], min_fraction: float = 0.5, positive_only: bool = False,
                       block: int = BLOCK_BINS) -> Iterator[tuple[list[BedRecord], np.ndarray, int]]:
        """(bins, their labels, bins read) a block at a time; `positive_only` drops bins negative for every feature."""
        iterator = iter(bins)
        while chunk := [b for _, b in zip(range(block), iterator)]:
            labels, read = self.labels(chunk, min_fraction), len(chunk)
            if positive_only:
                keep = labels.any(axis=1)
                chunk, labels = [b for b, k in zip(chunk, keep) if k], labels[keep]
            yield chunk, labels, read


def peak_labels(bins: Sequence[BedRecord], peaks: Mapping[str, Iterable[BedRecord]],
                feature_names: Sequence[str], min_fraction: float = 0.5) -> np.ndarray:
    """Labels (bins x features): 1 where >= `min_fraction` of the bin lies in that feature's peaks."""
    return PeakIndex.from_records(peaks, feature_names).labels(bins, min_fraction)


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
    """Read every feature's narrowPeak file whole (see `peak_files`; large sets: `PeakIndex.read`)."""
    return {name: list(read_narrowpeak(path)) for name, path in peak_files(directory, features).items()}
