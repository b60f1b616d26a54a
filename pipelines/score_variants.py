"""`gbb score-variants`: VCF + FASTA + fine-tuned checkpoint -> per-variant effect scores.

One row per (record, ALT) in VCF order, unscored statuses included (their scores are empty); the
table (TSV or Parquet by the extension of `--out`) and the `--h5` matrices are described in
`pipelines.variant_outputs` and in `gbb score-variants --help`. The window width defaults to the
one the checkpoint was trained on.

Sharding: `--shard i/n` (0 <= i < n) scores the records with `record_index % n == i`;
`gbb score-variants --merge PART... --out MERGED [--h5 MERGED.h5]` restores VCF order, so merged
shards equal the unsharded run. Under torchrun (RANK/WORLD_SIZE set, no --shard) every rank
writes `<out>.part<rank>-of-<n>.<ext>` and rank 0 waits for the others' finished parts, merges
them into `--out` (and `--h5`) and removes the parts.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from genomics_bigbird.errors import InputError
from pipelines.job import Job
from pipelines.variant_outputs import (
    H5_SUFFIXES, MATRICES, SUMMARY_COLUMNS, TABLE_SUFFIXES, VARIANT_COLUMNS, MatrixWriter, TableWriter, merge_parts,
    part_path, table_rows)

if TYPE_CHECKING:  # torch is imported where a model runs: `--help` and `--merge` start without it
    import torch

    from genomics_bigbird.tokenizer import DNATokenizer

POLL_S = 5.0


def _listing(title: str, entries: dict[str, str]) -> str:
    width = max(len(name) for name in entries)
    return "\n".join([f"{title}:"] + [f"  {name:<{width}}  {text}" for name, text in entries.items()])


def output_help() -> str:
    """Every status, table column and HDF5 matrix with its meaning or formula (`--help`'s epilog)."""
    from genomics_bigbird.genome.variants import STATUSES

    return "\n\n".join([
        _listing("statuses (one per row; only ok and padded rows have scores)", STATUSES),
        _listing("table columns (--out, .tsv or .parquet)", {**VARIANT_COLUMNS, **SUMMARY_COLUMNS}),
        _listing("HDF5 matrices (--h5), (variants x features) float32, NaN rows unscored; plus "
                 "variants/<column> and features/name", MATRICES),
    ])


def add_arguments(parser: argparse.ArgumentParser, command: tuple[str, ...]) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = output_help()
    parser.add_argument("--vcf", type=Path, help="variants: VCF, VCF.gz (bgzip + tabix for --region) or BCF")
    parser.add_argument("--fasta", type=Path, help="reference FASTA (plain or bgzip) the VCF was called on")
    parser.add_argument("--checkpoint", type=Path, help="fine-tuned checkpoint directory (gbb finetune)")
    parser.add_argument("--tokenizer", type=Path, help="the tokenizer model (.model) the checkpoint was trained with")
    parser.add_argument("--out", required=True, type=Path, help="scores table: .tsv or .parquet")
    parser.add_argument("--h5", type=Path, help="also write the (variants x features) matrices to this .h5")
    add_window_arguments(parser)
    parser.add_argument("--region", help="only variants in chr:start-end (1-based; needs a tabix-indexed VCF)")
    parser.add_argument("--bed", type=Path, help="only variants overlapping these BED intervals")
    parser.add_argument("--shard", help="i/n: score only the i-th (0-based) of n record shards")
    parser.add_argument("--merge", nargs="+", type=Path, metavar="PART",
                        help="merge shard outputs in VCF order: tables into --out, .h5 parts into --h5 (one call)")
    parser.add_argument("--merge-timeout", type=float, default=3600.0,
                        help="torchrun: seconds rank 0 waits for the other ranks' parts (default 3600)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or console log")


def add_window_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared with `gbb ism`: window width, batching, device and tokenization workers."""
    parser.add_argument("--width", type=int,
                        help="window width in bp (default: the width the checkpoint was trained on)")
    parser.add_argument("--batch-size", type=int, default=16, help="windows per forward pass (default 16)")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    parser.add_argument("--workers", type=int, default=0,
                        help="DataLoader processes that cut and tokenize windows, and on CPU also run the model "
                             "(one thread each); default 0: all in the main process. Results do not depend on it")


def run(args: argparse.Namespace) -> int:
    if args.merge:
        main_merge(args.merge, args.out, h5=args.h5, quiet=args.quiet)
        return 0
    missing = [f"--{name}" for name in ("vcf", "fasta", "checkpoint", "tokenizer") if getattr(args, name) is None]
    if missing:
        raise InputError(f"{', '.join(missing)} required (or --merge PART... to merge shard outputs)")
    device = scoring_device(args.device)
    common = dict(width=args.width, region=args.region, bed=args.bed, batch_size=args.batch_size, quiet=args.quiet,
                  workers=args.workers)
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


def window_width(requested: int | None, meta: dict, checkpoint: Path) -> tuple[int, str | None]:
    """(width, warning or None): `requested`, or the window the checkpoint was fine-tuned on.

    The fine-tuning data set's window is stored in the checkpoint (`extra.window`, from the
    labeled windows' `window` attribute): a model scores best on windows of the width it saw.
    """
    trained = meta.get("extra", {}).get("window")
    if requested is None:
        if trained is None:
            raise InputError("the checkpoint does not record the window width it was trained on: pass --width",
                             checkpoint)
        return int(trained), None
    if requested < 1:
        raise InputError(f"--width must be positive, got {requested}")
    if trained is not None and requested != int(trained):
        return requested, (f"--width {requested} differs from the {trained} bp windows {checkpoint} was trained on: "
                           "the model never saw windows of this width, so its scores may be off")
    return requested, None


def scoring_device(requested: str | None) -> str:
    """`--device` of score-variants and ism: cuda when available unless given; cuda without a GPU is an InputError."""
    from pipelines.evaluate import resolve_device

    return str(resolve_device(requested or "auto"))


@dataclass
class Scorer:
    """A fine-tuned checkpoint ready to score variants: the routine of `gbb score-variants` and `gbb ism`."""

    tokenizer: DNATokenizer
    model: torch.nn.Module
    features: list[str]
    meta: dict
    width: int                    # window width in bp
    width_warning: str | None     # set when the width differs from the checkpoint's training width

    def score(self, source, *, batch_size: int, device: str, workers: int, prepare=None):
        """`genomics_bigbird.score.variants.score_variants` over `source` with this checkpoint's lengths."""
        from genomics_bigbird.score.variants import score_variants

        return score_variants(self.model, self.tokenizer, source, num_features=len(self.features),
                              batch_size=batch_size, device=device, max_tokens=self.model.encoder.max_position,
                              length_multiple=self.meta["model_config"].get("block_size", 64), workers=workers,
                              prepare=prepare)


def load_scorer(checkpoint: Path, tokenizer: Path, width: int | None, *, batch_size: int, workers: int) -> Scorer:
    """Check the batching options, load the tokenizer and the classifier, and choose the window width."""
    from genomics_bigbird.tokenizer import DNATokenizer

    if batch_size < 1 or workers < 0:
        raise InputError(f"--batch-size must be positive and --workers 0 or more, got {batch_size} and {workers}")
    tok = DNATokenizer.load(tokenizer)
    model, features, meta = load_scoring_model(checkpoint, tok)  # before any output: a mismatch writes nothing
    return Scorer(tok, model, features, meta, *window_width(width, meta, checkpoint))


def main(vcf: Path, fasta: Path, checkpoint: Path, tokenizer: Path, out: Path, *, h5: Path | None = None,
         width: int | None = None, region: str | None = None, bed: Path | None = None, batch_size: int = 16,
         device: str = "cpu", shard: tuple[int, int] = (0, 1), quiet: bool = False, workers: int = 0) -> dict:
    """Score every (record, ALT) of `vcf` (shard `shard`) into the table `out` and optionally `h5`."""
    # A wrong path is reported before torch is imported (seconds).
    for path, what in ((vcf, "VCF"), (fasta, "FASTA"), (tokenizer, "tokenizer model")):
        if not Path(path).is_file():
            raise InputError(f"{what} not found", path)
    if not Path(checkpoint).is_dir():
        raise InputError("checkpoint directory not found", checkpoint)

    from genomics_bigbird.genome.reference import ReferenceGenome
    from genomics_bigbird.genome.variants import VariantSource
    from genomics_bigbird.model.checkpoint import META_NAME, WEIGHTS_NAME

    vcf, fasta, checkpoint, tokenizer, out = map(Path, (vcf, fasta, checkpoint, tokenizer, out))
    if out.suffix.lower() not in TABLE_SUFFIXES:
        raise InputError(f"--out must end in {' or '.join(TABLE_SUFFIXES)}", out)
    if h5 is not None and Path(h5).suffix.lower() not in H5_SUFFIXES:
        raise InputError(f"--h5 must end in {' or '.join(H5_SUFFIXES)}", h5)
    scorer = load_scorer(checkpoint, tokenizer, width, batch_size=batch_size, workers=workers)
    features, meta, width = scorer.features, scorer.meta, scorer.width
    genome = ReferenceGenome(fasta)
    source = VariantSource(vcf, genome, width, region=region, bed=bed, rank=shard[0], world_size=shard[1])
    inputs = [vcf, fasta, tokenizer, checkpoint / META_NAME, checkpoint / WEIGHTS_NAME] + ([bed] if bed else [])
    config = {"width": width, "region": region, "batch_size": batch_size, "shard": f"{shard[0]}/{shard[1]}",
              "task": meta.get("task"), "n_features": len(features)}
    with Job("score-variants", out.parent, inputs=inputs, config=config, quiet=quiet,
             manifest_name=f"{out.name}.manifest.json", log_name=f"{out.name}.log") as job:
        if scorer.width_warning:
            job.log.warning(scorer.width_warning)
        job.log.info("%d features (%s) from %s on %s; %d bp windows, shard %d/%d, %d tokenization worker(s)",
                     len(features), meta.get("task"), checkpoint, device, width, *shard, workers)
        scorer.model.to(device)
        counts: Counter = Counter()
        bar = job.progress(total=None if quiet else source.count_records(), desc="VCF records", unit="rec")
        try:
            with TableWriter(out, features) as table, MatrixWriter(h5, features, attrs=config) as matrices:
                # Without --h5 only the table's rows are kept: made where each batch is scored.
                rows_of = functools.partial(table_rows, features=features, tsv=not table.parquet)
                for scored in scorer.score(source, batch_size=batch_size, device=device, workers=workers,
                                           prepare=None if h5 else rows_of):
                    rows = scored
                    if h5:
                        rows = rows_of(scored)
                        matrices.write(scored)
                    table.write_rows(rows)
                    counts.update(rows.statuses)
                    bar.update(rows.progress - bar.n)
        finally:
            bar.close()
            genome.close()
        n = sum(counts.values())
        job.log.info("%d variants: %s", n, ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        job.outputs.update({"table": str(out), "h5": str(h5) if h5 else None, "n_variants": n,
                            "n_scored": counts["ok"] + counts["padded"], "status_counts": dict(sorted(counts.items()))})
    return job.outputs


def main_merge(parts: list[Path], out: Path, *, h5: Path | None = None, quiet: bool = True) -> dict:
    """Merge shard outputs in VCF order: the tables among `parts` into `out`, the .h5 parts into `h5` (or `out`)."""
    parts, out = [Path(p) for p in parts], Path(out)
    h5_parts = [p for p in parts if p.suffix.lower() in H5_SUFFIXES]
    tables = [p for p in parts if p not in h5_parts]
    if out.suffix.lower() in H5_SUFFIXES and not tables and h5 is None:
        h5, out = out, None  # `--merge a.h5 b.h5 --out merged.h5`
    elif out.suffix.lower() not in TABLE_SUFFIXES:
        raise InputError(f"--out must end in {' or '.join(TABLE_SUFFIXES + H5_SUFFIXES)}", out)
    if h5_parts and h5 is None:
        raise InputError("the .h5 parts need --h5 MERGED.h5 to merge into", h5_parts[0])
    if h5 is not None and not h5_parts:
        raise InputError("--h5 given but no .h5 part to merge into it", h5)
    if out is not None and not tables:
        raise InputError(f"no table part ({' or '.join(TABLE_SUFFIXES)}) to merge into --out", out)
    if h5 is not None and Path(h5).suffix.lower() not in H5_SUFFIXES:
        raise InputError(f"--h5 must end in {' or '.join(H5_SUFFIXES)}", h5)
    first = out if out is not None else Path(h5)
    with Job("score-variants-merge", first.parent, inputs=parts, config={"parts": [str(p) for p in parts]},
             quiet=quiet, manifest_name=f"{first.name}.manifest.json", log_name=f"{first.name}.log") as job:
        counts = merge_parts(tables, out) if out is not None else None
        h5_counts = merge_parts(h5_parts, Path(h5)) if h5 is not None else None
        if counts is not None and h5_counts is not None and counts != h5_counts:
            raise InputError("the table parts and the .h5 parts hold different variants: not parts of one run", h5)
        counts = counts if counts is not None else h5_counts
        job.outputs.update({"merged": str(out) if out is not None else None, "h5": str(h5) if h5 else None,
                            "n_variants": sum(counts.values()), "status_counts": dict(sorted(counts.items()))})
        job.log.info("merged %d parts: %d variants into %s", len(parts), sum(counts.values()),
                     " and ".join(str(p) for p in (out, h5) if p is not None))
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
    merged = main_merge(parts + h5_parts, out, h5=h5, quiet=options.get("quiet", False))
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


