"""`gbb demo` end to end at a tiny scale: every step runs, and the report matches the step outputs."""
import json
import os
import shlex

import pysam
import pytest

from pipelines import cli

TINY = ["scale=0.2", "vocab_size=512", "pretrain_steps=3", "pretrain_max_length=256", "promoter_epochs=1",
        "promoter_max_length=256", "promoter_warmup_steps=1", "chromatin_steps=4", "chromatin_batch_size=8"]
STEPS = ["simulate", "corpus", "tokenizer", "shards", "pretrain", "promoter data", "chromatin data",
         "finetune promoter", "evaluate promoter", "finetune chromatin", "evaluate chromatin", "score variants"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    code = cli.main(["demo", "--out", str(out), "--device", "cpu", *TINY])
    assert code == 0
    assert os.environ.get("CUDA_VISIBLE_DEVICES") == visible, "--device cpu hides GPUs only during the chain"
    return out


def test_demo_runs_every_step_and_records_its_command(demo):
    report = json.loads((demo / "report.json").read_text())
    assert list(report["seconds"]) == STEPS
    script = (demo / "commands.sh").read_text().splitlines()
    assert "export CUDA_VISIBLE_DEVICES=" in "\n".join(script)  # --device cpu: training on the CPU too
    commands = [line for line in script if line.startswith("gbb ")]
    assert len(commands) == len(STEPS)
    words = [shlex.split(line)[1] for line in commands]
    assert words == ["simulate", "corpus", "tokenizer", "shards", "pretrain", "promoter", "chromatin",
                     "finetune", "evaluate", "finetune", "evaluate", "score-variants"]
    # each recorded command parses with gbb's own parser, so commands.sh can be rerun by hand
    for line in commands:
        cli.parse(shlex.split(line)[1:])
    manifest = json.loads((demo / "manifest.json").read_text())
    assert manifest["config"]["scale"] == 0.2
    assert (demo / "report.html").read_text().count("<img") >= 3


def test_demo_report_holds_the_evaluation_and_scoring_results(demo):
    report = json.loads((demo / "report.json").read_text())
    for task in ("promoter", "chromatin"):
        evaluation = json.loads((demo / f"evaluate_{task}" / "metrics.json").read_text())
        final = evaluation["models"][evaluation["final"]]["ensemble"]
        if task == "promoter":
            assert report["promoter"]["auroc"] == pytest.approx(final["auroc"], nan_ok=True)
            assert report["promoter"]["n"] == final["n"] > 0
        else:
            assert report["chromatin"]["summary"]["all"]["mean_auroc"] == pytest.approx(
                final["summary"]["all"]["mean_auroc"], nan_ok=True)

    # one scored row per (record, ALT) of the simulated VCF
    with pysam.VariantFile(str(demo / "simulated" / "variants.vcf.gz")) as vcf:
        expected = sum(len(record.alts or ()) or 1 for record in vcf)
    rows = (demo / "variants" / "scores.tsv").read_text().splitlines()
    assert len(rows) - 1 == expected
    assert sum(report["variants"]["status_counts"].values()) == expected
    assert report["pretrain"]["first_loss"] is not None and report["tokenizer"]["bp_per_token"] > 1
    # the long-range features against their bin motifs at the demo's width; the 8 kbp experiment is opt-in
    assert set(report["long_range"]) == {"auprc", "anchor_auprc", "gap_closed", "context_experiment"}
    assert report["long_range"]["context_experiment"] is None


def test_demo_stops_at_the_first_failing_step(tmp_path, capsys):
    code = cli.main(["demo", "--out", str(tmp_path / "bad"), "--device", "cpu", *TINY, "chromatin_width=0"])
    assert code != 0
    assert "chromatin data" in capsys.readouterr().err
    assert not (tmp_path / "bad" / "report.json").exists()
