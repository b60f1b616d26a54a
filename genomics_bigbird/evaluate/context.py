"""What long context buys: long-range features against the bin-motif features they build on.

A long-range feature of the simulated genome (TF21-TF24) is positive when its bin holds the
motif of a local feature (its *anchor*, TF01-TF04) AND a partner motif lies 2-4 kbp away, so its
positives are a subset of the anchor's. A model that sees only the bin can at best rank the
long-range feature by its own anchor prediction: that ranking's AUPRC is the *floor*. A model that
also sees the partner can rank it as well as it ranks the anchor: the anchor's AUPRC is the
*ceiling*. The gap closed is where the long-range AUPRC sits between the two,

    closed = (AUPRC(long) - floor) / (AUPRC(anchor) - floor),

computed per model from its own predictions: about 0 for a model blind to the partner, 1 for one
that finds the partner as reliably as it finds the bin's motif. Over several features,
`mean_gap_closed` takes the ratio of the mean gain to the mean gap.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from genomics_bigbird.evaluate.metrics import column_auroc_auprc


def _auprc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Average precision of one ranking (NaN without both classes): `column_auroc_auprc` on one column."""
    return float(column_auroc_auprc(np.asarray(labels)[:, None], np.asarray(scores, dtype=np.float64)[:, None])[1][0])


def long_range_gaps(labels: np.ndarray, probabilities: np.ndarray, feature_names: Sequence[str],
                    anchors: Mapping[str, str]) -> list[dict]:
    """One row per long-range feature: its AUPRC, its anchor's, the bin-only floor, the gap and the gap closed.

    labels, probabilities: (n, features); `anchors` maps each long-range feature to its bin-motif
    feature (e.g. TF21 -> TF01). Features missing from `feature_names` are a ValueError.
    """
    labels, probabilities = np.asarray(labels), np.asarray(probabilities, dtype=np.float64)
    column = {name: j for j, name in enumerate(feature_names)}
    missing = sorted({n for pair in anchors.items() for n in pair} - set(column))
    if missing:
        raise ValueError(f"features {missing} are not among the data set's features")
    rows = []
    for long_name, anchor in anchors.items():
        j, a = column[long_name], column[anchor]
        long_auprc = _auprc(labels[:, j], probabilities[:, j])
        anchor_auprc = _auprc(labels[:, a], probabilities[:, a])
        floor = _auprc(labels[:, j], probabilities[:, a])
        span = anchor_auprc - floor
        rows.append({"feature": long_name, "anchor": anchor, "auprc": long_auprc, "anchor_auprc": anchor_auprc,
                     "gap": anchor_auprc - long_auprc, "bin_only_floor": floor,
                     "gap_closed": (long_auprc - floor) / span if span > 0 else float("nan")})
    return rows


def mean_gap_closed(rows: Sequence[Mapping]) -> float:
    """The gap closed on average over several long-range features: mean gain over mean gap.

    (mean AUPRC - mean floor) / (mean anchor AUPRC - mean floor): the ratio of the averages, so a
    feature whose anchor barely beats its floor (a tiny, noisy denominator) cannot dominate.
    """
    rows = [r for r in rows if all(np.isfinite(r[k]) for k in ("auprc", "anchor_auprc", "bin_only_floor"))]
    if not rows:
        return float("nan")
    gain = np.mean([r["auprc"] - r["bin_only_floor"] for r in rows])
    span = np.mean([r["anchor_auprc"] - r["bin_only_floor"] for r in rows])
    return float(gain / span) if span > 0 else float("nan")


def local_summary(per_feature: Sequence[Mapping], long_range: Sequence[str]) -> dict[str, float]:
    """Mean AUROC/AUPRC over the features that are not long-range (those with an AUROC)."""
    rows = [r for r in per_feature if r["feature"] not in set(long_range) and np.isfinite(r["auroc"])]
    return {"features": len(rows),
            "mean_auroc": float(np.mean([r["auroc"] for r in rows])) if rows else float("nan"),
            "mean_auprc": float(np.mean([r["auprc"] for r in rows])) if rows else float("nan")}
