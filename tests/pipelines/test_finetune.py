"""`gbb finetune`: a tiny encoder fine-tuned through DeepSpeed in this process (gloo on CPU)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from sklearn.metrics import roc_auc_score

from genomics_bigbird.data.labeled import LabeledWindows, LabeledWriter, TokenizedWindows
from genomics_bigbird.evaluate.classifier import load_classifier, predict_split, selection_score, task_metrics
from genomics_bigbird.genome import reverse_complement
from genomics_bigbird.model import EncoderConfig, build_pretraining_model, load_checkpoint, save_checkpoint
from genomics_bigbird.tokenizer import DNATokenizer
from genomics_bigbird.train.finetune import StrandAugmented
from pipelines import cli

ROOT = Path(__file__).resolve().parents[2]
WINDOW = 120
SPLITS = {"train": 48, "valid": 16, "test": 16}


def tiny_model(vocab_size: int) -> dict:
    return dict(vocab_size=vocab_size, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                max_position=128, attention="bigbird", block_size=16, num_global_blocks=1, window_blocks=3,
                num_random_blocks=1, attention_backend="gather", dropout=0.0)


def random_windows(rng, n, gc=0.5):
    """Windows whose G+C fraction is `gc`: promoters here are GC-rich, as CpG-island promoters are."""
    p = [(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2]
    return ["".join(rng.choice(list("ACGT"), WINDOW, p=p)) for _ in range(n)]


def write_promoters(path, seed=0):
    """Half GC-rich positives, half uniform negatives, in every split."""
    rng = np.random.default_rng(seed)
    with LabeledWriter(path, window=WINDOW, feature_names=["promoter"], feature_groups=["promoter"],
                       task="promoter", scheme="replace", source="test", seed=seed) as out:
        for split, n in SPLITS.items():
            sequences = random_windows(rng, n // 2, gc=0.65) + random_windows(rng, n // 2)
            labels = np.array([[1]] * (n // 2) + [[0]] * (n // 2))
            out.append(sequences, labels, [split] * n, chrom=["chr1"] * n, start=range(n), end=range(WINDOW, WINDOW + n))
    return path


def write_chromatin(path, seed=1):
    """Three features: a GC-driven TF, an AT-driven DHS and a rare histone mark."""
    rng = np.random.default_rng(seed)
    with LabeledWriter(path, window=WINDOW, feature_names=["CTCF", "DNase", "H3K27ac"],
                       feature_groups=["TF", "DHS", "HM"], task="chromatin", source="test", seed=seed) as out:
        for split, n in SPLITS.items():
            gc = rng.uniform(0.3, 0.7, n)
            sequences = [random_windows(rng, 1, g)[0] for g in gc]
            labels = np.stack([gc > 0.55, gc < 0.4, np.arange(n) == 0], axis=1).astype(np.uint8)
            out.append(sequences, labels, [split] * n)
    return path


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    rng = np.random.default_rng(5)
    return DNATokenizer.train(random_windows(rng, 150) + random_windows(rng, 150, gc=0.8), vocab_size=48,
                              model_prefix=tmp_path_factory.mktemp("tok") / "dna_bpe", seed=0)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, tokenizer):
    """A `gbb pretrain` final/ checkpoint (untrained weights are enough to test the hand-over)."""
    config = EncoderConfig(**tiny_model(len(tokenizer)))
    torch.manual_seed(3)
    return save_checkpoint(tmp_path_factory.mktemp("pretrain") / "final", build_pretraining_model(config),
                           model_config=config.to_dict(), task="pretraining", tokenizer_sha256=tokenizer.sha256,
                           extra={"tokenizer": str(tokenizer.path)})


def finetune(task, data, tokenizer, out, *overrides, pretrained=None, model=None):
    return cli.main(finetune_argv(task, data, tokenizer, out, *overrides, pretrained=pretrained, model=model))


def finetune_argv(task, data, tokenizer, out, *overrides, pretrained=None, model=None):
    argv = ["finetune", task, "--data", str(data), "--tokenizer", str(tokenizer.path), "--out", str(out),
            "--config", f"configs/finetune/tiny_{task}.yaml", "--quiet"]
    if pretrained is not None:
        argv += ["--pretrained", str(pretrained)]
    argv += ["train.epochs=null", "train.global_batch_size=8", "train.micro_batch_size=4", "train.zero_stage=0",
             "data.max_length=null"]
    if model is not None:
        argv += [f"model={json.dumps(model)}"]
    return argv + list(overrides)


def shell_env():
    """The environment of a `gbb` started from a shell, not of the process group this test process joined."""
    return {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}


def records(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_promoter_finetunes_from_pretrained_and_best_checkpoint_reloads(tmp_path, tokenizer, pretrained):
    data = write_promoters(tmp_path / "promoter.h5")
    out = tmp_path / "ft"
    code = finetune("promoter", data, tokenizer, out, "train.steps=30", "train.lr=3e-3", "train.log_every=1",
                    "train.eval_every=10", "train.warmup_steps=3", pretrained=pretrained)
    assert code == 0
    losses = [r["loss"] for r in records(out) if "loss" in r]
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5])  # GC-richer promoters can be told apart
    evaluations = [r for r in records(out) if "valid_auroc" in r]
    assert [r["step"] for r in evaluations] == [10, 20, 30]
    best = max(evaluations, key=lambda r: r["valid_auroc"])
    assert evaluations[-1]["best_step"] == best["step"] and best["valid_auroc"] > 0.8

    model, meta = load_classifier(out / "best", tokenizer.sha256)
    assert meta["task"] == "promoter" and meta["extra"]["step"] == best["step"]
    assert meta["extra"]["feature_names"] == ["promoter"] and meta["extra"]["scheme"] == "replace"
    assert meta["tokenizer_sha256"] == tokenizer.sha256
    assert meta["extra"]["pretrained"] == str(pretrained)
    labeled = LabeledWindows(data)
    reloaded = predict_split(model, labeled, tokenizer, "valid", max_length=meta["extra"]["max_length"],
                             pad_to_multiple_of=16)
    valid_labels = labeled.labels(labeled.indices("valid"))[:, 0]
    # The reloaded weights score the valid split exactly as the run did when it kept them: by default
    # by the mean of both strands' probabilities, the number `gbb evaluate` reports.
    assert roc_auc_score(valid_labels, reloaded.ensemble[:, 0]) == pytest.approx(best["valid_auroc"], abs=1e-12)
    assert meta["extra"]["valid"]["valid_auroc"] == best["valid_auroc"]

    # The encoder started from the pretrained weights: same config, and fine-tuning moved them.
    pretrained_state, pretrained_meta = load_checkpoint(pretrained)
    assert meta["model_config"] == pretrained_meta["model_config"]
    start = pretrained_state["encoder.token_embedding.weight"]
    assert not torch.equal(model.encoder.token_embedding.weight, start)
    assert torch.allclose(model.encoder.token_embedding.weight, start, atol=0.5)

    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["task"] == "promoter" and resolved["train"]["steps"] == 30
    assert resolved["train"]["pos_weight"] == 1.0 and resolved["model"]["hidden_size"] == 32
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["outputs"]["best_step"] == best["step"]
    # the budget actually spent: every step's windows, their real tokens, the training time
    assert manifest["outputs"]["examples_seen"] == 30 * resolved["train"]["global_batch_size"]
    assert manifest["outputs"]["tokens_seen"] >= 3 * manifest["outputs"]["examples_seen"]
    assert 0 < manifest["outputs"]["train_seconds"] < manifest["outputs"]["elapsed_s"]
    assert any(p.name.startswith("events") for p in (out / "tensorboard").iterdir())
    # A second run into the same directory must not replace the kept model.
    assert finetune("promoter", data, tokenizer, out, "train.steps=1", pretrained=pretrained) == 2


def test_tokenizer_mismatch_is_a_one_line_error(tmp_path, tokenizer, pretrained, capsys):
    other = DNATokenizer.train(random_windows(np.random.default_rng(9), 150), vocab_size=48,
                               model_prefix=tmp_path / "other_bpe", seed=0)
    assert other.sha256 != tokenizer.sha256
    data = write_promoters(tmp_path / "promoter.h5")
    capsys.readouterr()
    assert finetune("promoter", data, other, tmp_path / "ft", "train.steps=2", pretrained=pretrained) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert str(pretrained) in err[0] and str(other.path) in err[0] and str(tokenizer.path) in err[0]
    assert tokenizer.sha256 in err[0] and other.sha256 in err[0]
    assert not (tmp_path / "ft" / "best").exists()


def test_chromatin_head_has_a_label_per_feature_and_names_them(tmp_path, tokenizer):
    data = write_chromatin(tmp_path / "chromatin.h5")
    out = tmp_path / "ft"
    assert finetune("chromatin", data, tokenizer, out, "train.epochs=1", "train.steps=null",
                    "train.eval_rc_ensemble=false", model=tiny_model(len(tokenizer))) == 0
    model, meta = load_classifier(out / "best", tokenizer.sha256)
    assert model.head.classifier.out_features == 3
    assert meta["extra"]["feature_names"] == ["CTCF", "DNase", "H3K27ac"]
    assert meta["extra"]["feature_groups"] == ["TF", "DHS", "HM"]
    # validation on the forward strand only, when asked: best/ scores as task_metrics says of it
    labeled = LabeledWindows(data)
    forward = predict_split(model, labeled, tokenizer, "valid", max_length=meta["extra"]["max_length"],
                            pad_to_multiple_of=16, strands=("forward",)).forward
    metrics = task_metrics("chromatin", labeled.labels(labeled.indices("valid")), forward, labeled.feature_names,
                           labeled.feature_groups)
    assert meta["extra"]["valid"]["valid_auroc"] == pytest.approx(selection_score("chromatin", metrics), abs=1e-12)
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["train"]["pos_weight"] == 8.0  # BigBird F.3
    assert resolved["train"]["steps"] == 6  # one epoch of 48 windows in batches of 8
    assert [r["step"] for r in records(out) if "valid_auroc" in r] == [6]


def test_wrong_task_and_diverging_loss_are_clear_errors(tmp_path, tokenizer, capsys):
    data = write_promoters(tmp_path / "promoter.h5")
    assert finetune("chromatin", data, tokenizer, tmp_path / "a", "train.steps=2",
                    model=tiny_model(len(tokenizer))) == 2
    assert "gbb finetune promoter" in capsys.readouterr().err
    assert finetune("promoter", data, tokenizer, tmp_path / "b", "train.steps=4", "train.lr=1e30",
                    "train.warmup_steps=0", "train.gradient_clipping=0", model=tiny_model(len(tokenizer))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "NaN or infinite" in err[0]


def test_strand_augmentation_reads_about_half_the_windows_reverse_complemented(tmp_path, tokenizer):
    labeled = LabeledWindows(write_promoters(tmp_path / "promoter.h5"))
    augmented = StrandAugmented(TokenizedWindows(labeled, tokenizer, "train"),
                                TokenizedWindows(labeled, tokenizer, "train", reverse_complement=True), seed=0)
    flips = [augmented.is_reverse(i) for i in range(len(augmented))]
    assert 12 <= sum(flips) <= 36
    for item in range(len(augmented)):
        sequence = labeled.sequence(labeled.indices("train")[item])
        expected = reverse_complement(sequence) if flips[item] else sequence
        assert tokenizer.decode(augmented[item]["input_ids"][1:-1].tolist()) == expected
    augmented.set_epoch(1)
    assert [augmented.is_reverse(i) for i in range(len(augmented))] != flips  # fresh draws each epoch
    augmented.set_epoch(0)
    assert [augmented.is_reverse(i) for i in range(len(augmented))] == flips  # ... reproducible from the seed


def test_resume_after_kill_9_repeats_the_uninterrupted_run(tmp_path, tokenizer, pretrained):
    """A run killed with SIGKILL mid-way, resumed with --resume: the same losses, validation
    scores, best/ and final weights as a run never interrupted (dropout on, so the RNG counts)."""
    data = write_promoters(tmp_path / "promoter.h5")
    schedule = ["train.steps=16", "train.lr=3e-3", "train.warmup_steps=2", "train.eval_every=3",
                "train.log_every=3", "train.checkpoint_every=2", "train.keep_checkpoints=2"]

    def argv(out, *extra):
        return finetune_argv("promoter", data, tokenizer, out, *schedule, *extra, pretrained=pretrained,
                             model={"dropout": 0.1})

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", *argv(killed)], cwd=ROOT, env=shell_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    latest = killed / "checkpoints" / "latest"
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if latest.is_file() and latest.read_text().strip() not in ("", "step2"):
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    assert not (killed / "manifest.json").exists()  # it died mid-run, before the end

    assert cli.main(argv(killed, "--resume")) == 0
    reference = tmp_path / "uninterrupted"
    assert cli.main(argv(reference)) == 0

    def comparable(out):  # throughput is the one number that may differ
        return [{k: v for k, v in r.items() if not k.endswith("_per_s")} for r in records(out)]
    assert comparable(killed) == comparable(reference)
    assert [r["step"] for r in records(killed) if "loss" in r] == [3, 6, 9, 12, 15, 16]
    for name in ("best", "checkpoints/step16"):
        if name == "best":
            (got, meta), (want, want_meta) = load_checkpoint(killed / name), load_checkpoint(reference / name)
            assert meta["extra"]["step"] == want_meta["extra"]["step"]
        else:
            got, want = (torch.load(out / name / "mp_rank_00_model_states.pt", weights_only=False)["module"]
                         for out in (killed, reference))
        assert set(got) == set(want)
        assert all(torch.equal(got[k], want[k]) for k in want), name
    manifest = json.loads((killed / "manifest.json").read_text())["outputs"]
    assert manifest["best_step"] == json.loads((reference / "manifest.json").read_text())["outputs"]["best_step"]
    assert sorted(p.name for p in (killed / "checkpoints").iterdir() if p.is_dir()) == ["step14", "step16"]

    # resuming the finished run changes nothing
    finished = [killed / "metrics.jsonl", killed / "manifest.json", *sorted((killed / "best").iterdir())]
    before = {path: path.read_bytes() for path in finished}
    assert cli.main(argv(killed, "--resume")) == 0
    assert {path: path.read_bytes() for path in finished} == before


def test_quiet_prints_nothing_and_an_argument_error_prints_only_itself(tmp_path, tokenizer):
    """DeepSpeed's start-up lines go to the log file; a config error comes before DeepSpeed starts."""
    data = write_promoters(tmp_path / "promoter.h5")
    out = tmp_path / "ft"
    argv = finetune_argv("promoter", data, tokenizer, out, "train.steps=2", model=tiny_model(len(tokenizer)))
    gbb = [sys.executable, "-m", "pipelines.cli"]
    done = subprocess.run(gbb + argv, cwd=ROOT, env=shell_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (done.stdout, done.stderr) == ("", "")
    assert "step 2: valid AUROC" in (out / "finetune.log").read_text()

    wrong = subprocess.run(gbb + finetune_argv("promoter", data, tokenizer, tmp_path / "wrong", "train.steps=2",
                                               "train.global_batch_size=6", model=tiny_model(len(tokenizer))),
                           cwd=ROOT, env=shell_env(), capture_output=True, text=True, timeout=300)
    assert wrong.returncode == 2 and wrong.stdout == ""
    assert wrong.stderr.splitlines() == [wrong.stderr.strip()] and "global_batch_size=6" in wrong.stderr
    assert not (tmp_path / "wrong").exists()
