"""Classification metrics for the promoter (binary) and chromatin (multi-label) tasks."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from sklearn import metrics as skm


def binary_metrics(labels: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Return accuracy, precision, recall, F1, MCC and AUROC/AUPRC of one binary task."""
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
    y = np.asarray(labels)
    p = np.asarray(probabilities, dtype=np.float64)
    if y.shape != p.shape or y.ndim != 2 or y.shape[1] != len(feature_names):
        raise ValueError(f"labels {y.shape}, probabilities {p.shape} and {len(feature_names)} features disagree")
    groups = list(groups) if groups is not None else ["all"] * len(feature_names)
    report = MultilabelReport()
    for j, (name, group) in enumerate(zip(feature_names, groups)):
        column = y[:, j].astype(int)
        positives = int(column.sum())
        row = {"feature": name, "group": group, "positives": positives, "n": int(column.size)}
        if 0 < positives < column.size:
            row["auroc"] = float(skm.roc_auc_score(column, p[:, j]))
            row["auprc"] = float(skm.average_precision_score(column, p[:, j]))
        else:
            row["auroc"] = row["auprc"] = float("nan")
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
