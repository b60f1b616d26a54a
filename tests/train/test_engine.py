"""The DeepSpeed engine on a small regression network, in this one process (gloo on CPU)."""
import pytest
import torch

from genomics_bigbird.errors import InputError
from genomics_bigbird.train.deepspeed_config import (
    checkpoint_info, deepspeed_config, gradient_accumulation_steps, latest_checkpoint_tag)
from genomics_bigbird.train.engine import (
    build_engine, consolidated_state_dict, current_lr, export_weights, init_distributed, load_training_checkpoint,
    prune_checkpoints, save_training_checkpoint)


class Regressor(torch.nn.Module):
    """y = sum(x) learned by a 2-layer net; dropout makes the RNG part of an exact resume."""

    def __init__(self):
        super().__init__()
        self.hidden = torch.nn.Linear(4, 32)
        self.norm = torch.nn.LayerNorm(32)
        self.dropout = torch.nn.Dropout(0.1)
        self.out = torch.nn.Linear(32, 1)

    def forward(self, x):
        return self.out(self.dropout(torch.relu(self.norm(self.hidden(x)))))


X = torch.randn(64, 4, generator=torch.Generator().manual_seed(1))
Y = X.sum(dim=1, keepdim=True)


def make_engine(stage, global_batch=8, micro_batch=4):
    init_distributed()
    torch.manual_seed(0)
    config = deepspeed_config(global_batch_size=global_batch, micro_batch_size=micro_batch, world_size=1,
                              zero_stage=stage, precision="fp32", gradient_clipping=1.0)
    return build_engine(Regressor(), config, lr=1e-2, weight_decay=0.01, warmup_steps=2, total_steps=40)


def train(engine, micro_steps, start=0):
    losses = []
    for i in range(start, start + micro_steps):
        rows = slice((i * 4) % 64, (i * 4) % 64 + 4)
        loss = torch.nn.functional.mse_loss(engine(X[rows]), Y[rows])
        engine.backward(loss)
        engine.step()
        losses.append(loss.item())
    return losses


def dataset_loss(engine):
    engine.eval()
    with torch.no_grad():
        loss = torch.nn.functional.mse_loss(engine(X), Y).item()
    engine.train()
    return loss


def test_gradient_accumulation_is_derived_from_the_global_batch():
    assert gradient_accumulation_steps(256, 4, 8) == 8
    assert gradient_accumulation_steps(8, 8, 1) == 1
    with pytest.raises(InputError, match="multiple of"):
        gradient_accumulation_steps(10, 4, 1)
    config = deepspeed_config(global_batch_size=256, micro_batch_size=2, world_size=16, zero_stage=2,
                              precision="bf16", gradient_clipping=1.0,
                              extra={"zero_optimization": {"stage": 2, "overlap_comm": True}})
    assert config["train_batch_size"] == 256 and config["gradient_accumulation_steps"] == 8
    assert config["bf16"] == {"enabled": True} and config["fp16"] == {"enabled": False}
    assert config["zero_optimization"] == {"stage": 2, "overlap_comm": True}
    with pytest.raises(InputError, match="stage 3"):
        deepspeed_config(global_batch_size=8, micro_batch_size=8, world_size=1, zero_stage=2, precision="fp32",
                         gradient_clipping=1.0, extra={"zero_optimization": {"stage": 3}})


@pytest.mark.parametrize("stage", [0, 2])
def test_loss_falls_and_checkpoint_resumes_exactly(tmp_path, stage):
    engine = make_engine(stage)
    before = dataset_loss(engine)
    train(engine, 32)  # 16 optimizer steps of 2 accumulated micro-batches
    assert engine.global_steps == 16
    assert dataset_loss(engine) < 0.5 * before
    save_training_checkpoint(engine, tmp_path, "step16", {"step": 16, "position": 32})
    assert latest_checkpoint_tag(tmp_path) == "step16"
    saved_weights = consolidated_state_dict(engine)
    uninterrupted = train(engine, 8, start=32)
    lr_after = current_lr(engine)

    resumed = make_engine(stage)  # fresh weights, optimizer and RNG
    client = load_training_checkpoint(resumed, tmp_path)
    assert client["step"] == 16 and client["position"] == 32
    assert resumed.global_steps == 16
    for name, value in consolidated_state_dict(resumed).items():
        assert torch.equal(value, saved_weights[name]), name
    assert train(resumed, 8, start=32) == uninterrupted  # same weights, Adam moments, lr and dropout
    assert current_lr(resumed) == lr_after


def test_export_from_zero3_equals_unpartitioned_training(tmp_path):
    plain = make_engine(0)
    train(plain, 8)
    expected = consolidated_state_dict(plain)
    sharded = make_engine(3)
    train(sharded, 8)
    written = {}
    export_weights(sharded, tmp_path / "final", lambda state, directory: written.update(state, directory=directory))
    assert written.pop("directory") == tmp_path / "final"
    assert set(written) == set(expected)
    for name, value in expected.items():
        assert written[name].shape == value.shape and written[name].dtype == torch.float32
        torch.testing.assert_close(written[name], value, rtol=1e-5, atol=1e-6)
    hidden_only = consolidated_state_dict(sharded, prefix="hidden.")
    assert set(hidden_only) == {"weight", "bias"}


def test_pruning_keeps_the_newest_and_a_world_size_change_is_refused(tmp_path):
    engine = make_engine(0)
    for step in (1, 2, 3):
        train(engine, 2)
        save_training_checkpoint(engine, tmp_path, f"step{step}", {"step": step})
    assert prune_checkpoints(tmp_path, keep=2) == ["step1"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["step2", "step3"]
    info = checkpoint_info(tmp_path)
    assert info == {"world_size": 1, "client_state": {"step": 3}}
    # the same checkpoint as if two processes had written it: DeepSpeed's shards would not fit
    (tmp_path / "step3" / "checkpoint_info.json").write_text('{"world_size": 2, "client_state": {}}')
    with pytest.raises(InputError, match="saved by 2 process"):
        load_training_checkpoint(make_engine(0), tmp_path)
