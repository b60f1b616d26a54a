"""`gbb pretrain` end to end on a tiny corpus: FASTA -> F.1 corpus -> BPE -> shards -> DeepSpeed."""
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from genomics_bigbird.data.corpus import corpus_files, write_corpus
from genomics_bigbird.data.shards import write_shards
from genomics_bigbird.errors import InputError, TrainingError
from genomics_bigbird.genome import ReferenceGenome
from genomics_bigbird.model import EncoderConfig, build_classifier, load_checkpoint, load_encoder_weights
from genomics_bigbird.tokenizer import DNATokenizer
from genomics_bigbird.train.loop import rank_batches
from pipelines import cli
from pipelines.config import load_config
from pipelines.pretrain import PretrainConfig, main

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "pretrain" / "tiny.yaml"


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """Shards and tokenizer of a 2-contig genome whose sequence repeats 12-mers (learnable by MLM)."""
    rng = np.random.default_rng(3)
    root = tmp_path_factory.mktemp("pretrain_corpus")
    motifs = ["".join(rng.choice(list("ACGT"), size=12)) for _ in range(16)]
    with open(root / "genome.fa", "w") as handle:
        for name in ("chr1", "chr2"):
            seq = "".join(motifs[i] for i in rng.integers(0, len(motifs), size=45_000 // 12))
            handle.write(f">{name}\n" + "".join(seq[i:i + 60] + "\n" for i in range(0, len(seq), 60)))
    write_corpus(ReferenceGenome(root / "genome.fa"), root / "corpus", passes=2, seed=0)
    files = corpus_files(root / "corpus")
    tokenizer = DNATokenizer.train(files, vocab_size=128, model_prefix=root / "tokenizer" / "dna_bpe", seed=0)
    write_shards(files, tokenizer, root / "shards", documents_per_shard=2)
    return {"shards": root / "shards", "tokenizer": tokenizer.path, "vocab": len(tokenizer),
            "sha256": tokenizer.sha256}


def tiny_overrides(corpus, out_dir, **train):
    values = {"steps": 12, "warmup_steps": 2, "checkpoint_every": 6, "log_every": 1, **train}
    return [f"model.vocab_size={corpus['vocab']}", f"data.shards={corpus['shards']}",
            f"data.tokenizer={corpus['tokenizer']}", "data.max_length=128", f"out_dir={out_dir}",
            *(f"train.{key}={value}" for key, value in values.items())]


def tiny_config(corpus, out_dir, **train) -> PretrainConfig:
    return load_config(PretrainConfig, TINY, tiny_overrides(corpus, out_dir, **train))


def read_metrics(out_dir):
    return [json.loads(line) for line in (Path(out_dir) / "metrics.jsonl").read_text().splitlines()]


def test_rank_batches_partition_each_epoch_deterministically():
    per_rank = [rank_batches(23, 3, seed=5, epoch=0, rank=r, world_size=2) for r in range(2)]
    items = [i for batches in per_rank for batch in batches for i in batch]
    assert [len(b) for b in per_rank] == [3, 3]  # 11 items per rank (tail dropped) -> 3 full batches
    assert len(items) == len(set(items)) == 18 and set(items) <= set(range(23))
    assert rank_batches(23, 3, seed=5, epoch=0, rank=1, world_size=2) == per_rank[1]
    assert rank_batches(23, 3, seed=5, epoch=1, rank=1, world_size=2) != per_rank[1]
    assert rank_batches(23, 3, seed=6, epoch=0, rank=1, world_size=2) != per_rank[1]


def test_loss_falls_and_resume_repeats_the_uninterrupted_run(corpus, tmp_path):
    full = tmp_path / "full"
    outputs = main(tiny_config(corpus, full, steps=24, checkpoint_every=12, lr=3e-3), quiet=True)
    records = read_metrics(full)
    assert [r["step"] for r in records] == list(range(1, 25))
    first, last = records[:4], records[-4:]
    assert np.mean([r["mlm_loss"] for r in last]) < np.mean([r["mlm_loss"] for r in first]) - 0.25
    assert records[0]["lr"] == 0.0 and records[2]["lr"] == pytest.approx(3e-3)  # warmup, then decay
    assert records[-1]["lr"] == pytest.approx(3e-3 / 22)
    assert all(r["tokens_per_s"] > 0 and 0 <= r["mlm_accuracy"] <= 1 for r in records)
    assert outputs["steps"] == 24

    # the resolved config reloads; the exported weights fine-tune with the same tokenizer only
    saved = load_config(PretrainConfig, full / "config.yaml")
    assert saved.model["vocab_size"] == corpus["vocab"] and saved.train.steps == 24
    state, meta = load_checkpoint(full / "final", expected_tokenizer_sha256=corpus["sha256"])
    assert meta["task"] == "pretraining" and meta["extra"]["steps"] == 24
    classifier = build_classifier(EncoderConfig.from_dict(meta["model_config"]), num_labels=1)
    load_encoder_weights(classifier, state)
    assert torch.equal(classifier.encoder.token_embedding.weight, state["encoder.token_embedding.weight"])

    # a run killed after its step-12 checkpoint, resumed: the same next 12 steps, bit for bit
    resumed = tmp_path / "resumed"
    shutil.copytree(full, resumed)
    shutil.rmtree(resumed / "checkpoints" / "step24")
    (resumed / "checkpoints" / "latest").write_text("step12")
    main(tiny_config(corpus, resumed, steps=24, checkpoint_every=12, lr=3e-3, resume=True), quiet=True)
    again = read_metrics(resumed)
    assert [r["step"] for r in again] == list(range(1, 25))  # no duplicated steps
    for before, after in zip(records[12:], again[12:]):
        for key in ("loss", "mlm_loss", "nsp_loss", "mlm_accuracy", "nsp_accuracy", "lr", "epoch"):
            assert after[key] == before[key], (after["step"], key)
    resumed_state, _ = load_checkpoint(resumed / "final")
    assert all(torch.equal(resumed_state[k], v) for k, v in state.items())

    # without --resume an out_dir holding checkpoints is refused, not overwritten
    with pytest.raises(InputError, match="--resume"):
        main(tiny_config(corpus, resumed, steps=24), quiet=True)


def test_zero3_trains_and_exports_like_unsharded_training(corpus, tmp_path):
    runs = {}
    for stage in (0, 3):
        main(tiny_config(corpus, tmp_path / f"zero{stage}", steps=4, checkpoint_every=4, zero_stage=stage), quiet=True)
        runs[stage] = ([r["mlm_loss"] for r in read_metrics(tmp_path / f"zero{stage}")],
                       load_checkpoint(tmp_path / f"zero{stage}" / "final")[0])
    assert runs[3][0] == pytest.approx(runs[0][0], rel=1e-5)
    assert set(runs[3][1]) == set(runs[0][1])
    for name, value in runs[0][1].items():
        torch.testing.assert_close(runs[3][1][name], value, rtol=1e-4, atol=1e-5)


def test_wrong_vocabulary_is_a_one_line_error(corpus, tmp_path, capsys):
    overrides = tiny_overrides(corpus, tmp_path / "out")
    overrides[0] = f"model.vocab_size={corpus['vocab'] + 1}"
    assert cli.main(["pretrain", "--config", str(TINY), "--quiet", *overrides]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"the tokenizer has {corpus['vocab']} tokens" in err[0]
    assert "model.vocab_size=" in err[0] and str(corpus["tokenizer"]) in err[0]


def test_diverging_loss_names_the_step(corpus, tmp_path):
    with pytest.raises(TrainingError, match=r"NaN or infinite at step \d+; lower train.lr"):
        main(tiny_config(corpus, tmp_path / "out", steps=6, warmup_steps=0, lr=1e30, gradient_clipping=0.0),
             quiet=True)


@pytest.mark.slow
def test_two_processes_under_torchrun(corpus, tmp_path):
    out = tmp_path / "ddp"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "pipelines.cli", "pretrain", "--config", str(TINY), "--quiet",
               *tiny_overrides(corpus, out, steps=16, micro_batch_size=2, checkpoint_every=16, lr=2e-3)]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = read_metrics(out)
    assert len(records) == 16
    assert np.mean([r["mlm_loss"] for r in records[-4:]]) < np.mean([r["mlm_loss"] for r in records[:4]]) - 0.25
    manifest = json.loads((out / "manifest.json").read_text())
    resolved = manifest["config"]["resolved"]
    assert resolved["world_size"] == 2 and resolved["gradient_accumulation_steps"] == 2  # 8 = 2 x 2 x 2
    state, _ = load_checkpoint(out / "final")
    assert state["encoder.token_embedding.weight"].shape[0] == corpus["vocab"]


def test_quiet_run_prints_nothing_and_resuming_it_when_finished_changes_nothing(corpus, tmp_path, capsys):
    out = tmp_path / "done"
    overrides = tiny_overrides(corpus, out, steps=4, checkpoint_every=2)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    proc = subprocess.run([sys.executable, "-m", "pipelines.cli", "pretrain", "--config", str(TINY), "--quiet",
                           *overrides], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (proc.stdout, proc.stderr) == ("", "")  # DeepSpeed's start-up lines went to the log file
    assert "Setting accelerator to CPU" in (out / "pretrain.log").read_text()
    kept = [out / "metrics.jsonl", out / "manifest.json", *sorted((out / "final").iterdir()),
            *sorted((out / "tensorboard").iterdir())]
    before = {path: path.read_bytes() for path in kept}
    last = read_metrics(out)[-1]

    capsys.readouterr()
    assert cli.main(["pretrain", "--config", str(TINY), "--quiet", "--resume", *overrides]) == 0
    assert {path: path.read_bytes() for path in kept} == before
    manifest = json.loads((out / "manifest.json").read_text())["outputs"]
    assert manifest["last"] == last and last["step"] == 4 and math.isfinite(last["loss"])
    assert manifest["final"] == str(out / "final") and manifest["steps"] == 4
    assert capsys.readouterr() == ("", "")
    assert "already finished at step 4" in (out / "pretrain.log").read_text()
    # a checkpoint past train.steps cannot be resumed backwards
    with pytest.raises(InputError, match="past train.steps=2"):
        main(tiny_config(corpus, out, steps=2, checkpoint_every=2, resume=True), quiet=True)
