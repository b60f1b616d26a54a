"""`gbb ism`: in-silico saturation mutagenesis of a region with a fine-tuned checkpoint -> HDF5 map and a plot.

Every position of `--region`, every other base, is scored as an SNV by the routine of
`gbb score-variants` (same window rule and width default, RC-ensembled, one padded length per
variant), the 3 x L windows batched `--batch-size` at a time. `--out` (HDF5) holds:

    diff, log_odds_diff   (positions, 4, features) float32; bases in the order A, C, G, T;
                          exactly 0 at the reference base
    reference             (positions, 4) bool, True at the reference base
    importance            (positions, features) mean |diff| over the substituted bases
    position              (positions,) 1-based coordinates; features/name; attrs: contig, start,
                          end (1-based, inclusive), sequence, width, bases

`--plot` draws, per plotted feature, the per-position importance above a heatmap of `diff`
(bases x positions, reference bases marked with a dot). It plots the `--features` given, or else
the feature with the largest importance anywhere in the region.
"""
from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from genomics_bigbird.atomic import atomic_path
from genomics_bigbird.errors import InputError
from pipelines.job import Job
from pipelines.score_variants import add_window_arguments, load_scorer, scoring_device
from pipelines.variant_outputs import H5_SUFFIXES

if TYPE_CHECKING:
    from genomics_bigbird.score.ism import SaturationMap

OUTPUT_HELP = """--out (HDF5), bases in the order A, C, G, T:
  diff           (positions, 4, features) alt - ref, as score-variants' diff; exactly 0 at the reference base
  log_odds_diff  (positions, 4, features) logit(alt) - logit(ref); exactly 0 at the reference base
  reference      (positions, 4) True at the reference base
  importance     (positions, features) mean |diff| over the substituted bases
  position       (positions,) 1-based coordinates; features/name; attrs contig, start, end, sequence, width"""


def add_arguments(parser: argparse.ArgumentParser, command: tuple[str, ...]) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = OUTPUT_HELP
    parser.add_argument("--fasta", required=True, type=Path, help="reference FASTA (plain or bgzip)")
    parser.add_argument("--region", required=True, help="chr:start-end, 1-based and inclusive (commas allowed)")
    parser.add_argument("--checkpoint", required=True, type=Path, help="fine-tuned checkpoint directory (gbb finetune)")
    parser.add_argument("--tokenizer", required=True, type=Path,
                        help="the tokenizer model (.model) the checkpoint was trained with")
    parser.add_argument("--out", required=True, type=Path, help="the ISM map: .h5")
    parser.add_argument("--features", nargs="+", metavar="NAME",
                        help="keep (and plot) only these features, by name (space- or comma-separated)")
    parser.add_argument("--plot", type=Path, help="also draw the map of the plotted features to this .png")
    add_window_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar or console log")


def run(args: argparse.Namespace) -> int:
    device = scoring_device(args.device)
    names = [n for item in args.features or () for n in item.split(",") if n]
    main(args.fasta, args.region, args.checkpoint, args.tokenizer, args.out, features=names or None,
         plot=args.plot, width=args.width, batch_size=args.batch_size, device=device, workers=args.workers,
         quiet=args.quiet)
    return 0


def _region(region: str) -> tuple[str, int, int]:
    from genomics_bigbird.genome.variants import parse_region

    contig, start, end = parse_region(region)
    if start is None or end is None:
        raise InputError(f"--region {region!r} needs a start and an end, e.g. {contig}:1,001-1,200")
    return contig, start, end


def main(fasta: Path, region: str, checkpoint: Path, tokenizer: Path, out: Path, *, features: list[str] | None = None,
         plot: Path | None = None, width: int | None = None, batch_size: int = 16, device: str = "cpu",
         workers: int = 0, quiet: bool = False) -> dict:
    """Write the ISM map of `region` to `out` (and a plot to `plot`); return the job's outputs."""
    from genomics_bigbird.genome.mutagenesis import SaturationSource
    from genomics_bigbird.genome.reference import ReferenceGenome
    from genomics_bigbird.model.checkpoint import META_NAME, WEIGHTS_NAME
    from genomics_bigbird.score.ism import only_features, saturation_map

    fasta, checkpoint, tokenizer, out = map(Path, (fasta, checkpoint, tokenizer, out))
    if out.suffix.lower() not in H5_SUFFIXES:
        raise InputError(f"--out must end in {' or '.join(H5_SUFFIXES)}", out)
    if plot is not None and Path(plot).suffix.lower() != ".png":
        raise InputError("--plot must end in .png", plot)
    scorer = load_scorer(checkpoint, tokenizer, width, batch_size=batch_size, workers=workers)
    names, meta, width = scorer.features, scorer.meta, scorer.width
    unknown = [n for n in features or () if n not in names]
    if unknown:
        raise InputError(f"--features {' '.join(unknown)}: not predicted by {checkpoint} "
                         f"(its features: {', '.join(names[:12])}{', ...' if len(names) > 12 else ''})")
    keep = [names.index(n) for n in features] if features else None
    genome = ReferenceGenome(fasta)
    contig, start, end = _region(region)
    try:
        source = SaturationSource(genome, contig, start, end, width)
    except (ValueError, InputError) as err:
        genome.close()
        raise InputError(f"--region {region}: {err}", fasta) from None
    config = {"region": f"{source.contig}:{start + 1}-{end}", "width": width, "batch_size": batch_size,
              "features": features, "task": meta.get("task")}
    with Job("ism", out.parent, inputs=[fasta, tokenizer, checkpoint / META_NAME, checkpoint / WEIGHTS_NAME],
             config=config, quiet=quiet, manifest_name=f"{out.name}.manifest.json", log_name=f"{out.name}.log") as job:
        if scorer.width_warning:
            job.log.warning(scorer.width_warning)
        job.log.info("%s: %d positions x 3 bases, %d bp windows, %s on %s, %d tokenization worker(s)",
                     config["region"], len(source), width, checkpoint, device, workers)
        scorer.model.to(device)
        bar = job.progress(total=len(source), desc="ISM positions", unit="bp")
        tick = time.perf_counter()
        try:
            kept = functools.partial(only_features, columns=keep) if keep else None  # applied in the workers
            batches = scorer.score(source, batch_size=batch_size, device=device, workers=workers, prepare=kept)
            smap = saturation_map(_advancing(batches, bar), source, [names[i] for i in keep] if keep else names)
        finally:
            bar.close()
            genome.close()
        seconds = time.perf_counter() - tick
        write_map(out, smap, {**config, "features": None, "width": width})
        plotted = _plotted(smap, features)
        if plot is not None:
            plot_map(smap, Path(plot), plotted)
        importance = smap.importance
        top = np.unravel_index(int(np.argmax(importance)), importance.shape)
        job.log.info("%d positions in %.1f s (%.1f positions/s); largest mean |diff| %.4g at %s:%d (%s)",
                     len(source), seconds, len(source) / seconds, importance[top], smap.contig,
                     smap.start + top[0] + 1, smap.features[top[1]])
        job.outputs.update({"map": str(out), "plot": str(plot) if plot else None, "n_positions": len(source),
                            "positions_per_s": round(len(source) / seconds, 2), "plotted": plotted,
                            "top": {"position": smap.start + int(top[0]) + 1, "feature": smap.features[top[1]],
                                    "mean_abs_diff": float(importance[top])}})
    return job.outputs


def _advancing(batches, bar):
    for batch in batches:
        bar.update(batch.progress - bar.n)
        yield batch


def _plotted(smap: SaturationMap, features: list[str] | None) -> list[str]:
    """The features to plot: those asked for, else the one with the largest importance."""
    if features:
        return list(features)
    return [smap.features[int(np.argmax(smap.importance.max(axis=0)))]]


def write_map(path: Path, smap: SaturationMap, attrs: dict) -> None:
    """The ISM map as HDF5 (layout in the module docstring), written atomically."""
    import h5py

    from genomics_bigbird.genome.mutagenesis import BASES

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        for name, values in (("diff", smap.diff), ("log_odds_diff", smap.log_odds_diff),
                             ("importance", smap.importance.astype(np.float32))):
            h5.create_dataset(name, data=values, compression="gzip", compression_opts=1)
        h5.create_dataset("reference", data=smap.reference_mask)
        h5.create_dataset("position", data=np.arange(smap.start + 1, smap.start + len(smap.reference) + 1))
        h5.create_dataset("features/name", data=np.array(smap.features, dtype=object),
                          dtype=h5py.string_dtype("utf-8"))
        h5.attrs.update({k: v for k, v in attrs.items() if v is not None})
        h5.attrs.update({"contig": smap.contig, "start": smap.start + 1, "end": smap.start + len(smap.reference),
                         "sequence": smap.reference, "bases": BASES})


def plot_map(smap: SaturationMap, path: Path, features: list[str]) -> Path:
    """Per feature: importance (mean |diff| over substitutions) per position above a heatmap of diff."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genomics_bigbird.genome.mutagenesis import BASES

    length = len(smap.reference)
    positions = np.arange(length)
    fig, axes = plt.subplots(2 * len(features), 1, figsize=(min(24.0, max(6.0, 0.12 * length)), 3.2 * len(features)),
                             squeeze=False, gridspec_kw={"height_ratios": [1, 1.3] * len(features), "hspace": 0.08})
    importance = smap.importance
    reference_rows, reference_cols = np.nonzero(smap.reference_mask.T)
    for k, name in enumerate(features):
        j = smap.features.index(name)
        track, heat = axes[2 * k, 0], axes[2 * k + 1, 0]
        track.bar(positions, importance[:, j], width=1.0, color="0.25")
        track.set_xlim(-0.5, length - 0.5)
        track.set_ylabel("mean |diff|")
        track.set_title(f"{name}: in-silico mutagenesis of {smap.contig}:{smap.start + 1:,}-{smap.start + length:,}")
        track.tick_params(labelbottom=False)
        limit = float(np.abs(smap.diff[:, :, j]).max()) or 1.0
        image = heat.imshow(smap.diff[:, :, j].T, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit,
                            interpolation="nearest")
        heat.scatter(reference_cols, reference_rows, s=9, c="white", edgecolors="black", linewidths=0.6)
        heat.set_yticks(range(len(BASES)), list(BASES))
        if length <= 120:
            heat.set_xticks(positions, list(smap.reference), fontsize=6, family="monospace")
        heat.set_xlabel(f"position from {smap.contig}:{smap.start + 1:,} (reference base = dot)")
        fig.colorbar(image, ax=[track, heat], fraction=0.02, pad=0.01, label="diff = alt - ref")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
