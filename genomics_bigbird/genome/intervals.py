"""BED and narrowPeak intervals: read (plain or gzip) with line-numbered errors, write atomically."""
from __future__ import annotations

import dataclasses
import gzip
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterable, Iterator

from genomics_bigbird.atomic import atomic_write
from genomics_bigbird.errors import InputError

_STRANDS = ("+", "-", ".")
_SKIP_PREFIXES = ("track", "browser", "#")


@dataclass(frozen=True)
class BedRecord:
    """One BED line: 0-based half-open [start, end) on `chrom`; `line` is its 1-based line in the source file."""

    chrom: str
    start: int
    end: int
    name: str | None = None
    score: float | None = None
    strand: str = "."
    extra: tuple[str, ...] = ()  # columns 7+ (thickStart ... blockStarts, or narrowPeak's four)
    line: int | None = None

    @property
    def length(self) -> int:
        """Number of bases covered."""
        return self.end - self.start

    def to_fields(self) -> list[str]:
        """Return the BED columns, as few as keep every value (BED3, BED4, or BED6 + extra)."""
        fields = [self.chrom, str(self.start), str(self.end)]
        if self.extra or self.strand != "." or self.score is not None:
            fields += [self.name or ".", _format_score(self.score), self.strand, *self.extra]
        elif self.name is not None:
            fields.append(self.name)
        return fields


@dataclass(frozen=True, kw_only=True)
class NarrowPeak(BedRecord):
    """A narrowPeak line (BED6+4): signal, -log10 p and q values, and the summit offset from start (-1 = none)."""

    signal_value: float = 0.0
    p_value: float = -1.0
    q_value: float = -1.0
    peak: int = -1


def _format_score(score: float | None) -> str:
    if score is None:
        return "0"
    return str(int(score)) if float(score).is_integer() else repr(score)


def _open_text(path: Path) -> IO[str]:
    """Open a plain or gzip/bgzip text file (detected from its magic bytes, not its name)."""
    try:
        with open(path, "rb") as probe:
            magic = probe.read(2)
    except FileNotFoundError:
        raise InputError("BED file not found", path) from None
    except IsADirectoryError:
        raise InputError("expected a BED file, got a directory", path) from None
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace", newline="")
    return open(path, encoding="utf-8", errors="replace", newline="")


def _split(text: str) -> list[str]:
    """BED is tab-separated; fall back to any whitespace for space-separated files."""
    text = text.rstrip("\r\n")
    return text.split("\t") if "\t" in text else text.split()


def _coordinate(value: str, what: str, path: Path, line: int) -> int:
    try:
        return int(value)
    except ValueError:
        raise InputError(f"{what} {value!r} is not an integer; BED coordinates are whole 0-based "
                         "positions (no commas, decimals or exponents)", path, line) from None


def _number(value: str, what: str, path: Path, line: int) -> float:
    try:
        return float(value)
    except ValueError:
        raise InputError(f"{what} {value!r} is not a number", path, line) from None


def _parse(fields: list[str], path: Path, line: int) -> BedRecord:
    if len(fields) < 3:
        raise InputError(f"expected at least 3 columns (chrom, start, end), found {len(fields)}; "
                         "BED columns are separated by tabs", path, line)
    chrom = fields[0]
    start = _coordinate(fields[1], "start", path, line)
    end = _coordinate(fields[2], "end", path, line)
    if start < 0:
        raise InputError(f"start {start} is negative; BED starts are 0-based and >= 0", path, line)
    if start > end:
        raise InputError(f"start {start} > end {end}; BED intervals are [start, end) with start <= end "
                         "(swap the columns?)", path, line)
    name = fields[3] if len(fields) > 3 else None
    score = None
    if len(fields) > 4 and fields[4] != ".":
        score = _number(fields[4], "score", path, line)
    strand = fields[5] if len(fields) > 5 else "."
    if strand not in _STRANDS:
        raise InputError(f"strand {strand!r} must be '+', '-' or '.' (column 6)", path, line)
    return BedRecord(chrom, start, end, name, score, strand, tuple(fields[6:]), line)


def _records(path: Path) -> Iterator[tuple[list[str], int]]:
    with _open_text(path) as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip() or text.startswith(_SKIP_PREFIXES):
                continue
            yield _split(text), number


def read_bed(path: str | os.PathLike) -> Iterator[BedRecord]:
    """Yield the records of a BED3..BED12 file (plain or .gz) in file order; bad lines raise InputError."""
    path = Path(path)
    for fields, number in _records(path):
        yield _parse(fields, path, number)


def read_narrowpeak(path: str | os.PathLike) -> Iterator[NarrowPeak]:
    """Yield the peaks of an ENCODE narrowPeak file (BED6+4) in file order; bad lines raise InputError."""
    path = Path(path)
    for fields, number in _records(path):
        if len(fields) != 10:
            raise InputError(f"narrowPeak lines have 10 columns (BED6 + signalValue, pValue, qValue, "
                             f"peak), found {len(fields)}", path, number)
        record = _parse(fields, path, number)
        peak = _coordinate(fields[9], "peak", path, number)
        if peak != -1 and not 0 <= peak < max(record.length, 1):
            raise InputError(f"peak offset {peak} is outside the peak (length {record.length}); "
                             "use -1 for no summit", path, number)
        values = {key: _number(fields[col], key, path, number)
                  for col, key in ((6, "signal_value"), (7, "p_value"), (8, "q_value"))}
        yield NarrowPeak(**dataclasses.asdict(record), **values, peak=peak)


def write_bed(path: str | os.PathLike, records: Iterable[BedRecord]) -> int:
    """Write records as tab-separated BED through a temporary file renamed when complete; return the count."""
    count = 0
    with atomic_write(path) as handle:
        for record in records:
            handle.write("\t".join(record.to_fields()) + "\n")
            count += 1
    return count
