"""`gbb evaluate`: score fine-tuned checkpoints on a split, forward / reverse complement / their mean.

    gbb evaluate --checkpoint ft1/best [ft2/best ...] --data promoter.h5 --tokenizer dna_bpe.model \
        [--split test] [--device cuda] --out out/eval

For each checkpoint, and for the mean of several checkpoints (`ensemble`), predictions of the
windows, of their reverse complements (tokenized separately) and of the two averaged (DeepSEA,
BigBird F.3). Outputs in `out`: metrics.json, metrics.tsv (+ per_feature.tsv for chromatin),
predictions.h5 (+ predictions.tsv for promoters), roc_pr.png, auroc_by_group.png (chromatin),
training_curves.png (when the checkpoint's run left a metrics.jsonl), report.html, evaluate.log,
manifest.json.
"""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genomics_bigbird.errors import InputError

STRANDS = ("forward", "reverse", "ensemble")  # `ensemble`: mean of the forward and RC probabilities
ENSEMBLE = "ensemble"  # the name of the model that averages several checkpoints


@dataclass
class EvaluateConfig:
    checkpoints: list[str] = field(default_factory=list)
    data: str = ""
    tokenizer: str = ""
    split: str = "test"
    out_dir: str = "out/evaluate"
    batch_size: int = 16
    device: str = "auto"  # auto: cuda when available
    max_length: int | None = None  # None: what each checkpoint was fine-tuned with
    threshold: float = 0.5
    workers: int | None = None  # DataLoader processes tokenizing windows; None: 0 on CPU, --threads on CUDA


def add_arguments(parser: argparse.ArgumentParser, command: tuple[str, ...]) -> None:
    parser.add_argument("--checkpoint", nargs="+", required=True, metavar="C",
                        help="fine-tuned checkpoint directories (a `gbb finetune` best/); several are also ensembled")
    parser.add_argument("--data", required=True, help="labeled windows HDF5 (`gbb promoter/chromatin prepare`)")
    parser.add_argument("--tokenizer", required=True, help="the tokenizer the checkpoints were trained with")
    parser.add_argument("--split", default="test", choices=("train", "valid", "test"))
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--max-length", type=int, default=None,
                        help="tokens per window incl. [CLS]/[SEP] (default: the fine-tuning value)")
    parser.add_argument("--threshold", type=float, default=0.5, help="promoter: probability called positive")
    parser.add_argument("--quiet", action="store_true", help="no console log or progress bar")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="DataLoader processes that read and tokenize windows while the model runs "
                             "(default: 0 on CPU, where the model needs the --threads; --threads on CUDA)")


def run(args: argparse.Namespace) -> int:
    config = EvaluateConfig(checkpoints=list(args.checkpoint), data=args.data, tokenizer=args.tokenizer,
                            split=args.split, out_dir=args.out, batch_size=args.batch_size, device=args.device,
                            max_length=args.max_length, threshold=args.threshold, workers=args.workers)
    main(config, quiet=args.quiet, threads=args.threads)
    return 0


def resolve_device(device: str):
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    return torch.device(device)


def model_names(checkpoints: list[Path]) -> list[str]:
    """Short unique names for the checkpoints: their directory (and parent) names."""
    names = [p.name for p in checkpoints]
    if len(set(names)) < len(names) or ENSEMBLE in names:
        names = [f"{p.parent.name}/{p.name}" for p in checkpoints]
    if len(set(names)) < len(names):
        names = [f"model{i}" for i in range(len(checkpoints))]
    return names


def check_matches(meta: dict, checkpoint: Path, labeled, data_path: Path) -> None:
    """The checkpoint predicts this data set's task and features, in the same order."""
    if meta["task"] != labeled.task:
        raise InputError(f"checkpoint {checkpoint} was fine-tuned for {meta['task']!r} but the data set is "
                         f"{labeled.task!r}", data_path)
    names = meta.get("extra", {}).get("feature_names")
    if names is not None and list(names) != labeled.feature_names:
        raise InputError(f"checkpoint {checkpoint} predicts {len(names)} features that differ from the data set's "
                         f"{len(labeled.feature_names)} (names or order)", data_path)


def json_safe(value: Any) -> Any:
    """NaN/inf as null, numpy scalars as numbers: strict JSON that jq and browsers read."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def metric_tables(task: str, results: dict, scheme: str):
    """(headline rows, per-feature rows) for the TSVs and the report."""
    headline, per_feature = [], []
    for model, strands in results.items():
        for strand, metrics in strands.items():
            if task == "promoter":
                headline.append({"model": model, "strand": strand, "scheme": scheme,
                                 **{k: metrics[k] for k in ("n", "positives", "accuracy", "precision", "recall",
                                                            "f1", "mcc", "auroc", "auprc")}})
                continue
            for group, summary in metrics["summary"].items():
                headline.append({"model": model, "strand": strand, "group": group, **summary,
                                 "excluded_no_positives": metrics["n_excluded"] if group == "all" else
                                 sum(1 for r in metrics["per_feature"] if r["group"] == group
                                     and r["feature"] in metrics["excluded_no_positives"])})
            per_feature += [{"model": model, "strand": strand, **row} for row in metrics["per_feature"]]
    return headline, per_feature


def write_predictions(out_dir: Path, task: str, labeled, split: str, rows: np.ndarray, labels: np.ndarray,
                      predictions: dict) -> list[Path]:
    """predictions.h5 (every model x strand, rows x features) and, for promoters, predictions.tsv."""
    import h5py

    from genomics_bigbird.atomic import atomic_path

    records = labeled.records(split)
    written = []
    with atomic_path(out_dir / "predictions.h5") as tmp, h5py.File(tmp, "w") as f:
        f.attrs.update({"task": task, "split": split, "data": str(labeled.path), "scheme": labeled.scheme})
        f.create_dataset("row", data=rows)
        # byte-shuffle before gzip: floats compress to 0.52 of their size instead of 0.70, 2.3x faster
        f.create_dataset("labels", data=labels, compression="gzip", shuffle=True)
        text = h5py.string_dtype("utf-8")
        for column in ("chrom", "name", "strand"):
            f.create_dataset(column, data=records[column].astype(str).to_numpy(dtype=object), dtype=text)
        for column in ("start", "end"):
            f.create_dataset(column, data=records[column].to_numpy(np.int64))
        f.create_dataset("features/name", data=np.array(labeled.feature_names, dtype=object), dtype=text)
        f.create_dataset("features/group", data=np.array(labeled.feature_groups, dtype=object), dtype=text)
        for model, strands in predictions.items():
            for strand, values in strands.items():
                f.create_dataset(f"predictions/{model}/{strand}", data=np.asarray(values, dtype=np.float32),
                                 compression="gzip", shuffle=True)
    written.append(out_dir / "predictions.h5")
    if task == "promoter":
        table = records[["chrom", "start", "end", "name", "strand"]].copy()
        table.insert(0, "row", rows)
        table["label"] = labels[:, 0]
        for model, strands in predictions.items():
            for strand, values in strands.items():
                table[f"{model}:{strand}"] = values[:, 0]
        with atomic_path(out_dir / "predictions.tsv") as tmp:
            table.to_csv(tmp, sep="\t", index=False, float_format="%.9g")
        written.append(out_dir / "predictions.tsv")
    return written


def training_metrics(checkpoint: Path) -> Path | None:
    """The metrics.jsonl of the run that wrote `checkpoint` (in it, or in the run's out_dir above it)."""
    for candidate in (checkpoint / "metrics.jsonl", checkpoint.parent / "metrics.jsonl"):
        if candidate.is_file():
            return candidate
    return None


def tokenizing_workers(requested: int | None, device, threads: int) -> int:
    """DataLoader workers for `--workers` (None: 0 on CPU, where torch uses the threads; `threads` on CUDA)."""
    if requested is not None and requested < 0:
        raise InputError(f"--workers must be 0 or more, got {requested}")
    if requested is not None:
        return requested
    return threads if device.type == "cuda" else 0


def main(config: EvaluateConfig, quiet: bool = False, threads: int = 1) -> dict[str, Any]:
    """Predict, score and report; return the outputs (paths and headline metrics)."""
    # A wrong path or option is reported before torch and matplotlib are imported (seconds).
    if not config.checkpoints:
        raise InputError("give at least one --checkpoint")
    if config.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {config.batch_size}")
    from genomics_bigbird.data.labeled import LabeledWindows
    from genomics_bigbird.tokenizer import DNATokenizer

    tokenizer_path, data_path = Path(config.tokenizer), Path(config.data)
    tokenizer = DNATokenizer.load(tokenizer_path)
    labeled = LabeledWindows(data_path)
    for checkpoint in config.checkpoints:
        if not Path(checkpoint).is_dir():
            raise InputError("checkpoint directory not found", checkpoint)

    import pandas as pd

    from genomics_bigbird.atomic import atomic_path, atomic_write
    from genomics_bigbird.evaluate.classifier import load_classifier, predict_split, task_metrics
    from genomics_bigbird.evaluate.ensemble import StrandPredictions, checkpoint_lengths, ensemble_models
    from genomics_bigbird.evaluate.report import (
        plot_auroc_by_group, plot_roc_pr, plot_training_curves, write_html_report)
    from pipelines.job import Job

    device = resolve_device(config.device)
    workers = tokenizing_workers(config.workers, device, threads)
    rows = labeled.indices(config.split)
    if len(rows) == 0:
        raise InputError(f"the {config.split} split has no rows", data_path)
    checkpoints = [Path(c) for c in config.checkpoints]
    loaded = [load_classifier(c, tokenizer.sha256, tokenizer_path) for c in checkpoints]  # fail early, before predicting
    for (_, meta), checkpoint in zip(loaded, checkpoints):
        check_matches(meta, checkpoint, labeled, data_path)
    names = model_names(checkpoints)
    task, out_dir = labeled.task, Path(config.out_dir)
    labels = labeled.labels(rows)

    inputs = [data_path, tokenizer_path] + [c / "model.safetensors" for c in checkpoints]
    settings = {**config.__dict__, "device": str(device), "workers": workers}
    with Job("evaluate", out_dir, inputs=inputs, config=settings, quiet=quiet) as job:
        by_model: dict[str, StrandPredictions] = {}
        for name, (model, meta) in zip(names, loaded):
            trained_length, block_size = checkpoint_lengths(meta)
            max_length = config.max_length or trained_length
            job.log.info("%s: %d %s windows, forward and reverse complement, on %s; %d tokenizing worker%s", name,
                         len(rows), config.split, device, workers, "" if workers == 1 else "s")
            by_model[name] = predict_split(
                model.to(device), labeled, tokenizer, config.split, batch_size=config.batch_size, device=device,
                max_length=max_length, pad_to_multiple_of=block_size, workers=workers,
                progress=lambda it, total, desc, name=name: job.progress(it, total=total, desc=f"{name} {desc}",
                                                                          unit="window"))
            model.cpu()
        if len(by_model) > 1:
            by_model[ENSEMBLE] = ensemble_models(list(by_model.values()))
        predictions = {name: {"forward": p.forward, "reverse": p.reverse, "ensemble": p.ensemble}
                       for name, p in by_model.items()}
        results = {name: {strand: task_metrics(task, labels, values, labeled.feature_names, labeled.feature_groups,
                                               config.threshold) for strand, values in strands.items()}
                   for name, strands in predictions.items()}
        final = ENSEMBLE if ENSEMBLE in results else names[0]

        document = {"task": task, "split": config.split, "data": str(data_path), "scheme": labeled.scheme,
                    "source": labeled.source, "n": int(len(rows)), "checkpoints": dict(zip(names, map(str, checkpoints))),
                    "strands": {"forward": "the windows as stored (5'->3')", "reverse": "their reverse complements",
                                "ensemble": "mean of the forward and reverse probabilities"},
                    "final": final, "models": results}
        if task == "promoter":
            document["negative_scheme"] = labeled.scheme
        with atomic_write(out_dir / "metrics.json") as handle:
            json.dump(json_safe(document), handle, indent=2)
        headline, per_feature = metric_tables(task, results, labeled.scheme)
        with atomic_path(out_dir / "metrics.tsv") as tmp:
            pd.DataFrame(headline).to_csv(tmp, sep="\t", index=False, float_format="%.6g")
        if per_feature:
            with atomic_path(out_dir / "per_feature.tsv") as tmp:
                pd.DataFrame(per_feature).to_csv(tmp, sep="\t", index=False, float_format="%.6g")
        written = write_predictions(out_dir, task, labeled, config.split, rows, labels, predictions)

        figures = [plot_roc_pr({strand: (labels, values) for strand, values in predictions[final].items()},
                               out_dir / "roc_pr.png", title=f"{task}, {config.split} split, {final}"
                               + ("" if task == "promoter" else " (pooled over features)"))]
        if task != "promoter":
            figures.append(plot_auroc_by_group(results[final]["ensemble"]["per_feature"], out_dir / "auroc_by_group.png",
                                               title=f"per-feature AUROC by group ({final}, RC ensemble)"))
        curves = training_metrics(checkpoints[0])
        if curves is not None:
            figures.append(plot_training_curves(curves, out_dir / "training_curves.png", keys=("loss", "valid_auroc")))
        figures = [f for f in figures if f is not None]
        title = f"gbb evaluate: {task} ({config.split} split" + (f", negatives: {labeled.scheme})" if task == "promoter"
                                                                   else ")")
        summary_rows = [r for r in headline if task == "promoter" or r.get("group") == "all"]
        sections = [("metrics", summary_rows, figures)]
        if task != "promoter":
            sections.append(("per group", [r for r in headline if r.get("group") != "all"], []))
            excluded = results[final]["ensemble"]["excluded_no_positives"]
            sections.append((f"features without positives or negatives in the {config.split} split "
                             f"(no AUROC, left out of medians): {len(excluded)}",
                             [{"feature": name} for name in excluded], []))
        write_html_report(out_dir / "report.html", title, sections)

        final_metrics = results[final]["ensemble"]
        headline_value = final_metrics["auroc"] if task == "promoter" else final_metrics["summary"]["all"]["median_auroc"]
        job.log.info("%s (RC ensemble): %s %.4f", final, "AUROC" if task == "promoter" else "median AUROC",
                     headline_value)
        job.outputs.update({"metrics": str(out_dir / "metrics.json"), "report": str(out_dir / "report.html"),
                            "predictions": [str(p) for p in written], "final": final,
                            "headline": json_safe(headline_value)})
    return dict(job.outputs)
