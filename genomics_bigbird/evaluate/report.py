"""Evaluation plots (ROC, PR, per-feature AUROC by group, training curves) and one HTML report."""
from __future__ import annotations

import base64
import html

import json
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # reports are written on headless machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn import metrics as skm  # noqa: E402

from genomics_bigbird.atomic import atomic_path, atomic_write  # noqa: E402


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


EXACT_CURVE_POINTS = 1_000_000  # above this many (window, feature) pairs, pooled curves are binned
CURVE_BINS = 10_000


def binned_curves(labels: np.ndarray, probabilities: np.ndarray, bins: int = CURVE_BINS,
                  rows_per_block: int = 4096) -> dict[str, np.ndarray | float] | None:
    """ROC and precision-recall curves of probabilities in [0, 1] from a histogram of `bins` score bins.

    Memory holds the counts and one block of rows, not a sort of every (window, feature) pair:
    DeepSEA's test split pooled over 919 features is 418M pairs. Scores in one bin count as tied,
    so the curves and areas equal sklearn's on the scores rounded down to the bin. None without
    positives or without negatives.
    """
    positives, negatives = np.zeros(bins, np.int64), np.zeros(bins, np.int64)
    for first in range(0, len(labels), rows_per_block):
        y = np.asarray(labels[first:first + rows_per_block]).ravel() > 0
        index = np.clip((np.asarray(probabilities[first:first + rows_per_block]).ravel() * bins).astype(np.int64),
                        0, bins - 1)
        positives += np.bincount(index[y], minlength=bins)
        negatives += np.bincount(index[~y], minlength=bins)
    if not positives.sum() or not negatives.sum():
        return None
    used = (positives + negatives)[::-1] > 0  # thresholds from the highest score down
    tp = np.cumsum(positives[::-1])[used].astype(np.float64)
    fp = np.cumsum(negatives[::-1])[used].astype(np.float64)
    tpr, fpr = np.r_[0.0, tp / tp[-1]], np.r_[0.0, fp / fp[-1]]
    precision, recall = tp / (tp + fp), tp / tp[-1]
    return {"fpr": fpr, "tpr": tpr, "precision": precision, "recall": recall,
            "auroc": float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)),
            "auprc": float(np.sum(np.diff(np.r_[0.0, recall]) * precision))}


def plot_roc_pr(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | Path, title: str = "") -> Path:
    """ROC and precision-recall curves; `curves` maps a label (e.g. 'forward') to (labels, probabilities).

    Up to EXACT_CURVE_POINTS pairs the curves are sklearn's; above, `binned_curves` (bounded memory).
    """
    fig, (roc_ax, pr_ax) = plt.subplots(1, 2, figsize=(10, 4.2))
    for name, (labels, probs) in curves.items():
        labels, probs = np.asarray(labels), np.asarray(probs)
        if labels.size > EXACT_CURVE_POINTS:
            curve = binned_curves(labels, probs)
            if curve is None:
                continue
            fpr, tpr, precision, recall = curve["fpr"], curve["tpr"], curve["precision"], curve["recall"]
            auroc, auprc = curve["auroc"], curve["auprc"]
        else:
            labels, probs = labels.astype(int).ravel(), probs.astype(float).ravel()
            if not 0 < labels.sum() < labels.size:
                continue
            fpr, tpr, _ = skm.roc_curve(labels, probs)
            precision, recall, _ = skm.precision_recall_curve(labels, probs)
            auroc, auprc = skm.roc_auc_score(labels, probs), skm.average_precision_score(labels, probs)
        roc_ax.plot(fpr, tpr, label=f"{name} (AUROC {auroc:.3f})")
        pr_ax.plot(recall, precision, label=f"{name} (AUPRC {auprc:.3f})")
    roc_ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    pr_ax.set(xlabel="recall", ylabel="precision", title="precision-recall")
    for ax in (roc_ax, pr_ax):
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(title)
    return _save(fig, Path(path))


def plot_auroc_by_group(per_feature: Sequence[Mapping], path: str | Path, title: str = "") -> Path:
    """Distribution of per-feature AUROC for each feature group (TF/DHS/HM), as in DeepSEA's figures."""
    groups = sorted({row["group"] for row in per_feature})
    values = [[row["auroc"] for row in per_feature if row["group"] == g and not np.isnan(row["auroc"])] for g in groups]
    fig, ax = plt.subplots(figsize=(1.8 + 1.4 * len(groups), 4))
    ax.boxplot([v if v else [np.nan] for v in values], tick_labels=groups, showmeans=True)
    for i, v in enumerate(values, start=1):
        ax.scatter(np.full(len(v), i) + np.random.default_rng(i).uniform(-0.12, 0.12, len(v)), v, s=8, alpha=0.6)
    ax.set(ylabel="AUROC per feature", ylim=(0, 1.02), title=title or "per-feature AUROC by group")
    return _save(fig, Path(path))


def plot_training_curves(metrics_jsonl: str | Path, path: str | Path, keys: Sequence[str] = ("loss",)) -> Path | None:
    """Training curves from a metrics.jsonl (one JSON object per logged step); None if nothing to plot."""
    rows = [json.loads(line) for line in Path(metrics_jsonl).read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "step" in r]
    present = [k for k in keys if any(k in r for r in rows)]
    if not present:
        return None
    fig, axes = plt.subplots(1, len(present), figsize=(4.5 * len(present), 3.5), squeeze=False)
    for ax, key in zip(axes[0], present):
        points = [(r["step"], r[key]) for r in rows if key in r]
        ax.plot(*zip(*points))
        ax.set(xlabel="step", ylabel=key, title=key)
    return _save(fig, Path(path))


def _table(rows: Sequence[Mapping]) -> str:
    if not rows:
        return "<p>(none)</p>"
    columns = list(rows[0].keys())
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)

    def cell(value):
        return f"{value:.4f}" if isinstance(value, float) else html.escape(str(value))

    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(c, ''))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_html_report(path: str | Path, title: str, sections: Sequence[tuple[str, Sequence[Mapping], Sequence[Path]]]) -> Path:
    """One self-contained HTML page: per section a heading, a table and embedded PNG figures."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
             "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px}"
             "img{max-width:100%}</style></head><body>", f"<h1>{html.escape(title)}</h1>"]
    for heading, rows, figures in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        parts.append(_table(rows))
        for figure in figures:
            if figure is None or not Path(figure).exists():
                continue
            data = base64.b64encode(Path(figure).read_bytes()).decode()
            parts.append(f"<p><img alt='{html.escape(Path(figure).name)}' src='data:image/png;base64,{data}'></p>")
    parts.append("</body></html>")
    with atomic_write(path) as handle:
        handle.write("\n".join(parts))
    return Path(path)


