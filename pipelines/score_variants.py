"""`gbb score-variants`: VCF + FASTA + fine-tuned checkpoint -> per-variant effect scores.

One row per (record, ALT) in VCF order, unscored statuses included (their scores are empty):
`CHROM POS ID REF ALT allele record_index status n_padded` then the summaries `max_abs_diff`,
`max_abs_diff_feature`, `max_abs_log_odds_diff`, `max_abs_log_odds_diff_feature`. The table is
TSV or Parquet by the extension of `--out`. `--h5` adds the full (variants x features) matrices
`ref`, `alt`, `diff`, `log_odds_diff` (float32, NaN rows for unscored variants), the variant
columns under `variants/` and the feature names under `features/name`.

Sharding: `--shard i/n` (0 <= i < n) scores the records with `record_index % n == i`;
`gbb score-variants --merge PART... --out MERGED` restores VCF order, so merged shards equal the
unsharded run. Under torchrun (RANK/WORLD_SIZE set, no --shard) every rank writes
`<out>.part<rank>-of-<n>.<ext>` and rank 0 waits for the others' finished parts, merges them into
`--out` (and `--h5`) and removes the parts.
"""
from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import math
import os
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from genomics_bigbird.atomic import atomic_path, atomic_write
from genomics_bigbird.errors import InputError
from genomics_bigbird.genome.reference import ReferenceGenome
from genomics_bigbird.genome.variants import VariantSource
from genomics_bigbird.tokenizer import DNATokenizer
from pipelines.job import Job

if TYPE_CHECKING:  # torch is imported where a model runs: `--help` and `--merge` start without it
    import torch

    from genomics_bigbird.score.variants import ScoredBatch

TABLE_SUFFIXES = (".tsv", ".parquet")
H5_SUFFIXES = (".h5", ".hdf5")
VARIANT_COLUMNS = ("CHROM", "POS", "ID", "REF", "ALT", "allele", "record_index", "status", "n_padded")
SUMMARY_COLUMNS = ("max_abs_diff", "max_abs_diff_feature", "max_abs_log_odds_diff", "max_abs_log_odds_diff_feature")
MATRICES = ("ref", "alt", "diff", "log_odds_diff")
MERGE_ROWS = 65536  # rows per write while merging (bounded memory)
POLL_S = 5.0


def add_arguments(parser: argparse.ArgumentParser, command: tuple[str, ...]) -> None:
    parser.add_argument("--vcf", type=Path, help="variants: VCF, VCF.gz (bgzip + tabix for --region) or BCF")
    parser.add_argument("--fasta", type=Path, help="reference FASTA (plain or bgzip) the VCF was called on")
    parser.add_argument("--checkpoint", type=Path, help="fine-tuned checkpoint directory (gbb finetune)")
    parser.add_argument("--tokenizer", type=Path, help="the tokenizer model (.model) the checkpoint was trained with")
    parser.add_argument("--out", required=True, type=Path, help="scores table: .tsv or .parquet")
    parser.add_argument("--h5", type=Path, help="also write the (variants x features) matrices to this .h5")
    parser.add_argument("--width", type=int, default=8000, help="window width in bp (default 8000)")
    parser.add_argument("--region", help="only variants in chr:start-end (1-based; needs a tabix-indexed VCF)")
    parser.add_argument("--bed", type=Path, help="only variants overlapping these BED intervals")
    parser.add_argument("--batch-size", type=int, default=16, help="windows per forward pass (default 16)")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    parser.add_argument("--shard", help="i/n: score only the i-th (0-based) of n record shards")
    parser.add_argument("--merge", nargs="+", type=Path, metavar="PART",
                        help="merge shard outputs (all tables or all .h5) into --out, in VCF order")
    parser.add_argument("--merge-timeout", type=float, default=3600.0,
                        help="torchrun: seconds rank 0 waits for the other ranks' parts (default 3600)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or console log")


def run(args: argparse.Namespace) -> int:
    if args.merge:
        merge_parts(args.merge, args.out, quiet=args.quiet)
        return 0
    missing = [f"--{name}" for name in ("vcf", "fasta", "checkpoint", "tokenizer") if getattr(args, name) is None]
    if missing:
        raise InputError(f"{', '.join(missing)} required (or --merge PART... to merge shard outputs)")
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    common = dict(width=args.width, region=args.region, bed=args.bed, batch_size=args.batch_size, quiet=args.quiet)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if args.shard is not None or world_size == 1:
        main(args.vcf, args.fasta, args.checkpoint, args.tokenizer, args.out, h5=args.h5, device=device,
             shard=parse_shard(args.shard) if args.shard else (0, 1), **common)
        return 0
    rank = int(os.environ.get("RANK", "0"))
    if device == "cuda":
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    main_distributed(args.vcf, args.fasta, args.checkpoint, args.tokenizer, args.out, h5=args.h5, device=device,
                     rank=rank, world_size=world_size, timeout_s=args.merge_timeout, **common)
    return 0


def parse_shard(text: str) -> tuple[int, int]:
    """Parse `i/n` (0 <= i < n) into (i, n)."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise InputError(f"--shard {text!r} must look like i/n, e.g. 0/4") from None
    if not 0 <= index < count:
        raise InputError(f"--shard {text!r}: i must be in [0, n), e.g. 0/4 ... 3/4")
    return index, count


def load_scoring_model(checkpoint: Path, tokenizer: DNATokenizer) -> tuple[torch.nn.Module, list[str], dict]:
    """(classifier, feature names, metadata) of a fine-tuned checkpoint trained with `tokenizer`."""
    from genomics_bigbird.evaluate.classifier import load_classifier

    model, meta = load_classifier(checkpoint, tokenizer.sha256, tokenizer.path)
    num_labels = model.head.classifier.weight.shape[0]
    names = meta.get("extra", {}).get("feature_names") or (
        [meta["task"]] if num_labels == 1 and meta.get("task") else [f"feature_{i}" for i in range(num_labels)])
    if len(names) != num_labels:
        raise InputError(f"checkpoint lists {len(names)} feature names for {num_labels} outputs", checkpoint)
    return model, list(names), meta


def main(vcf: Path, fasta: Path, checkpoint: Path, tokenizer: Path, out: Path, *, h5: Path | None = None,
         width: int = 8000, region: str | None = None, bed: Path | None = None, batch_size: int = 16,
         device: str = "cpu", shard: tuple[int, int] = (0, 1), quiet: bool = False) -> dict:
    """Score every (record, ALT) of `vcf` (shard `shard`) into the table `out` and optionally `h5`."""
    from genomics_bigbird.model.checkpoint import META_NAME, WEIGHTS_NAME
    from genomics_bigbird.score.variants import score_variants

    vcf, fasta, checkpoint, tokenizer, out = map(Path, (vcf, fasta, checkpoint, tokenizer, out))
    if out.suffix.lower() not in TABLE_SUFFIXES:
        raise InputError(f"--out must end in {' or '.join(TABLE_SUFFIXES)}", out)
    if h5 is not None and Path(h5).suffix.lower() not in H5_SUFFIXES:
        raise InputError(f"--h5 must end in {' or '.join(H5_SUFFIXES)}", h5)
    if width < 1 or batch_size < 1:
        raise InputError(f"--width and --batch-size must be positive, got {width} and {batch_size}")
    tok = DNATokenizer.load(tokenizer)
    model, features, meta = load_scoring_model(checkpoint, tok)  # before any output: a mismatch writes nothing
    genome = ReferenceGenome(fasta)
    source = VariantSource(vcf, genome, width, region=region, bed=bed, rank=shard[0], world_size=shard[1])
    inputs = [vcf, fasta, tokenizer, checkpoint / META_NAME, checkpoint / WEIGHTS_NAME] + ([bed] if bed else [])
    config = {"width": width, "region": region, "batch_size": batch_size, "shard": f"{shard[0]}/{shard[1]}",
              "task": meta.get("task"), "n_features": len(features)}
    with Job("score-variants", out.parent, inputs=inputs, config=config, quiet=quiet,
             manifest_name=f"{out.name}.manifest.json", log_name=f"{out.name}.log") as job:
        job.log.info("%d features (%s) from %s on %s; %d bp windows, shard %d/%d", len(features),
                     meta.get("task"), checkpoint, device, width, *shard)
        model.to(device)
        counts: Counter = Counter()
        bar = job.progress(desc="variants", unit="var")
        try:
            with TableWriter(out, features) as table, MatrixWriter(h5, features, attrs=config) as matrices:
                for batch in score_variants(model, tok, source, num_features=len(features), batch_size=batch_size,
                                            device=device, max_tokens=model.encoder.max_position,
                                            length_multiple=meta["model_config"].get("block_size", 64)):
                    table.write(batch)
                    matrices.write(batch)
                    counts.update(v.status for v in batch.variants)
                    bar.update(len(batch.variants))
        finally:
            bar.close()
            genome.close()
        n = sum(counts.values())
        job.log.info("%d variants: %s", n, ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        job.outputs.update({"table": str(out), "h5": str(h5) if h5 else None, "n_variants": n,
                            "n_scored": counts["ok"] + counts["padded"], "status_counts": dict(sorted(counts.items()))})
    return job.outputs


def main_distributed(vcf: Path, fasta: Path, checkpoint: Path, tokenizer: Path, out: Path, *, rank: int,
                     world_size: int, h5: Path | None = None, timeout_s: float = 3600.0, **options) -> dict:
    """Score this rank's shard into part files; rank 0 then waits for every part and merges them."""
    out = Path(out)
    parts = [part_path(out, r, world_size) for r in range(world_size)]
    h5_parts = [part_path(Path(h5), r, world_size) for r in range(world_size)] if h5 else []
    mine = main(vcf, fasta, checkpoint, tokenizer, parts[rank], h5=h5_parts[rank] if h5 else None,
                shard=(rank, world_size), **options)
    if rank != 0:
        return mine
    own = json.loads((parts[0].parent / f"{parts[0].name}.manifest.json").read_text())
    for r, part in enumerate(parts[1:], start=1):
        _wait_for_part(part, own, r, world_size, timeout_s)
    merged = merge_parts(parts, out, quiet=options.get("quiet", False))
    if h5:
        merge_parts(h5_parts, Path(h5), quiet=options.get("quiet", False))
    for part in parts + h5_parts:
        part.unlink()
    for part in parts:
        (part.parent / f"{part.name}.manifest.json").unlink()
    return merged


def _wait_for_part(part: Path, own: dict, rank: int, world_size: int, timeout_s: float) -> None:
    """Wait until `part` is finished by this run (its manifest names the same inputs and config)."""
    manifest = part.parent / f"{part.name}.manifest.json"
    expected = {**own["config"], "shard": f"{rank}/{world_size}"}
    deadline = time.monotonic() + timeout_s
    while True:
        if manifest.is_file() and part.is_file():
            theirs = json.loads(manifest.read_text())
            same_inputs = [i["sha256"] for i in theirs["inputs"]] == [i["sha256"] for i in own["inputs"]]
            if same_inputs and theirs["config"] == expected:
                return
        if time.monotonic() > deadline:
            raise InputError(f"rank {rank}'s part was not finished within {timeout_s:.0f} s "
                             f"(see {part.name}.log)", part)
        time.sleep(POLL_S)


# --- outputs: streamed table and HDF5 matrices, and the merge of shard parts -------------------


def part_path(path: Path, rank: int, world_size: int) -> Path:
    """The part file of `rank` for an output `path`: scores.tsv -> scores.part0-of-4.tsv."""
    return path.with_name(f"{path.stem}.part{rank}-of-{world_size}{path.suffix}")


def _variant_columns(batch: ScoredBatch) -> dict[str, list]:
    """VARIANT_COLUMNS of a batch: the variant as written in the VCF, its ALT index, record index and status."""
    fields = {"CHROM": "chrom", "POS": "pos", "ID": "id", "REF": "ref", "ALT": "alt", "allele": "allele",
              "record_index": "record_index", "status": "status", "n_padded": "n_padded"}
    return {column: [getattr(v, field) for v in batch.variants] for column, field in fields.items()}


def _summary_rows(batch: ScoredBatch, features: list[str]) -> dict[str, list]:
    """The table's columns for one batch (None for the summaries of unscored variants)."""
    summaries = batch.summaries()
    columns = _variant_columns(batch)
    for name in ("diff", "log_odds_diff"):
        columns[f"max_abs_{name}"] = [None if math.isnan(x) else x for x in summaries[f"max_abs_{name}"].tolist()]
        columns[f"max_abs_{name}_feature"] = [features[i] if i >= 0 else None
                                              for i in summaries[f"max_abs_{name}_feature"].tolist()]
    return columns


def _tsv_field(value) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


PARQUET_SCHEMA = pa.schema(
    [(name, pa.int64() if name in ("POS", "allele", "record_index", "n_padded") else pa.string())
     for name in VARIANT_COLUMNS]
    + [(name, pa.string() if name.endswith("_feature") else pa.float64()) for name in SUMMARY_COLUMNS])


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
            self._writer = pq.ParquetWriter(tmp, PARQUET_SCHEMA)
            self._stack.callback(self._writer.close)
            self._stack.callback(self._flush)  # runs before close (LIFO)
        else:
            self._handle = self._stack.enter_context(open(tmp, "w"))
            self._handle.write("\t".join(VARIANT_COLUMNS + SUMMARY_COLUMNS) + "\n")
        return self

    def __exit__(self, *exc) -> bool | None:
        return self._stack.__exit__(*exc)

    def write(self, batch: ScoredBatch) -> None:
        self.write_columns(_summary_rows(batch, self.features))

    def write_columns(self, columns: dict[str, list]) -> None:
        if self.parquet:
            self._buffer.append(columns)
            if sum(len(c["CHROM"]) for c in self._buffer) >= MERGE_ROWS:
                self._flush()
            return
        names = VARIANT_COLUMNS + SUMMARY_COLUMNS
        for row in zip(*(columns[name] for name in names)):
            self._handle.write("\t".join(_tsv_field(value) for value in row) + "\n")

    def _flush(self) -> None:
        if self._buffer:
            merged = {name: [x for c in self._buffer for x in c[name]] for name in PARQUET_SCHEMA.names}
            self._writer.write_table(pa.Table.from_pydict(merged, schema=PARQUET_SCHEMA))
            self._buffer.clear()


class MatrixWriter:
    """The (variants x features) score matrices and variant columns in HDF5, grown per batch (no-op without a path)."""

    def __init__(self, path: Path | None, features: list[str], attrs: dict | None = None):
        self.path, self.features, self.attrs = (Path(path) if path else None), features, attrs or {}
        self.n = 0

    def __enter__(self) -> "MatrixWriter":
        self._stack = contextlib.ExitStack()
        if self.path is None:
            return self
        tmp = self._stack.enter_context(atomic_path(self.path))
        self.h5 = self._stack.enter_context(h5py.File(tmp, "w"))
        n_features = len(self.features)
        rows = max(1, min(4096, (1 << 16) // n_features))  # ~256 KiB chunks of float32
        for name in MATRICES:
            self.h5.create_dataset(name, (0, n_features), maxshape=(None, n_features), dtype="f4",
                                   chunks=(rows, n_features), compression="gzip", compression_opts=1,
                                   fillvalue=np.nan)
        text = h5py.string_dtype("utf-8")
        for name in VARIANT_COLUMNS:
            dtype = np.int64 if name in ("POS", "allele", "record_index", "n_padded") else text
            self.h5.create_dataset(f"variants/{name}", (0,), maxshape=(None,), dtype=dtype, chunks=(4096,))
        self.h5.create_dataset("features/name", data=np.array(self.features, dtype=object), dtype=text)
        self.h5.attrs.update({k: v for k, v in self.attrs.items() if v is not None})
        return self

    def __exit__(self, *exc) -> bool | None:
        return self._stack.__exit__(*exc)

    def write(self, batch: ScoredBatch) -> None:
        matrices = {"ref": batch.ref, "alt": batch.alt, "diff": batch.diff, "log_odds_diff": batch.log_odds_diff}
        self.write_columns(_variant_columns(batch), matrices)

    def write_columns(self, columns: dict, matrices: dict[str, np.ndarray]) -> None:
        if self.path is None:
            return
        lo, hi = self.n, self.n + len(columns["CHROM"])
        for name in VARIANT_COLUMNS:
            dataset = self.h5[f"variants/{name}"]
            dataset.resize((hi,))
            dataset[lo:hi] = columns[name]
        for name in MATRICES:
            self.h5[name].resize((hi, len(self.features)))
            self.h5[name][lo:hi] = np.asarray(matrices[name], dtype=np.float32)
        self.n = hi


def merge_parts(parts: list[Path], out: Path, quiet: bool = True) -> dict:
    """Merge shard outputs (tables, or HDF5 matrices) into `out` in VCF order; return the job's outputs."""
    parts, out = [Path(p) for p in parts], Path(out)
    kind = "h5" if out.suffix.lower() in H5_SUFFIXES else "table"
    if kind == "table" and out.suffix.lower() not in TABLE_SUFFIXES:
        raise InputError(f"--out must end in {' or '.join(TABLE_SUFFIXES + H5_SUFFIXES)}", out)
    for part in parts:
        if not part.is_file():
            raise InputError("part not found", part)
        if part.suffix.lower() != out.suffix.lower():
            raise InputError(f"parts and --out must be the same format ({out.suffix})", part)
    with Job("score-variants-merge", out.parent, inputs=parts, config={"parts": [str(p) for p in parts]},
             quiet=quiet, manifest_name=f"{out.name}.manifest.json", log_name=f"{out.name}.log") as job:
        counts = _merge_h5(parts, out) if kind == "h5" else _merge_tables(parts, out)
        job.outputs.update({"merged": str(out), "n_variants": sum(counts.values()),
                            "status_counts": dict(sorted(counts.items()))})
        job.log.info("merged %d parts: %d variants into %s", len(parts), sum(counts.values()), out)
    return job.outputs


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
    for batch in pq.ParquetFile(path).iter_batches(batch_size=MERGE_ROWS):
        for row in batch.to_pylist():
            yield (row["record_index"], row["allele"]), row, row["status"]


def _merge_tables(parts: list[Path], out: Path) -> Counter:
    """k-way merge of parts sorted by (record_index, allele): streamed, the unsharded row order."""
    counts: Counter = Counter()
    if out.suffix.lower() == ".parquet":
        for part in parts:
            if not pq.read_schema(part).equals(PARQUET_SCHEMA):
                raise InputError("not a score-variants Parquet table (columns differ)", part)
        rows = heapq.merge(*(_parquet_rows(p) for p in parts), key=lambda r: r[0])
        with atomic_path(out) as tmp, pq.ParquetWriter(tmp, PARQUET_SCHEMA) as writer:
            buffer: list[dict] = []
            for _, row, status in rows:
                counts[status] += 1
                buffer.append(row)
                if len(buffer) == MERGE_ROWS:
                    writer.write_table(pa.Table.from_pylist(buffer, schema=PARQUET_SCHEMA))
                    buffer.clear()
            if buffer:
                writer.write_table(pa.Table.from_pylist(buffer, schema=PARQUET_SCHEMA))
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
    counts: Counter = Counter()
    with contextlib.ExitStack() as stack:
        files = [stack.enter_context(h5py.File(p, "r")) for p in parts]
        features = [s.decode() if isinstance(s, bytes) else s for s in files[0]["features/name"][:]]
        for part, h5 in zip(parts, files):
            if "variants/record_index" not in h5 or h5["features/name"].asstr()[:].tolist() != features:
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
