"""DNA sequence utilities: reverse complement and the upper-case/N normalization of the genome layer."""
from __future__ import annotations

# IUPAC complements, both cases (case is preserved). U pairs with A. Anything else maps to itself.
_COMPLEMENT_PAIRS = "AT TA CG GC RY YR KM MK SS WW BV VB DH HD NN UA"
_COMPLEMENT_STR = {ord(p[0]): p[1] for p in _COMPLEMENT_PAIRS.split()}
_COMPLEMENT_STR.update({ord(p[0].lower()): p[1].lower() for p in _COMPLEMENT_PAIRS.split()})
_COMPLEMENT_BYTES = bytes(_COMPLEMENT_STR.get(i, chr(i)).encode("latin-1")[0] for i in range(256))

# Normalization: a/c/g/t -> A/C/G/T; every other byte (IUPAC ambiguity codes, gaps, stray
# characters) -> N. Done on bytes because bytes.translate with a 256-entry table runs at memory
# speed, several times faster than str.translate on multi-kbp windows.
_NORMALIZE_BYTES = bytes(
    ord(chr(i).upper()) if chr(i) in "ACGTacgt" else ord("N") for i in range(256))
# Normalize and complement in one pass, for minus-strand windows.
_NORMALIZE_COMPLEMENT_BYTES = bytes(_COMPLEMENT_BYTES[b] for b in _NORMALIZE_BYTES)


def reverse_complement(seq: str) -> str:
    """Return the reverse complement of `seq`, keeping case; IUPAC codes map to their complements, N to N."""
    if not seq.isascii():
        raise ValueError(f"sequence has non-ASCII characters: {seq[:40]!r}")
    return seq.encode("ascii").translate(_COMPLEMENT_BYTES)[::-1].decode("ascii")


def normalize(seq: str) -> str:
    """Return `seq` upper case with every code other than A/C/G/T as N (soft-masked bases stay bases)."""
    if not seq.isascii():
        raise ValueError(f"sequence has non-ASCII characters: {seq[:40]!r}")
    return seq.encode("ascii").translate(_NORMALIZE_BYTES).decode("ascii")


def normalize_reverse_complement(seq: str) -> str:
    """Return the normalized reverse complement of `seq` (one pass; used for `-` strand windows)."""
    if not seq.isascii():
        raise ValueError(f"sequence has non-ASCII characters: {seq[:40]!r}")
    return seq.encode("ascii").translate(_NORMALIZE_COMPLEMENT_BYTES)[::-1].decode("ascii")
