"""Inputs of `benchmarks/scale.py` at any size, synthetic but in the real formats, each from a seed.

- a genome FASTA (+ .fai) of random bases with N gaps like a real assembly's telomeres and
  centromeres; the largest contig can be of chr1's size class;
- a bins BED of 200 bp bins with its (bins x 919) 0/1 label matrix (.npy) and feature table;
- a DeepSEA bundle: `train.mat` in MATLAB v7.3 (HDF5 with MATLAB's 512-byte user block,
  `trainxdata` (1000, 4, N) uint8 one-hot in A, G, C, T order, `traindata` (919, N)), its second
  half the reverse complement of the first; `valid.mat` / `test.mat` in MATLAB v5, small and fixed;
- a bgzipped, tabix-indexed VCF of SNVs whose REF matches the genome;
- a tiny random-weight chromatin classifier checkpoint for a given tokenizer.

Everything is written in blocks, so generating a 1M-row input never holds it in memory.
"""
from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pysam

BIN_SIZE = 200
N_FEATURES = 919
DEEPSEA_WINDOW = 1000
FASTA_LINE = 60
BLOCK_BP = 6_000_000  # bases generated per block (a multiple of FASTA_LINE)
GAP_FRACTION = 0.01   # N at each contig start ("telomere") and in its middle ("centromere")
_BASES = np.frombuffer(b"ACGT", dtype=np.uint8)


def contig_sizes(total_bp: int, largest_bp: int | None = None) -> dict[str, int]:
    """Three contigs: chr1 (`largest_bp`, default half the genome), the rest split 2:1 into chr2 and chr3."""
    first = min(total_bp, largest_bp or total_bp // 2)
    rest = total_bp - first
    sizes = {"chr1": first, "chr2": rest * 2 // 3, "chr3": rest - rest * 2 // 3}
    return {name: size for name, size in sizes.items() if size > 0}


def _fasta_block(bases: np.ndarray) -> bytes:
    """Bases as FASTA lines of FASTA_LINE (the last line may be shorter)."""
    full = len(bases) // FASTA_LINE * FASTA_LINE
    lines = np.empty((full // FASTA_LINE, FASTA_LINE + 1), dtype=np.uint8)
    lines[:, :FASTA_LINE] = bases[:full].reshape(-1, FASTA_LINE)
    lines[:, FASTA_LINE] = ord("\n")
    tail = bases[full:].tobytes() + (b"\n" if len(bases) > full else b"")
    return lines.tobytes() + tail


def write_genome(path: Path, sizes: dict[str, int], seed: int) -> Path:
    """A FASTA of random A/C/G/T with N gaps, indexed with faidx."""
    rng = np.random.default_rng(seed)
    with open(path, "wb") as handle:
        for name, length in sizes.items():
            handle.write(f">{name}\n".encode())
            gap = int(length * GAP_FRACTION)
            middle = length // 2
            for first in range(0, length, BLOCK_BP):
                last = min(first + BLOCK_BP, length)
                bases = _BASES[rng.integers(0, 4, last - first, dtype=np.uint8)]
                positions = np.arange(first, last)
                bases[(positions < gap) | ((positions >= middle) & (positions < middle + gap))] = ord("N")
                handle.write(_fasta_block(bases))
    pysam.faidx(str(path))
    return path


def write_feature_table(path: Path, n_features: int = N_FEATURES) -> Path:
    """Feature table with DeepSEA's group layout: DHS [0:125), TF [125:815), HM [815:919)."""
    groups = ["DHS" if i < 125 else "TF" if i < 815 else "HM" for i in range(n_features)]
    path.write_text("name\tgroup\n" + "".join(f"feature_{i}\t{g}\n" for i, g in enumerate(groups)))
    return path


def write_bins(bed: Path, labels: Path | None, fasta: Path, n_bins: int, seed: int,
               n_features: int = N_FEATURES, block: int = 65536) -> tuple[Path, Path | None]:
    """`n_bins` disjoint 200 bp bins spread evenly over the genome, and their 0/1 labels (~5% positive) as .npy."""
    contigs = dict(zip(*_fai(fasta)))
    total = sum(length // BIN_SIZE for length in contigs.values())
    if n_bins > total:
        raise ValueError(f"{n_bins} bins do not fit a genome of {total} bins")
    stride = total / n_bins
    slots = (np.arange(n_bins) * stride).astype(np.int64)  # genome-wide bin slots, increasing
    bounds = np.cumsum([0] + [length // BIN_SIZE for length in contigs.values()])
    with open(bed, "w") as handle:
        for index, name in enumerate(contigs):
            mine = slots[(slots >= bounds[index]) & (slots < bounds[index + 1])] - bounds[index]
            for first in range(0, len(mine), block):
                starts = mine[first:first + block] * BIN_SIZE
                handle.write("".join(f"{name}\t{s}\t{s + BIN_SIZE}\n" for s in starts.tolist()))
    if labels is None:
        return bed, None
    rng = np.random.default_rng(seed)
    matrix = np.lib.format.open_memmap(labels, mode="w+", dtype=np.uint8, shape=(n_bins, n_features))
    for first in range(0, n_bins, block):
        last = min(first + block, n_bins)
        matrix[first:last] = rng.integers(0, 20, (last - first, n_features), dtype=np.uint8) == 0
    matrix.flush()
    del matrix
    return bed, labels


def _fai(fasta: Path) -> tuple[list[str], list[int]]:
    with pysam.FastaFile(str(fasta)) as handle:
        return list(handle.references), list(handle.lengths)


def _onehot(codes: np.ndarray) -> np.ndarray:
    """Base codes (n, length) in 0..3 = A, G, C, T to one-hot (n, 4, length) uint8."""
    return (codes[:, None, :] == np.arange(4, dtype=np.uint8)[None, :, None]).astype(np.uint8)


def _matlab_userblock(path: Path) -> None:
    """MATLAB's text header in the first 128 bytes of a v7.3 file's 512-byte user block."""
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan 1 00:00:00 2024 HDF5 schema 1.00 ."
    header = text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM"
    with open(path, "r+b") as handle:
        handle.write(header)


def write_deepsea_bundle(directory: Path, train_rows: int, seed: int, small_rows: int = 2000,
                         block: int = 8192) -> Path:
    """train.mat (v7.3, `train_rows` rows: a forward half then its reverse complements), valid/test.mat (v5)."""
    import scipy.io

    if train_rows % 2 or small_rows % 2:
        raise ValueError("a DeepSEA split is a forward half plus its reverse-complement half: use even row counts")
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    half = train_rows // 2
    train = directory / "train.mat"
    with h5py.File(train, "w", userblock_size=512) as handle:
        x = handle.create_dataset("trainxdata", (DEEPSEA_WINDOW, 4, train_rows), dtype=np.uint8)
        y = handle.create_dataset("traindata", (N_FEATURES, train_rows), dtype=np.uint8)
        for first in range(0, half, block):
            last = min(first + block, half)
            onehot = _onehot(rng.integers(0, 4, (last - first, DEEPSEA_WINDOW), dtype=np.uint8))
            labels = (rng.integers(0, 20, (last - first, N_FEATURES), dtype=np.uint8) == 0).astype(np.uint8)
            for offset, rows in ((0, onehot), (half, onehot[:, ::-1, ::-1])):  # A,G,C,T: RC reverses both axes
                x[:, :, offset + first:offset + last] = np.transpose(rows, (2, 1, 0))
                y[:, offset + first:offset + last] = labels.T
    _matlab_userblock(train)
    for split in ("valid", "test"):
        onehot = _onehot(rng.integers(0, 4, (small_rows // 2, DEEPSEA_WINDOW), dtype=np.uint8))
        labels = (rng.integers(0, 20, (small_rows // 2, N_FEATURES), dtype=np.uint8) == 0).astype(np.uint8)
        scipy.io.savemat(directory / f"{split}.mat", {
            f"{split}xdata": np.concatenate([onehot, onehot[:, ::-1, ::-1]]),
            f"{split}data": np.concatenate([labels, labels])}, format="5")
    return directory


def write_vcf(path: Path, fasta: Path, n_records: int, seed: int, margin: int = 1000) -> Path:
    """A bgzipped, tabix-indexed VCF of `n_records` SNVs at distinct sorted positions, REF from the genome."""
    rng = np.random.default_rng(seed)
    names, lengths = _fai(fasta)
    usable = np.array([max(0, length - 2 * margin) for length in lengths], dtype=np.int64)
    per_contig = np.floor(n_records * usable / usable.sum()).astype(np.int64)
    per_contig[0] += n_records - per_contig.sum()
    plain = path.with_suffix("") if path.suffix == ".gz" else path
    header = ["##fileformat=VCFv4.2", *(f"##contig=<ID={n},length={length}>" for n, length in zip(names, lengths)),
              "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    with open(plain, "w") as handle, pysam.FastaFile(str(fasta)) as genome:
        handle.write("\n".join(header) + "\n")
        for name, length, count in zip(names, lengths, per_contig.tolist()):
            sequence = genome.fetch(name)
            drawn = rng.choice(usable[names.index(name)], min(usable[names.index(name)], count * 11 // 10 + 16),
                               replace=False) + margin + 1
            drawn = drawn[[sequence[pos - 1] != "N" for pos in drawn.tolist()]]  # no variant in an N gap
            positions = np.sort(rng.choice(drawn, count, replace=False))
            shifts = rng.integers(1, 4, count)
            lines = []
            for pos, shift in zip(positions.tolist(), shifts.tolist()):
                ref = sequence[pos - 1]
                alt = "ACGT"[("ACGT".index(ref) + shift) % 4]
                lines.append(f"{name}\t{pos}\t.\t{ref}\t{alt}\t.\tPASS\t.\n")
            handle.writelines(lines)
    pysam.tabix_compress(str(plain), str(path), force=True)
    os.remove(plain)
    pysam.tabix_index(str(path), preset="vcf", force=True)
    return path


def write_tiny_classifier(directory: Path, tokenizer_path: Path, seed: int, n_features: int = N_FEATURES,
                          max_position: int = 256) -> Path:
    """A random-weight chromatin classifier (1 layer, 32 wide, full attention) for `tokenizer_path`.

    Small on purpose: the benchmark measures how the data path (reading, tokenizing, batching,
    writing) grows with the input; the forward pass of a real model is in benchmarks/score_variants.py.
    """
    import torch

    from genomics_bigbird.model import EncoderConfig, build_classifier
    from genomics_bigbird.model.checkpoint import save_checkpoint
    from genomics_bigbird.tokenizer import DNATokenizer

    tokenizer = DNATokenizer.load(tokenizer_path)
    config = EncoderConfig(vocab_size=len(tokenizer), hidden_size=32, num_layers=1, num_heads=2,
                           intermediate_size=64, max_position=max_position, attention="full", block_size=16)
    torch.manual_seed(seed)
    model = build_classifier(config, n_features)
    names = [f"feature_{i}" for i in range(n_features)]
    return save_checkpoint(directory, model, model_config=config.to_dict(), task="chromatin",
                           tokenizer_sha256=tokenizer.sha256, extra={"feature_names": names})
