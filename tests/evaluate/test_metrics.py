import numpy as np
import pytest

from genomics_bigbird.evaluate.metrics import binary_metrics, multilabel_metrics


def test_binary_metrics_hand_computed():
    labels = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    probs = np.array([0.9, 0.8, 0.4, 0.6, 0.1, 0.2, 0.3, 0.7])
    m = binary_metrics(labels, probs)
    # predictions at 0.5: 1 1 0 1 0 0 0 1 -> TP=3, FN=1, FP=1, TN=3
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["precision"] == pytest.approx(3 / 4)
    assert m["recall"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(3 / 4)
    assert m["mcc"] == pytest.approx((3 * 3 - 1 * 1) / np.sqrt(4 * 4 * 4 * 4))
    # AUROC = fraction of (pos, neg) pairs ranked correctly: pos 0.4 loses to neg 0.6 only -> 15/16
    assert m["auroc"] == pytest.approx(15 / 16)


def test_multilabel_excludes_features_without_positives():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=(50, 3))
    labels[:, 2] = 0
    probs = np.where(labels == 1, 0.9, 0.1).astype(float)
    probs[:, 1] = 1 - probs[:, 1]  # a perfectly wrong feature
    report = multilabel_metrics(labels, probs, ["a", "b", "c"], ["TF", "DHS", "TF"])
    aurocs = {r["feature"]: r["auroc"] for r in report.per_feature}
    assert aurocs["a"] == 1.0 and aurocs["b"] == 0.0 and np.isnan(aurocs["c"])
    assert report.excluded == ["c"]
    assert report.summary["all"]["features"] == 2
    assert report.summary["all"]["mean_auroc"] == pytest.approx(0.5)
    assert report.summary["TF"]["median_auroc"] == pytest.approx(1.0)
    assert report.summary["DHS"]["mean_auroc"] == pytest.approx(0.0)


def test_all_columns_at_once_equal_sklearn_per_column_with_ties():
    from sklearn import metrics as skm

    from genomics_bigbird.evaluate.metrics import column_auroc_auprc

    rng = np.random.default_rng(1)
    labels = (rng.random((3000, 40)) < rng.uniform(0.01, 0.5, 40)).astype(np.uint8)
    scores = np.round(rng.random((3000, 40)) * 0.5 + 0.4 * labels, 2)  # rounded: many tied scores
    scores[:, 3] = 0.5                                                   # one column all tied
    labels[:, 5], labels[:, 6] = 0, 1                                    # no positives / no negatives
    auroc, auprc = column_auroc_auprc(labels, scores)
    for j in range(40):
        if j in (5, 6):
            assert np.isnan(auroc[j]) and np.isnan(auprc[j])
            continue
        assert auroc[j] == pytest.approx(skm.roc_auc_score(labels[:, j], scores[:, j]), abs=1e-12)
        assert auprc[j] == pytest.approx(skm.average_precision_score(labels[:, j], scores[:, j]), abs=1e-12)
    assert auroc[3] == 0.5
