"""`gbb chromatin prepare`: the chromatin-profile data set of BigBird F.3, from one of three sources.

(a) `--deepsea-dir`: the DeepSEA bundle (train.mat, valid.mat, test.mat) used as-is at 1000 bp,
    forward halves kept, its own train/valid/test split;
(b) `--bins --labels --features --fasta`: a BED of 200 bp bins with a (bins x features) label
    matrix, each bin widened to the `--width` window centered on it;
(c) `--peaks-dir --features --fasta`: labels from `<dir>/<feature>.narrowPeak` (a bin is positive
    when >= 50% of it lies in a peak); bins from `--bins`, or else every 200 bp genome tile that
    touches a peak and is positive for at least one feature.
Sources (b) and (c) are split like DeepSEA: test contigs, a validation region, other contigs
train, with chrX/chrY/chrM left out (counted in the log and manifest). Output: `chromatin.h5`.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from genomics_bigbird.errors import InputError
from pipelines.config import load_config, save_config, to_dict
from pipelines.job import Job
from pipelines.workers import add_workers_argument, plan_workers


@dataclass
class ChromatinPrepareConfig:
    """Parameters of the chromatin data set (defaults: BigBird F.3; YAML: configs/tasks/chromatin.yaml)."""

    width: int = 8000
    test_contigs: list[str] = field(default_factory=lambda: ["chr8", "chr9"])
    valid_region: str = "chr7:30508751-35296850"
    exclude_contigs: list[str] = field(default_factory=lambda: ["chrX", "chrY", "chrM"])
    min_peak_fraction: float = 0.5
    bin_size: int = 200  # genomics_bigbird.data.chromatin.BIN_SIZE (not imported here: it needs pandas)
    chunk_size: int = 4096  # windows per block: one worker task, and the unit of memory


# The fields each source uses; the manifest, config.yaml and the data set record only these.
# The DeepSEA bundle brings its own 1000 bp windows and its own train/valid/test split.
APPLIED_FIELDS = {
    "deepsea": ("chunk_size",),
    "bins": ("width", "test_contigs", "valid_region", "exclude_contigs", "chunk_size"),
    "peaks": ("width", "test_contigs", "valid_region", "exclude_contigs", "min_peak_fraction", "chunk_size"),
    "peak tiles": ("width", "test_contigs", "valid_region", "exclude_contigs", "min_peak_fraction", "bin_size",
                   "chunk_size"),
}
NOT_FOR_DEEPSEA = ("--width", "--valid-region", "--test-contigs", "--exclude-contigs", "--fasta", "--bins")


def applied(config: ChromatinPrepareConfig, source: str) -> dict:
    """The config fields that source `source` (a key of APPLIED_FIELDS) uses."""
    return {key: value for key, value in to_dict(config).items() if key in APPLIED_FIELDS[source]}


def add_arguments(parser: argparse.ArgumentParser, command: tuple[str, ...]) -> None:
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--deepsea-dir", type=Path, help="unpacked DeepSEA bundle (train.mat, valid.mat, test.mat)")
    source.add_argument("--labels", type=Path, help="(bins x features) 0/1 matrix, .npy or TSV (needs --bins)")
    source.add_argument("--peaks-dir", type=Path, help="directory of <feature>.narrowPeak files")
    parser.add_argument("--bins", type=Path, help="BED of 200 bp bins, one per label row")
    parser.add_argument("--features", type=Path, help="TSV with columns name and group (DHS/TF/HM), "
                        "one row per label column")
    parser.add_argument("--fasta", type=Path, help="reference FASTA (GRCh37 for the paper); not for --deepsea-dir")
    parser.add_argument("--config", type=Path, help="YAML config (configs/tasks/chromatin.yaml)")
    parser.add_argument("--width", type=int, help="window centered on each bin (default 8000)")
    parser.add_argument("--valid-region", help="validation bins: centered in this 1-based region "
                        "(default chr7:30508751-35296850)")
    parser.add_argument("--test-contigs", help="comma-separated test contigs (default chr8,chr9)")
    parser.add_argument("--exclude-contigs", help="comma-separated contigs left out of every split "
                        "(default chrX,chrY,chrM)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or console log")
    add_workers_argument(parser, "blocks of windows")


def run(args: argparse.Namespace) -> int:
    if args.deepsea_dir is not None:
        given = [flag for flag in NOT_FOR_DEEPSEA if getattr(args, flag[2:].replace("-", "_")) is not None]
        if given:
            raise InputError(f"{' and '.join(given)} cannot be used with --deepsea-dir: the DeepSEA bundle holds its "
                             f"own 1000 bp windows and train/valid/test split; leave {' and '.join(given)} out")
    overrides = list(args.set)
    if args.width is not None:
        overrides.append(f"width={args.width}")
    if args.valid_region is not None:
        overrides.append(f"valid_region={args.valid_region}")
    for key in ("test_contigs", "exclude_contigs"):
        value = getattr(args, key)
        if value is not None:
            overrides.append(f"{key}=[{','.join(value.replace(',', ' ').split())}]")
    config = load_config(ChromatinPrepareConfig, args.config, overrides)
    main(config, out=args.out, deepsea_dir=args.deepsea_dir, bins=args.bins, labels=args.labels,
         peaks_dir=args.peaks_dir, features=args.features, fasta=args.fasta, quiet=args.quiet,
         workers=plan_workers(args.workers, args.threads).workers)
    return 0


def main(config: ChromatinPrepareConfig, *, out: Path, deepsea_dir: Path | None = None, bins: Path | None = None,
         labels: Path | None = None, peaks_dir: Path | None = None, features: Path | None = None,
         fasta: Path | None = None, quiet: bool = False, workers: int = 1) -> dict:
    """Build `out/chromatin.h5` from one source (`workers` processes make its blocks); return the job's outputs."""
    from genomics_bigbird.data.chromatin import (
        ChromatinSplit, bins_with_labels, count_bins, read_feature_table, write_labeled_bins)
    from genomics_bigbird.data.label_matrix import LabelMatrix
    from genomics_bigbird.data.labeled import LabeledWriter
    from genomics_bigbird.data.peaks import PeakIndex, peak_files
    from genomics_bigbird.genome.intervals import read_bed
    from genomics_bigbird.genome.reference import ReferenceGenome

    out = Path(out)
    if sum(x is not None for x in (deepsea_dir, labels, peaks_dir)) != 1:
        raise InputError("give exactly one source: --deepsea-dir, --labels (with --bins) or --peaks-dir")
    if deepsea_dir is not None:
        if fasta is not None or bins is not None:
            raise InputError("a FASTA or bins BED cannot be used with --deepsea-dir: the bundle holds its own "
                             "windows and split")
        return _deepsea(config, out, Path(deepsea_dir), features, quiet, workers)
    if features is None or fasta is None:
        raise InputError("--labels and --peaks-dir need --features and --fasta")
    if labels is not None and bins is None:
        raise InputError("--labels needs --bins (one bin per label row)")
    if config.width <= 0:
        raise InputError(f"width must be positive, got {config.width}")
    split = ChromatinSplit(tuple(config.test_contigs), config.valid_region, tuple(config.exclude_contigs))

    # Read and check every input before the output directory is touched.
    table = read_feature_table(features)
    genome = ReferenceGenome(fasta)
    names, groups = list(table["name"]), list(table["group"])
    inputs = [Path(features), Path(fasta)]
    # Bins and labels stream while writing; here they are only checked (and counted).
    if labels is not None:
        n_bins = count_bins(bins, genome)
        label_matrix = LabelMatrix(labels, n_bins, names)
        blocks = bins_with_labels(read_bed(bins), label_matrix)
        inputs += [Path(bins), Path(labels)]
        source = f"bins {Path(bins).name} + labels {Path(labels).name}"
    else:
        files = peak_files(peaks_dir, table)
        index = PeakIndex.read(files, genome)
        inputs += list(files.values())
        if bins is not None:
            n_bins = count_bins(bins, genome)
            blocks = index.labeled_blocks(read_bed(bins), config.min_peak_fraction)
            inputs.append(Path(bins))
        else:  # genome tiles touching a peak, kept when positive for at least one feature
            n_bins = index.count_candidate_bins(genome, config.bin_size)
            blocks = index.labeled_blocks(index.candidate_bins(genome, config.bin_size), config.min_peak_fraction,
                                          positive_only=True)
        source = f"peaks {Path(peaks_dir).name}"
    settings = applied(config, "bins" if labels is not None else "peaks" if bins is not None else "peak tiles")

    with Job("chromatin_prepare", out, inputs=inputs, config=settings, quiet=quiet) as job:
        job.log.info("%d bins x %d features (%s) from %s; %d bp windows from %s; %d worker process%s", n_bins,
                     len(names), {g: groups.count(g) for g in dict.fromkeys(groups)}, source, config.width, fasta,
                     workers, "es" if workers > 1 else "")
        job.log.info("split: test %s, valid bins centered in %s, left out %s, other contigs train",
                     ",".join(config.test_contigs), config.valid_region, ",".join(config.exclude_contigs))
        bar = job.progress(total=n_bins, desc="bins", unit="bin")
        try:
            with LabeledWriter(out / "chromatin.h5", window=config.width, feature_names=names,
                               feature_groups=groups, task="chromatin", source=source, inputs=inputs,
                               config=settings, rows_per_block=config.chunk_size) as writer:
                report = write_labeled_bins(writer, genome, blocks, split, config.width, progress=bar.update,
                                            workers=workers)
                summary = writer.summary()
        finally:
            bar.close()
            genome.close()
        save_config(settings, out / "config.yaml")
        job.outputs.update({
            "dataset": str(out / "chromatin.h5"), "source": source, "window": config.width,
            "n_bins": report.rows + sum(report.excluded.values()),  # peaks without --bins: the positive tiles
            "n_features": len(names), "rows_per_split": summary["rows_per_split"],
            "excluded_bins": report.excluded, "padded_bases": report.padded_bases,
            "padded_windows": report.padded_windows,
            "positives_per_feature": summary["positives_per_feature"]})
        job.log.info("wrote %d windows %s; left out %d bins on %s; %d padded bases in %d windows",
                     report.rows, summary["rows_per_split"], sum(report.excluded.values()),
                     ",".join(report.excluded) or "no contig", report.padded_bases, report.padded_windows)
    return job.outputs


def _deepsea(config: ChromatinPrepareConfig, out: Path, directory: Path, features: Path | None,
             quiet: bool, workers: int) -> dict:
    """Source (a): decode the DeepSEA bundle's forward halves at 1000 bp."""
    from genomics_bigbird.data.chromatin import read_feature_table
    from genomics_bigbird.data.deepsea import (
        DEEPSEA_FEATURES, DEEPSEA_WINDOW, DeepSEASplit, deepsea_feature_groups, deepsea_split_paths, write_deepsea)
    from genomics_bigbird.data.labeled import LabeledWriter

    paths = deepsea_split_paths(directory)
    names = [f"deepsea_{i}" for i in range(DEEPSEA_FEATURES)]
    groups = deepsea_feature_groups()
    inputs = list(paths.values())
    if features is not None:
        table = read_feature_table(features)
        if len(table) != DEEPSEA_FEATURES:
            raise InputError(f"the DeepSEA bundle has {DEEPSEA_FEATURES} label columns; the feature table has "
                             f"{len(table)} rows", features)
        names, groups = list(table["name"]), list(table["group"])
        inputs.append(Path(features))
    sizes = {}
    for split, path in paths.items():  # opening checks the layout before anything is written
        with DeepSEASplit(path, split) as data:
            sizes[split] = data.n_forward
    settings = applied(config, "deepsea")
    with Job("chromatin_prepare", out, inputs=inputs, config=settings, quiet=quiet) as job:
        job.log.info("DeepSEA bundle %s: forward rows %s; %d bp windows as shipped, the bundle's own split",
                     directory, sizes, DEEPSEA_WINDOW)
        bar = job.progress(total=sum(sizes.values()), desc="deepsea", unit="win")
        try:
            with LabeledWriter(out / "chromatin.h5", window=DEEPSEA_WINDOW, feature_names=names,
                               feature_groups=groups, task="chromatin", source="deepsea", inputs=inputs,
                               config=settings, rows_per_block=config.chunk_size) as writer:
                report = write_deepsea(writer, paths, progress=bar.update, workers=workers)
                summary = writer.summary()
        finally:
            bar.close()
        save_config(settings, out / "config.yaml")
        job.outputs.update({
            "dataset": str(out / "chromatin.h5"), "source": "deepsea", "window": DEEPSEA_WINDOW,
            "n_features": DEEPSEA_FEATURES, "rows_per_split": summary["rows_per_split"],
            "strand_pair_check": report, "padded_bases": 0,
            "positives_per_feature": summary["positives_per_feature"]})
        job.log.info("wrote %s windows; strand-pair mismatches %s", summary["rows_per_split"],
                     {s: r["sequence_mismatches"] for s, r in report.items()})
    return job.outputs
