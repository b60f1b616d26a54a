import json

import numpy as np
import pytest

from genomics_bigbird.evaluate.metrics import multilabel_metrics
from genomics_bigbird.evaluate.report import (plot_auroc_by_group, plot_roc_pr, plot_training_curves,
                                              write_html_report)


def test_report_files(tmp_path):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, size=(40, 4))
    probs = np.clip(labels * 0.6 + rng.uniform(0, 0.4, size=labels.shape), 0, 1)
    report = multilabel_metrics(labels, probs, list("abcd"), ["TF", "TF", "DHS", "HM"])
    roc = plot_roc_pr({"forward": (labels[:, 0], probs[:, 0])}, tmp_path / "roc.png")
    box = plot_auroc_by_group(report.per_feature, tmp_path / "groups.png")
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps({"step": s, "loss": 1 / (s + 1)}) for s in range(5)))
    curves = plot_training_curves(tmp_path / "metrics.jsonl", tmp_path / "curves.png")
    page = write_html_report(tmp_path / "report.html", "test", [("chromatin", report.per_feature, [roc, box, curves])])
    for png in (roc, box, curves):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = page.read_text()
    assert text.count("<img") == 3 and "<td>a</td>" in text and "1.0000" in text
    assert not list(tmp_path.glob(".*tmp")), "no temporary files left behind"


def test_binned_pooled_curves_equal_sklearn_on_scores_within_a_bin():
    from sklearn import metrics as skm

    from genomics_bigbird.evaluate.report import binned_curves

    rng = np.random.default_rng(2)
    labels = (rng.random((3000, 30)) < 0.1).astype(np.uint8)
    bins = 500
    scores = (rng.integers(0, bins, labels.shape) + 0.5) / bins  # one score per bin: binning loses nothing
    scores = np.where(labels == 1, np.maximum(scores, 150.5 / bins), scores)  # informative, still bin centres
    curve = binned_curves(labels, scores, bins=bins, rows_per_block=700)
    assert curve["auroc"] == pytest.approx(skm.roc_auc_score(labels.ravel(), scores.ravel()), abs=1e-12)
    assert curve["auprc"] == pytest.approx(skm.average_precision_score(labels.ravel(), scores.ravel()), abs=1e-12)
    fpr, tpr, _ = skm.roc_curve(labels.ravel(), scores.ravel(), drop_intermediate=False)
    np.testing.assert_allclose(curve["fpr"], fpr)
    np.testing.assert_allclose(curve["tpr"], tpr)
    assert binned_curves(np.zeros((5, 2)), np.full((5, 2), 0.5)) is None  # no positives: no curve
