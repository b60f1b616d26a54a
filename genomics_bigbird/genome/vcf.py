"""Reading VCF/BCF files through pysam without htslib's console noise, and saying exactly what is wrong.

htslib prints to stderr on its own (`[E::idx_find_and_load] Could not retrieve index file` for
every unindexed VCF.gz or BCF, `[W::vcf_parse] Contig ... not defined`, `[E::vcf_parse] ...`),
whatever the caller's logging says. `quiet_htslib` turns that off while a file is opened and
read; what matters reaches the user as our own log lines or as an `InputError` that names the
file, the line and the problem (`header_problem`, `record_problem`).
"""
from __future__ import annotations

import contextlib
import gzip
import os
import re
from pathlib import Path
from typing import Iterator

import pysam

from genomics_bigbird.errors import InputError

VCF_COLUMNS = ["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO"]
_SEQUENCE = re.compile(r"^[ACGTNacgtn]+$")


@contextlib.contextmanager
def quiet_htslib() -> Iterator[None]:
    """Silence htslib's own stderr messages inside the block (process-wide; restored afterwards)."""
    previous = pysam.set_verbosity(0)
    try:
        yield
    finally:
        pysam.set_verbosity(previous)


def text_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its newline) of a plain or gzip/bgzip text file."""
    with open(path, "rb") as probe:
        opener = gzip.open if probe.read(2) == b"\x1f\x8b" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            yield number, line.rstrip("\r\n")


def is_binary(path: str | os.PathLike) -> bool:
    """True for BCF (plain or bgzip-compressed)."""
    with open(path, "rb") as probe:
        magic = probe.read(3)
    if magic[:2] == b"\x1f\x8b":
        with gzip.open(path, "rb") as handle:
            return handle.read(3) == b"BCF"
    return magic == b"BCF"


def count_records(vcf: pysam.VariantFile, path: Path, fetch_args: tuple | None) -> int:
    """Records in the file (or in `fetch_args`'s region): from the index when there is one, else one pass.

    `vcf` is an open, not yet read handle of `path`.
    """
    if fetch_args is not None:
        return sum(1 for _ in vcf.fetch(*fetch_args))
    if vcf.index is not None:
        from pysam import bcftools

        try:
            return int(bcftools.index("--nrecords", str(path)).strip())
        except (pysam.utils.SamtoolsError, ValueError):
            pass  # an index without record counts: count them
    if is_binary(path):
        return sum(1 for _ in vcf)  # the caller's handle, not yet read
    return sum(1 for _, line in text_lines(path) if line and not line.startswith("#"))


def header_problem(path: Path) -> InputError:
    """Find the line that makes a VCF header unreadable (pysam says only 'invalid header')."""
    if is_binary(path):
        return InputError("BCF header could not be read (truncated or corrupt file?)", path)
    for number, line in text_lines(path):
        if number == 1 and not line.startswith("##fileformat=VCF"):
            return InputError("not a VCF: the first line must be ##fileformat=VCFv4.x", path, 1)
        if line.startswith("##"):
            value = line.partition("=")[2]
            if "=" not in line or (value.startswith("<") and not value.endswith(">")):
                return InputError(f"malformed meta-information line: {line[:80]}", path, number)
        elif line.startswith("#"):
            if line.split("\t")[:8] != VCF_COLUMNS:
                return InputError("the #CHROM line must have the tab-separated columns "
                                  f"{' '.join(VCF_COLUMNS)} [FORMAT samples...]", path, number)
            break
        else:
            return InputError("header has no #CHROM line before the first record", path, number)
    return InputError("VCF header could not be read", path)


def describe_record(line: str) -> str:
    """What is wrong with a data line that htslib refused, in words (the line itself follows in the message)."""
    fields = line.split("\t")
    if len(fields) < 8:
        spaces = " (are the columns separated by spaces instead of tabs?)" if " " in line else ""
        return (f"it has {len(fields)} tab-separated column{'s' if len(fields) != 1 else ''}, a record needs "
                f"at least 8: CHROM POS ID REF ALT QUAL FILTER INFO{spaces}")
    pos, ref = fields[1], fields[3]
    if not pos.isdigit():
        return f"POS {pos!r} is not a whole number (1-based position; 0 marks a telomere)"
    if not _SEQUENCE.match(ref):
        return f"REF {ref!r} is not a sequence of A, C, G, T or N"
    if fields[7] == "":
        return "INFO is empty (write . for no INFO)"
    return "htslib could not parse it (check QUAL, FILTER, INFO and FORMAT against the header)"


def record_problem(path: Path, fetch_args: tuple | None, ordinal: int, err: Exception) -> InputError:
    """Point at the malformed record number `ordinal` (0-based among records read) by its line."""
    if is_binary(path):
        return InputError(f"malformed BCF record #{ordinal + 1} ({err})", path)
    if fetch_args is None:
        data_lines = ((n, line) for n, line in text_lines(path) if line and not line.startswith("#"))
        target = None
    else:
        with quiet_htslib(), pysam.TabixFile(str(path)) as tabix:
            target = next((t for i, t in enumerate(tabix.fetch(*fetch_args)) if i == ordinal), None)
        data_lines = ((n, line) for n, line in text_lines(path) if line == target)
    for i, (number, line) in enumerate(data_lines):
        if target is not None or i == ordinal:
            shown = line if len(line) <= 120 else line[:117] + "..."
            return InputError(f"malformed VCF record, {describe_record(line)}: {shown}", path, number)
    return InputError(f"malformed VCF record #{ordinal + 1} ({err})", path)
