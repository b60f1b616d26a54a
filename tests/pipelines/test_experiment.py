"""`gbb experiment context --quick`: every arm runs, on the same test bins, and the outputs hold what they claim."""
import json
import shlex

import h5py
import numpy as np
import pandas as pd
import pytest

from pipelines import cli
from pipelines.experiment import Arm, ContextExperimentConfig, plan_arms

ARMS = ["w400-bigbird", "w1000-bigbird", "w2000-bigbird", "w2000-combiner-fixed", "w2000-combiner-axial",
        "w2000-full"]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    out = tmp_path_factory.mktemp("experiment") / "context"
    assert cli.main(["experiment", "context", "--quick", "--out", str(out), "--device", "cpu"]) == 0
    return out, json.loads((out / "results.json").read_text())


def test_every_arm_gets_the_same_budget_and_reports_steps_tokens_and_time(experiment):
    out, results = experiment
    arms = {row["arm"]: row for row in results["arms"]}
    assert list(arms) == ARMS
    assert {(row["steps"], row["batch"]) for row in arms.values()} == {(2, 4)}
    assert {row["examples_seen"] for row in arms.values()} == {8}
    seen = [arms[f"w{w}-bigbird"]["tokens_seen"] for w in (400, 1000, 2000)]
    assert seen == sorted(seen) and seen[0] > 0, "wider windows, more tokens per step"
    for row in arms.values():
        assert row["tokens_per_s"] > 0 and row["wall_s"] > 0
    table = pd.read_csv(out / "results.tsv", sep="\t")
    assert list(table["arm"]) == ARMS and "tokens_seen" in table and "mean_gap_closed" in table


def test_every_arm_is_evaluated_on_the_same_test_bins(experiment):
    out, results = experiment
    assert results["same_test_bins"]
    # independently of the results: the test split of the bins BED the arms were prepared from
    bins = pd.read_csv(out / "bins" / "bins.bed", sep="\t", header=None, names=["chrom", "start", "end"])
    test = bins[bins["chrom"].isin(["chr8", "chr9"])]
    expected = [f"{c}:{s + 100}" for c, s in zip(test["chrom"], test["start"])]
    for arm in ARMS:
        with h5py.File(out / "arms" / arm / "evaluate" / "predictions.h5", "r") as f:
            centers = (f["start"][:] + f["end"][:]) // 2
            chrom = [c.decode() if isinstance(c, bytes) else c for c in f["chrom"][:]]
            assert [f"{c}:{m}" for c, m in zip(chrom, centers)] == expected, arm
            assert f["labels"].shape == (len(expected), 40)


def test_long_range_features_are_reported_apart_with_their_gaps(experiment):
    out, results = experiment
    per_feature = pd.read_csv(out / "per_feature.tsv", sep="\t")
    assert len(per_feature) == len(ARMS) * 40
    assert sorted(per_feature.loc[per_feature["long_range"], "feature"].unique()) == ["TF21", "TF22", "TF23", "TF24"]
    gaps = pd.read_csv(out / "gaps.tsv", sep="\t")
    assert len(gaps) == len(ARMS) * 4
    assert set(zip(gaps["feature"], gaps["anchor"])) == {("TF21", "TF01"), ("TF22", "TF02"), ("TF23", "TF03"),
                                                         ("TF24", "TF04")}
    np.testing.assert_allclose(gaps["gap"], gaps["anchor_auprc"] - gaps["auprc"], atol=2e-6)  # NaN: no positive in the split
    accept = results["acceptance"]
    assert (accept["widest"], accept["narrowest"]) == ("w2000-bigbird", "w400-bigbird")
    assert isinstance(accept["passed"], bool)


def test_report_and_commands(experiment):
    out, _ = experiment
    assert (out / "report.html").read_text().count("<img") == 1
    commands = [line for line in (out / "commands.sh").read_text().splitlines() if line.startswith("gbb ")]
    assert sum(line.startswith("gbb finetune chromatin") for line in commands) == len(ARMS)
    assert sum(line.startswith("gbb evaluate") for line in commands) == len(ARMS)
    for line in commands:  # commands.sh reruns by hand
        cli.parse(shlex.split(line)[1:])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["outputs"]["acceptance"]["widest"] == "w2000-bigbird"


def test_full_attention_is_left_out_where_it_does_not_fit():
    config = ContextExperimentConfig(widths=[400, 8000], full_attention_max_tokens=1024)
    arms, skipped = plan_arms(config, bp_per_token=5.0, pretrained_attention="bigbird")
    assert arms == [Arm(400, "bigbird"), Arm(8000, "bigbird"), Arm(8000, "combiner-fixed"), Arm(8000, "combiner-axial")]
    assert [(s["width"], s["attention"]) for s in skipped] == [(8000, "full")]
    config.full_attention_max_tokens = 2048
    assert Arm(8000, "full") in plan_arms(config, bp_per_token=5.0, pretrained_attention="bigbird")[0]


def test_a_pretrained_path_that_is_no_checkpoint_is_a_one_line_error_before_anything_runs(tmp_path, capsys):
    tokenizer = tmp_path / "bpe.model"
    tokenizer.write_bytes(b"")
    out = tmp_path / "out"
    assert cli.main(["experiment", "context", "--quick", "--out", str(out), f"pretrained={tmp_path / 'nowhere'}",
                     f"tokenizer={tokenizer}"]) == 2
    assert "no checkpoint.json" in capsys.readouterr().err and not out.exists()
