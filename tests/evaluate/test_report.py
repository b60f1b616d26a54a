import json

import numpy as np

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
