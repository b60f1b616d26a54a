"""Checkpoints: exact round trip, wrapper-free keys, tied weights, attention kinds, tokenizer guard."""
import json

import pytest
import torch
from safetensors import safe_open
from torch import nn

from genomics_bigbird.model import (
    EncoderConfig, build_classifier, build_pretraining_model, load_checkpoint, save_checkpoint)

TOKENIZER = "a" * 64
OTHER_TOKENIZER = "b" * 64


def tiny_config(attention: str = "full", **changes) -> EncoderConfig:
    values = dict(vocab_size=40, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                  max_position=128, attention=attention, block_size=16, num_global_blocks=2,
                  window_blocks=3, num_random_blocks=1, attention_backend="gather")
    return EncoderConfig(**{**values, **changes})


def inputs(length: int = 48):
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 40, (2, length), generator=generator)
    mask = torch.ones(2, length, dtype=torch.bool)
    mask[1, length - 5:] = False
    segments = torch.zeros_like(ids)
    segments[:, length // 2:] = 1
    mlm_positions = torch.rand(2, length, generator=generator) < 0.2
    return ids, mask, segments, mlm_positions


def test_round_trip_is_exact_and_keys_carry_no_wrapper_prefix(tmp_path):
    config = tiny_config()
    torch.manual_seed(0)
    model = build_pretraining_model(config).eval()
    compiled = torch.compile(model)  # wrapping only: its state_dict keys start with `_orig_mod.`
    assert next(iter(compiled.state_dict())).startswith("_orig_mod.")
    directory = save_checkpoint(tmp_path / "ckpt", compiled, model_config=config.to_dict(), task="pretrain",
                                tokenizer_sha256=TOKENIZER, extra={"step": 7})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temporary left behind
    state_dict, meta = load_checkpoint(directory, expected_tokenizer_sha256=TOKENIZER)
    assert set(state_dict) == set(model.state_dict())
    assert meta["task"] == "pretrain" and meta["extra"] == {"step": 7} and meta["tokenizer_sha256"] == TOKENIZER
    assert EncoderConfig.from_dict(meta["model_config"]) == config

    torch.manual_seed(1)  # different initial weights, replaced by the checkpoint's
    restored = build_pretraining_model(EncoderConfig.from_dict(meta["model_config"])).eval()
    restored.load_state_dict(state_dict, strict=True)
    with torch.no_grad():
        expected, got = model(*inputs()), restored(*inputs())
    assert all(torch.equal(a, b) for a, b in zip(expected, got))


def test_classifier_metadata_and_overwrite(tmp_path):
    config = tiny_config()
    features = [f"feature_{i}" for i in range(5)]
    first = build_classifier(config, 5)
    save_checkpoint(tmp_path / "best", first, model_config=config.to_dict(), task="chromatin",
                    tokenizer_sha256=TOKENIZER, extra={"num_labels": 5, "feature_names": features})
    second = build_classifier(config, 5)
    with torch.no_grad():
        second.head.classifier.bias.fill_(3.0)
    save_checkpoint(tmp_path / "best", second, model_config=config.to_dict(), task="chromatin",
                    tokenizer_sha256=TOKENIZER, extra={"num_labels": 5, "feature_names": features})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]
    state_dict, meta = load_checkpoint(tmp_path / "best")
    assert meta["extra"]["feature_names"] == features and meta["extra"]["num_labels"] == 5
    assert torch.equal(state_dict["head.classifier.bias"], torch.full((5,), 3.0))
    on_disk = json.loads((tmp_path / "best" / "checkpoint.json").read_text())
    assert on_disk["format_version"] == 1 and on_disk["task"] == "chromatin"


class TiedLM(nn.Module):
    """A model that ties by sharing one Parameter (the HF way), unlike our heads."""

    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(10, 4)
        self.decoder = nn.Linear(4, 10, bias=False)
        self.decoder.weight = self.embedding.weight


def test_shared_parameters_are_stored_once_and_restored_under_both_names(tmp_path):
    model = TiedLM()
    save_checkpoint(tmp_path / "tied", model, model_config={}, task="test", tokenizer_sha256=TOKENIZER)
    with safe_open(str(tmp_path / "tied" / "model.safetensors"), framework="pt") as handle:
        assert list(handle.keys()) == ["embedding.weight"]
    state_dict, meta = load_checkpoint(tmp_path / "tied")
    assert meta["tied_weights"] == {"decoder.weight": "embedding.weight"}
    fresh = TiedLM()
    fresh.load_state_dict(state_dict, strict=True)
    assert torch.equal(fresh.decoder.weight, model.embedding.weight)
    assert fresh.decoder.weight is fresh.embedding.weight


def test_weights_saved_with_full_attention_load_into_bigbird(tmp_path):
    torch.manual_seed(0)
    full = build_pretraining_model(tiny_config("full")).eval()
    save_checkpoint(tmp_path / "full", full, model_config=tiny_config("full").to_dict(), task="pretrain",
                    tokenizer_sha256=TOKENIZER)
    state_dict, _ = load_checkpoint(tmp_path / "full")
    bigbird = build_pretraining_model(tiny_config("bigbird")).eval()
    bigbird.load_state_dict(state_dict, strict=True)  # attention kernels hold no weights
    # 32 tokens are 2 blocks of 16, both global: BigBird then attends everywhere, exactly like full.
    with torch.no_grad():
        expected, got = full(*inputs(32)), bigbird(*inputs(32))
    for a, b in zip(expected, got):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_a_checkpoint_refuses_another_tokenizer(tmp_path):
    config = tiny_config()
    save_checkpoint(tmp_path / "ckpt", build_classifier(config, 1), model_config=config.to_dict(),
                    task="promoter", tokenizer_sha256=TOKENIZER)
    with pytest.raises(ValueError) as excinfo:
        load_checkpoint(tmp_path / "ckpt", expected_tokenizer_sha256=OTHER_TOKENIZER)
    message = str(excinfo.value)
    assert TOKENIZER in message and OTHER_TOKENIZER in message
    assert "Use the tokenizer the checkpoint was trained with" in message
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        load_checkpoint(tmp_path / "missing")
