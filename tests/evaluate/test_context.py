"""Long-range gaps: hand-computed AUPRCs of a blind, a perfect and a half-way model."""
import math

import numpy as np
import pytest

from genomics_bigbird.evaluate.context import local_summary, long_range_gaps, mean_gap_closed

# 8 bins; the anchor (TF01) is positive in bins 0-3, the long-range feature (TF21) in bins 0-1 only
LABELS = np.array([[1, 1], [1, 1], [1, 0], [1, 0], [0, 0], [0, 0], [0, 0], [0, 0]])
ANCHOR = np.array([0.6, 0.7, 0.8, 0.9, 0.1, 0.2, 0.3, 0.4])  # ranks the anchor perfectly, TF21's bins last
NAMES = ["TF01", "TF21"]
# TF21 ranked by the anchor's scores: its positives come 3rd and 4th, AP = (1/3 + 2/4) / 2
FLOOR = (1 / 3 + 2 / 4) / 2


def gaps(long_scores):
    return long_range_gaps(LABELS, np.column_stack([ANCHOR, long_scores]), NAMES, {"TF21": "TF01"})[0]


def test_a_model_blind_to_the_partner_closes_nothing():
    row = gaps(ANCHOR)  # its TF21 score is its TF01 score: all it can know from the bin
    assert row["bin_only_floor"] == pytest.approx(FLOOR)
    assert row["anchor_auprc"] == pytest.approx(1.0)
    assert row["auprc"] == pytest.approx(FLOOR) and row["gap"] == pytest.approx(1 - FLOOR)
    assert row["gap_closed"] == pytest.approx(0.0)


def test_a_model_that_finds_the_partner_closes_the_whole_gap():
    row = gaps(np.array([0.9, 0.8, 0.3, 0.2, 0.1, 0.1, 0.1, 0.1]))
    assert row["auprc"] == pytest.approx(1.0) and row["gap"] == pytest.approx(0.0)
    assert row["gap_closed"] == pytest.approx(1.0)


def test_half_way():
    # TF21 positives ranked 1st and 3rd: AP = (1 + 2/3) / 2
    row = gaps(np.array([0.9, 0.7, 0.8, 0.2, 0.1, 0.1, 0.1, 0.1]))
    expected = (1 + 2 / 3) / 2
    assert row["auprc"] == pytest.approx(expected)
    assert row["gap_closed"] == pytest.approx((expected - FLOOR) / (1 - FLOOR))


def test_unknown_features_are_refused():
    with pytest.raises(ValueError, match="TF22"):
        long_range_gaps(LABELS, LABELS.astype(float), NAMES, {"TF22": "TF01"})


def test_local_summary_leaves_out_long_range_and_features_without_auroc():
    rows = [{"feature": "TF01", "auroc": 0.8, "auprc": 0.5}, {"feature": "TF21", "auroc": 0.6, "auprc": 0.2},
            {"feature": "HM01", "auroc": 0.6, "auprc": 0.3}, {"feature": "HM02", "auroc": math.nan, "auprc": math.nan}]
    assert local_summary(rows, ["TF21"]) == {"features": 2, "mean_auroc": pytest.approx(0.7),
                                             "mean_auprc": pytest.approx(0.4)}


def test_mean_gap_closed_is_mean_gain_over_mean_gap():
    rows = [{"auprc": 0.9, "anchor_auprc": 1.0, "bin_only_floor": 0.5},   # closes 0.8
            {"auprc": 0.31, "anchor_auprc": 0.32, "bin_only_floor": 0.30}]  # closes 0.5 of a tiny gap
    assert mean_gap_closed(rows) == pytest.approx(((0.4 + 0.01) / 2) / ((0.5 + 0.02) / 2))
    assert math.isnan(mean_gap_closed([{"auprc": math.nan, "anchor_auprc": 1.0, "bin_only_floor": 0.5}]))
