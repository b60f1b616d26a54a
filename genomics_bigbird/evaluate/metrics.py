"""Classification metrics for the promoter (binary) and chromatin (multi-label) tasks."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np


def binary_metrics(labels: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Return accuracy, precision, recall, F1, MCC and AUROC/AUPRC of one binary task."""
    # sklearn costs ~1.8 s to import; the commands that load a classifier only to score with it
    # (score-variants, ism) never call this.
    from sklearn import metrics as skm

    y = np.asarray(labels).astype(int).ravel()
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"labels {y.shape} and probabilities {p.shape} differ in shape")
    predicted = (p >= threshold).astype(int)
    out = {
        "n": int(y.size),
        "positives": int(y.sum()),
        "threshold": float(threshold),
        "accuracy": float(skm.accuracy_score(y, predicted)),
        "precision": float(skm.precision_score(y, predicted, zero_division=0)),
        "recall": float(skm.recall_score(y, predicted, zero_division=0)),
        "f1": float(skm.f1_score(y, predicted, zero_division=0)),
        "mcc": float(skm.matthews_corrcoef(y, predicted)) if y.size else float("nan"),
    }
    has_both = 0 < out["positives"] < y.size
    out["auroc"] = float(skm.roc_auc_score(y, p)) if has_both else float("nan")
    out["auprc"] = float(skm.average_precision_score(y, p)) if has_both else float("nan")
    return out


def column_auroc_auprc(labels: np.ndarray, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUROC and average precision (AUPRC) of every column at once: sklearn's values, without a call per feature.

    Per column, the scores are sorted once and the ROC and precision-recall curves taken at the
    last row of each run of tied scores (sklearn's distinct thresholds): AUROC is the trapezoid
    area under (FPR, TPR), AUPRC the sum of precision x recall step. Columns are done a block at
    a time (~4M values), so memory stays a few copies of that block. A column without positives
    or negatives gives NaN.
    """
    y, p = np.asarray(labels), np.asarray(probabilities)  # converted a block at a time below
    if y.shape != p.shape or y.ndim != 2:
        raise ValueError(f"labels {y.shape} and probabilities {p.shape} must be the same (rows, columns)")
    n, columns = y.shape
    auroc = np.full(columns, np.nan)
    auprc = np.full(columns, np.nan)
    step = max(1, min(columns, 4_000_000 // max(n, 1)))
    for first in range(0, columns if n else 0, step):
        block = slice(first, first + step)
        # (columns, rows), each column contiguous: sorting along rows is then cache-friendly
        block_scores = np.ascontiguousarray(p[:, block].T, dtype=np.float64)
        order = np.argsort(-block_scores, axis=1)  # descending; the order within ties does not matter
        scores = np.take_along_axis(block_scores, order, axis=1)
        tps = np.cumsum(np.take_along_axis(np.ascontiguousarray(y[:, block].T), order, axis=1), axis=1,
                        dtype=np.float64)
        last_of_tie = np.ones(scores.shape, dtype=bool)
        last_of_tie[:, :-1] = scores[:, :-1] != scores[:, 1:]
        column, position = np.nonzero(last_of_tie)  # the thresholds, column by column
        t = tps[column, position]
        f = position + 1 - t
        starts_column = np.r_[True, column[1:] != column[:-1]]
        prev_t = np.where(starts_column, 0.0, np.r_[0.0, t[:-1]])
        prev_f = np.where(starts_column, 0.0, np.r_[0.0, f[:-1]])
        k = scores.shape[0]
        area = np.bincount(column, weights=(f - prev_f) * (t + prev_t), minlength=k)
        precision_steps = np.bincount(column, weights=(t - prev_t) * t / (position + 1), minlength=k)
        positives, negatives = tps[:, -1], n - tps[:, -1]
        with np.errstate(invalid="ignore", divide="ignore"):
            defined = (positives > 0) & (negatives > 0)
            auroc[block] = np.where(defined, area / (2 * positives * negatives), np.nan)
            auprc[block] = np.where(defined, precision_steps / positives, np.nan)
    return auroc, auprc


@dataclass
class MultilabelReport:
    """Per-feature AUROC/AUPRC and their summaries, overall and per feature group."""

    per_feature: list[dict] = field(default_factory=list)
    summary: dict[str, dict[str, float]] = field(default_factory=dict)
    excluded: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"per_feature": self.per_feature, "summary": self.summary, "excluded_no_positives": self.excluded}


def multilabel_metrics(labels: np.ndarray, probabilities: np.ndarray, feature_names: Sequence[str],
                       groups: Sequence[str] | None = None) -> MultilabelReport:
    """AUROC and AUPRC per feature; medians and means overall and per group (TF/DHS/HM).

    A feature with no positive (or no negative) example has no AUROC: it is excluded from the
    summaries and listed in `excluded` so reports can count it.
    """
    y, p = np.asarray(labels), np.asarray(probabilities)  # no float64 copy of a (windows x 919) matrix
    if y.shape != p.shape or y.ndim != 2 or y.shape[1] != len(feature_names):
        raise ValueError(f"labels {y.shape}, probabilities {p.shape} and {len(feature_names)} features disagree")
    groups = list(groups) if groups is not None else ["all"] * len(feature_names)
    report = MultilabelReport()
    auroc, auprc = column_auroc_auprc(y, p)  # one sort per feature, not two sklearn calls
    positives = y.sum(axis=0, dtype=np.int64)
    for j, (name, group) in enumerate(zip(feature_names, groups)):
        row = {"feature": name, "group": group, "positives": int(positives[j]), "n": int(y.shape[0]),
               "auroc": float(auroc[j]), "auprc": float(auprc[j])}
        if np.isnan(auroc[j]):
            report.excluded.append(name)
        report.per_feature.append(row)
    for group in ["all", *sorted(set(groups) - {"all"})]:
        rows = [r for r in report.per_feature if (group == "all" or r["group"] == group) and not np.isnan(r["auroc"])]
        aurocs = np.array([r["auroc"] for r in rows])
        auprcs = np.array([r["auprc"] for r in rows])
        report.summary[group] = {
            "features": len(rows),
            "median_auroc": float(np.median(aurocs)) if rows else float("nan"),
            "mean_auroc": float(np.mean(aurocs)) if rows else float("nan"),
            "median_auprc": float(np.median(auprcs)) if rows else float("nan"),
            "mean_auprc": float(np.mean(auprcs)) if rows else float("nan"),
        }
    return report
