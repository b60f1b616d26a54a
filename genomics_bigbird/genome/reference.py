"""Random access to a reference genome (plain or bgzip FASTA) through pysam/htslib faidx."""
from __future__ import annotations

import difflib
import logging
import os
from pathlib import Path

import pysam

from genomics_bigbird.errors import InputError
from genomics_bigbird.genome.sequence import normalize, normalize_reverse_complement, reverse_complement

log = logging.getLogger(__name__)

_MITO = ("chrM", "MT", "M", "chrMT")


def contig_aliases(name: str) -> list[str]:
    """Other spellings of a contig name: `chr1` <-> `1`, `chrM` <-> `MT` <-> `M`."""
    if name in _MITO:
        return [m for m in _MITO if m != name]
    return [name[3:]] if name.startswith("chr") and len(name) > 3 else ["chr" + name]


def contig_key(name: str) -> str:
    """A spelling-independent key for comparing contig names: `chr1` == `Chr1` == `1`, `chrM` == `MT` == `M`."""
    bare = name[3:] if name[:3].lower() == "chr" and len(name) > 3 else name
    return "MT" if bare.upper() in ("M", "MT") else bare


def fasta_compression(path: str | os.PathLike) -> str:
    """Return "plain", "bgzip" or "gzip" from the file's first bytes (bgzip has the BC extra field)."""
    with open(path, "rb") as handle:
        header = handle.read(18)
    if header[:2] != b"\x1f\x8b":
        return "plain"
    has_extra = len(header) >= 14 and header[3] & 4
    return "bgzip" if has_extra and header[12:14] == b"BC" else "gzip"


class ReferenceGenome:
    """A reference FASTA with 0-based half-open `fetch`; sequences upper case, IUPAC -> N, `-` reverse-complemented.

    The pysam handle is opened lazily in each process (htslib handles are not fork-safe), so a
    ReferenceGenome can be pickled into DataLoader workers and re-opens itself there.
    `fetch_padded_count` returns the window together with the number of `N` bases padded
    beyond the contig ends; `fetch_padded` returns the window alone.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError("FASTA file not found", self.path)
        self.compression = fasta_compression(self.path)
        if self.compression == "gzip":
            raise InputError(
                "FASTA is gzip-compressed, not bgzip, so it has no random access; fix: "
                f"`gunzip -c {self.path.name} | bgzip > {self.path.stem}.gz` "
                f"(or decompress it: `gunzip {self.path.name}`)", self.path)
        if self.compression == "bgzip":
            log.warning("%s is bgzip-compressed: random access is ~25x slower than a plain FASTA; "
                        "decompress it for training-speed window extraction", self.path)
        self._handle: pysam.FastaFile | None = None
        self._pid = -1
        handle = self._open()
        self.contigs: dict[str, int] = dict(zip(handle.references, handle.lengths))
        if not self.contigs:
            raise InputError("FASTA has no sequences (is it a FASTA file?)", self.path)
        self._names: dict[str, str] = {name: name for name in self.contigs}
        for name in self.contigs:
            for alias in contig_aliases(name):
                self._names.setdefault(alias, name)

    def _open(self) -> pysam.FastaFile:
        """Return this process's pysam handle, opening it (and building indexes) when needed."""
        if self._handle is not None and self._pid == os.getpid():
            return self._handle
        missing = [p for p in self._index_paths() if not p.exists()]
        fai = Path(str(self.path) + ".fai")
        if fai.exists() and fai.stat().st_mtime < self.path.stat().st_mtime:
            log.warning("%s is older than its FASTA; if the FASTA changed, delete the .fai to rebuild it", fai)
        try:
            handle = pysam.FastaFile(str(self.path))
        except (OSError, ValueError) as err:
            raise InputError(f"cannot open or index FASTA ({err}); check that it is a FASTA file "
                             "in a writable directory, or index it with `samtools faidx`", self.path) from None
        for index in missing:
            if index.exists():
                log.info("built index %s", index)
        self._handle, self._pid = handle, os.getpid()
        return handle

    def _index_paths(self) -> list[Path]:
        suffixes = [".fai", ".gzi"] if self.compression == "bgzip" else [".fai"]
        return [Path(str(self.path) + suffix) for suffix in suffixes]

    def resolve(self, name: str) -> str:
        """Return the FASTA's own name for contig `name` (`chr1`/`1`, `chrM`/`MT`/`M` are aliases)."""
        try:
            return self._names[name]
        except KeyError:
            pass
        closest = difflib.get_close_matches(name, list(self.contigs), n=3, cutoff=0.5)
        hint = f"closest: {', '.join(closest)}" if closest else f"contigs: {', '.join(list(self.contigs)[:5])}"
        raise InputError(f"unknown contig {name!r}: not in {self.path.name} ({hint})", self.path)

    def fetch(self, contig: str, start: int, end: int, strand: str = "+") -> str:
        """Return bases [start, end) of `contig`, 5'->3' on `strand`; ValueError outside the contig."""
        name = self.resolve(contig)
        length = self.contigs[name]
        if not 0 <= start <= end <= length:
            raise ValueError(f"interval {contig}:{start}-{end} is outside {name} (length {length}) "
                             "or has start > end")
        if strand not in ("+", "-"):
            raise ValueError(f"strand must be '+' or '-', got {strand!r}")
        raw = self._open().fetch(name, start, end) if end > start else ""
        return normalize(raw) if strand == "+" else normalize_reverse_complement(raw)

    def fetch_padded_count(self, contig: str, start: int, end: int, strand: str = "+") -> tuple[str, int]:
        """Return (window, n_padded): bases [start, end) with `N` beyond either contig end, never shortened."""
        if start > end:
            raise ValueError(f"interval {contig}:{start}-{end} has start > end")
        if strand not in ("+", "-"):
            raise ValueError(f"strand must be '+' or '-', got {strand!r}")
        name = self.resolve(contig)
        length = self.contigs[name]
        left = min(max(0, -start), end - start)
        right = min(max(0, end - length), end - start - left)
        inner = self.fetch(name, min(max(start, 0), length), max(min(end, length), 0), "+")
        seq = "N" * left + inner + "N" * right
        if strand == "-":
            seq = reverse_complement(seq)
        return seq, left + right

    def fetch_padded(self, contig: str, start: int, end: int, strand: str = "+") -> str:
        """Return bases [start, end) of `contig`, N-padded beyond either contig end."""
        return self.fetch_padded_count(contig, start, end, strand)[0]

    def close(self) -> None:
        """Close the FASTA handle (it re-opens on the next fetch)."""
        if self._handle is not None and self._pid == os.getpid():
            self._handle.close()
        self._handle, self._pid = None, -1

    def __enter__(self) -> "ReferenceGenome":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handle"], state["_pid"] = None, -1
        return state

    def __repr__(self) -> str:
        return f"ReferenceGenome({str(self.path)!r}, {len(self.contigs)} contigs)"
