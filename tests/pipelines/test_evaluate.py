"""`gbb evaluate`: strand and checkpoint ensembles, metrics files, predictions users can re-analyse, report."""
import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from genomics_bigbird.data.labeled import LabeledWindows, LabeledWriter
from genomics_bigbird.evaluate.classifier import predict_split
from genomics_bigbird.model import EncoderConfig, build_classifier, save_checkpoint
from genomics_bigbird.model.inference import pad_rows
from genomics_bigbird.tokenizer import DNATokenizer
from pipelines import cli

WINDOW = 96


def windows(rng, n):
    return ["".join(rng.choice(list("ACGT"), WINDOW)) for _ in range(n)]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return DNATokenizer.train(windows(np.random.default_rng(0), 200), vocab_size=40,
                              model_prefix=tmp_path_factory.mktemp("tok") / "dna_bpe", seed=0)


def checkpoint(path, tokenizer, task, features, groups, seed, max_length=128):
    """A classifier checkpoint as `gbb finetune` writes it (random weights: evaluation does not care)."""
    config = EncoderConfig(vocab_size=len(tokenizer), hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                           max_position=128, attention="bigbird", block_size=16, num_global_blocks=1,
                           window_blocks=3, num_random_blocks=1, attention_backend="gather")
    torch.manual_seed(seed)
    model = build_classifier(config, len(features))
    return save_checkpoint(path, model, model_config=config.to_dict(), task=task, tokenizer_sha256=tokenizer.sha256,
                           extra={"feature_names": features, "feature_groups": groups, "max_length": max_length})


def write_set(path, task, features, groups, labels_for_split, seed=0):
    rng = np.random.default_rng(seed)
    with LabeledWriter(path, window=WINDOW, feature_names=features, feature_groups=groups, task=task,
                       scheme="replace" if task == "promoter" else "", source="test") as out:
        for split, labels in labels_for_split.items():
            n = len(labels)
            out.append(windows(rng, n), labels, [split] * n, chrom=["chr8"] * n, start=np.arange(n) * 200,
                       end=np.arange(n) * 200 + WINDOW, strand=["+"] * n)
    return path


def evaluate(out, data, tokenizer, *checkpoints, extra=()):
    argv = ["evaluate", "--checkpoint", *map(str, checkpoints), "--data", str(data), "--tokenizer",
            str(tokenizer.path), "--out", str(out), "--device", "cpu", "--batch-size", "4", "--quiet", *extra]
    return cli.main(argv)


@pytest.fixture(scope="module")
def promoter_run(tmp_path_factory, tokenizer):
    root = tmp_path_factory.mktemp("promoter")
    labels = np.array([[1], [0]] * 5)
    data = write_set(root / "promoter.h5", "promoter", ["promoter"], ["promoter"],
                     {"train": labels[:4], "test": labels})
    first = checkpoint(root / "ft1" / "best", tokenizer, "promoter", ["promoter"], ["promoter"], seed=1)
    second = checkpoint(root / "ft2" / "best", tokenizer, "promoter", ["promoter"], ["promoter"], seed=2)
    # the fine-tuning run's log beside best/: its curves go into the report
    (root / "ft1" / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n"
                                                        for s in range(1, 6)))
    assert evaluate(root / "eval", data, tokenizer, first, second) == 0
    return root, data, (first, second)


def test_promoter_outputs_and_strand_ensemble(promoter_run):
    root, data, _ = promoter_run
    out = root / "eval"
    for name in ("metrics.json", "metrics.tsv", "predictions.h5", "predictions.tsv", "roc_pr.png",
                 "training_curves.png", "report.html", "manifest.json", "evaluate.log"):
        assert (out / name).is_file(), name
    table = pd.read_csv(out / "predictions.tsv", sep="\t")
    assert len(table) == 10 and table["label"].tolist() == [1, 0] * 5
    assert table["chrom"].eq("chr8").all() and table["start"].tolist() == list(range(0, 2000, 200))
    for model in ("ft1/best", "ft2/best", "ensemble"):
        # The strand ensemble is the mean of the forward and reverse-complement probabilities.
        np.testing.assert_allclose(table[f"{model}:ensemble"], (table[f"{model}:forward"] + table[f"{model}:reverse"]) / 2,
                                   rtol=1e-6)
    # The checkpoint ensemble averages the models, strand by strand.
    np.testing.assert_allclose(table["ensemble:forward"], (table["ft1/best:forward"] + table["ft2/best:forward"]) / 2,
                               rtol=1e-6)
    with h5py.File(out / "predictions.h5") as f:
        forward, reverse = f["predictions/ensemble/forward"][:], f["predictions/ensemble/reverse"][:]
        np.testing.assert_allclose(f["predictions/ensemble/ensemble"][:], (forward.astype(float) + reverse) / 2, rtol=1e-6)
        assert f["labels"][:, 0].tolist() == [1, 0] * 5 and f.attrs["scheme"] == "replace"


def test_promoter_metrics_agree_with_the_predictions(promoter_run):
    root, _, _ = promoter_run
    out = root / "eval"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "promoter" and metrics["split"] == "test" and metrics["n"] == 10
    assert metrics["negative_scheme"] == "replace" and metrics["final"] == "ensemble"
    assert set(metrics["models"]) == {"ft1/best", "ft2/best", "ensemble"}
    table = pd.read_csv(out / "predictions.tsv", sep="\t")
    for model, strands in metrics["models"].items():
        for strand, values in strands.items():
            assert set(values) >= {"accuracy", "precision", "recall", "f1", "mcc", "auroc"}
            probabilities = table[f"{model}:{strand}"]
            assert values["auroc"] == pytest.approx(roc_auc_score(table["label"], probabilities), abs=1e-6)
            assert values["accuracy"] == pytest.approx(((probabilities >= 0.5) == table["label"]).mean())
    tsv = pd.read_csv(out / "metrics.tsv", sep="\t")
    assert len(tsv) == 9 and set(tsv["strand"]) == {"forward", "reverse", "ensemble"}
    assert tsv["scheme"].eq("replace").all()
    html = (out / "report.html").read_text()
    assert "negatives: replace" in html and html.count("data:image/png;base64") == 2


def test_predictions_match_the_model_run_directly(promoter_run, tokenizer):
    from genomics_bigbird.evaluate.classifier import load_classifier

    root, data, (first, _) = promoter_run
    model, meta = load_classifier(first, tokenizer.sha256)
    direct = predict_split(model, LabeledWindows(data), tokenizer, "test", max_length=128, pad_to_multiple_of=16)
    with h5py.File(root / "eval" / "predictions.h5") as f:
        np.testing.assert_allclose(f["predictions/ft1/best/forward"][:], direct.forward, rtol=1e-5)
        np.testing.assert_allclose(f["predictions/ft1/best/reverse"][:], direct.reverse, rtol=1e-5)
    assert not np.allclose(direct.forward, direct.reverse)  # the RC strand is a different input


def readme_predict_call() -> str:
    """The expression of the README's `predict_sequences(...)` line (section "Using the library")."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    code = readme.split("## Using the library", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    assert "model, meta = load_classifier(" in code
    line = next(line for line in code.splitlines() if "predict_sequences(" in line)
    return line.split("=", 1)[1].split("#", 1)[0].strip()


def test_the_readme_library_call_gives_what_gbb_evaluate_gives(tmp_path, tokenizer):
    from genomics_bigbird.evaluate.classifier import load_classifier
    from genomics_bigbird.evaluate.ensemble import predict_sequences

    # 16-token blocks fine-tuned at 64 tokens; windows of ~80 tokens: the call must keep the middle
    # 62 tokens and pad to the block size, as `gbb evaluate` does.
    rng = np.random.default_rng(3)
    sequences = ["".join(rng.choice(list("ACGT"), 160)) for _ in range(6)]
    with LabeledWriter(tmp_path / "set.h5", window=160, feature_names=["promoter"], feature_groups=["promoter"],
                       task="promoter", scheme="replace", source="test") as out:
        out.append(sequences, np.array([[1], [0]] * 3), ["test"] * 6, chrom=["chr8"] * 6, start=np.arange(6) * 200,
                   end=np.arange(6) * 200 + 160, strand=["+"] * 6)
    assert min(len(tokenizer.encode(s)) for s in sequences) > 62
    best = checkpoint(tmp_path / "ft" / "best", tokenizer, "promoter", ["promoter"], ["promoter"], seed=4, max_length=64)
    assert evaluate(tmp_path / "eval", tmp_path / "set.h5", tokenizer, best) == 0
    model, meta = load_classifier(best)
    call = readme_predict_call()
    names = {"predict_sequences": predict_sequences, "model": model, "meta": meta, "tokenizer": tokenizer}
    readme = np.concatenate([eval(call, {**names, "window": window}) for window in sequences])
    with h5py.File(tmp_path / "eval" / "predictions.h5") as f:
        np.testing.assert_allclose(readme, f["predictions/best/ensemble"][:], rtol=0, atol=1e-6)


def test_chromatin_metrics_per_group_and_features_without_positives(tmp_path, tokenizer):
    features, groups = ["CTCF", "POLR2A", "DNase", "H3K4me3"], ["TF", "TF", "DHS", "HM"]
    test_labels = np.zeros((12, 4), dtype=np.uint8)
    test_labels[::2, 0] = 1
    test_labels[:3, 1] = 1
    test_labels[1::3, 2] = 1  # H3K4me3 has no positive in the test split
    data = write_set(tmp_path / "chromatin.h5", "chromatin", features, groups,
                     {"train": np.ones((2, 4), dtype=np.uint8), "test": test_labels})
    model = checkpoint(tmp_path / "ft" / "best", tokenizer, "chromatin", features, groups, seed=3)
    assert evaluate(tmp_path / "eval", data, tokenizer, model) == 0
    out = tmp_path / "eval"
    metrics = json.loads((out / "metrics.json").read_text())
    result = metrics["models"]["best"]["ensemble"]
    assert result["excluded_no_positives"] == ["H3K4me3"] and result["n_excluded"] == 1
    assert set(result["summary"]) == {"all", "TF", "DHS", "HM"}
    assert result["summary"]["TF"]["features"] == 2 and result["summary"]["HM"]["features"] == 0
    assert result["summary"]["HM"]["median_auroc"] is None  # strict JSON: no AUROC is null, not NaN
    with h5py.File(out / "predictions.h5") as f:
        probabilities = f["predictions/best/ensemble"][:]
    aurocs = [roc_auc_score(test_labels[:, j], probabilities[:, j]) for j in range(3)]
    assert result["summary"]["TF"]["median_auroc"] == pytest.approx(np.median(aurocs[:2]), abs=1e-6)
    assert result["summary"]["all"]["mean_auroc"] == pytest.approx(np.mean(aurocs), abs=1e-6)
    per_feature = pd.read_csv(out / "per_feature.tsv", sep="\t")
    assert len(per_feature) == 3 * 4 and per_feature.loc[per_feature.feature == "H3K4me3", "auroc"].isna().all()
    tsv = pd.read_csv(out / "metrics.tsv", sep="\t")
    row = tsv[(tsv.strand == "ensemble") & (tsv.group == "all")].iloc[0]
    assert row["excluded_no_positives"] == 1 and row["features"] == 3
    for name in ("roc_pr.png", "auroc_by_group.png", "report.html"):
        assert (out / name).is_file()
    assert not (out / "predictions.tsv").exists()  # 919 columns x strands belong in the HDF5 file


def test_wrong_tokenizer_or_task_is_a_one_line_error(promoter_run, tmp_path, tokenizer, capsys):
    root, data, (first, _) = promoter_run
    other = DNATokenizer.train(windows(np.random.default_rng(7), 200), vocab_size=40, model_prefix=tmp_path / "o", seed=0)
    capsys.readouterr()
    assert cli.main(["evaluate", "--checkpoint", str(first), "--data", str(data), "--tokenizer", str(other.path),
                     "--out", str(tmp_path / "e1"), "--device", "cpu", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(first) in err[0] and other.sha256 in err[0] and tokenizer.sha256 in err[0]
    chromatin = checkpoint(tmp_path / "c" / "best", tokenizer, "chromatin", ["a", "b"], ["TF", "HM"], seed=0)
    assert evaluate(tmp_path / "e2", data, tokenizer, chromatin) == 2
    assert "fine-tuned for 'chromatin'" in capsys.readouterr().err
    assert not (tmp_path / "e1").exists() and not (tmp_path / "e2").exists()


def test_split_predictions_do_not_depend_on_the_batch_size(tmp_path, tokenizer, tiny_bigbird):
    # N runs (as at contig ends) tokenize base by base: 44 to 98 tokens, padded to 48 ... 104 in 8-token blocks
    n_runs = [0, 24, 48, 72, 96] * 2
    sequences = ["N" * n + window[n:] for n, window in zip(n_runs, windows(np.random.default_rng(3), 10))]
    with LabeledWriter(tmp_path / "set.h5", window=WINDOW, feature_names=["a"], feature_groups=["TF"],
                       task="chromatin") as out:
        out.append(sequences, np.zeros((10, 1)), ["test"] * 10)
    labeled = LabeledWindows(tmp_path / "set.h5")
    one, seven = (predict_split(tiny_bigbird, labeled, tokenizer, "test", batch_size=batch_size, max_length=128,
                                pad_to_multiple_of=8) for batch_size in (1, 7))
    np.testing.assert_allclose(seven.forward, one.forward, rtol=0, atol=1e-6)
    np.testing.assert_allclose(seven.reverse, one.reverse, rtol=0, atol=1e-6)
    assert one.forward.shape == (10, 3) and tiny_bigbird.training  # every window predicted; the model's mode restored
    input_ids, attention_mask = pad_rows([[tokenizer.cls_id, *tokenizer.encode(sequences[0]), tokenizer.sep_id]],
                                         tokenizer.pad_id, 48)  # the first window alone, padded to its own 48
    with torch.no_grad():
        alone = torch.sigmoid(tiny_bigbird.eval()(input_ids, attention_mask)).numpy()
    np.testing.assert_allclose(one.forward[0], alone[0], rtol=0, atol=1e-6)


def test_windows_tokenized_by_dataloader_workers_give_the_same_predictions(tmp_path, tokenizer, tiny_bigbird):
    n = 150  # three blocks of 64 windows
    with LabeledWriter(tmp_path / "set.h5", window=WINDOW, feature_names=["a"], feature_groups=["TF"],
                       task="chromatin") as out:
        out.append(windows(np.random.default_rng(4), n), np.zeros((n, 1)), ["test"] * n)
    labeled = LabeledWindows(tmp_path / "set.h5")
    here, workers = (predict_split(tiny_bigbird, labeled, tokenizer, "test", batch_size=5, max_length=128,
                                   pad_to_multiple_of=8, workers=count) for count in (0, 2))
    assert here.forward.shape == (n, 3) and not np.isnan(here.forward).any()
    np.testing.assert_array_equal(workers.forward, here.forward)
    np.testing.assert_array_equal(workers.reverse, here.reverse)
