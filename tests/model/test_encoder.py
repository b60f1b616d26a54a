"""Encoder, heads and task models on tiny CPU configs."""
import dataclasses
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from genomics_bigbird.model import (
    EncoderConfig, build_classifier, build_encoder, build_pretraining_model, load_encoder_weights)
from pipelines.config import load_config

KINDS = ("full", "bigbird", "combiner-fixed", "combiner-axial", "combiner-mixture")
TINY_YAML = Path(__file__).resolve().parents[2] / "configs" / "model" / "tiny.yaml"
VOCAB, PAD, MASK, CLS = 40, 0, 1, 2


def tiny_config(attention: str = "full", **changes) -> EncoderConfig:
    """2 layers x 32 hidden x 2 heads; 8-token blocks so 64 tokens make 8 blocks (sparse for bigbird)."""
    values = dict(vocab_size=VOCAB, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                  max_position=128, attention=attention, block_size=8, num_global_blocks=1,
                  window_blocks=3, num_random_blocks=1, combiner_span=8, attention_backend="gather",
                  pad_id=PAD)
    return EncoderConfig(**{**values, **changes})


def random_ids(generator: torch.Generator, batch: int, length: int) -> torch.Tensor:
    ids = torch.randint(3, VOCAB, (batch, length), generator=generator)
    ids[:, 0] = CLS
    return ids


def test_config_rejects_inconsistent_sizes():
    with pytest.raises(ValueError, match="hidden_size 100 is not divisible by num_heads 3"):
        tiny_config(hidden_size=100, num_heads=3)
    with pytest.raises(ValueError, match="attention 'sparse' is not one of full, bigbird"):
        tiny_config(attention="sparse")
    with pytest.raises(ValueError, match="window_blocks must be odd"):
        tiny_config(window_blocks=2)
    assert tiny_config().head_dim == 16
    assert EncoderConfig.from_dict(tiny_config().to_dict()) == tiny_config()


def test_shapes_of_every_output():
    torch.manual_seed(0)
    config = tiny_config()
    ids = random_ids(torch.Generator().manual_seed(1), 3, 40)
    mask = torch.ones(3, 40, dtype=torch.bool)
    hidden, pooled = build_encoder(config).eval()(ids, mask)
    assert hidden.shape == (3, 40, 32) and pooled.shape == (3, 32)
    assert pooled.abs().max() <= 1.0  # tanh pooler, as BERT
    mlm_positions = torch.zeros(3, 40, dtype=torch.bool)
    mlm_positions[0, 5] = mlm_positions[2, 7] = mlm_positions[2, 30] = True
    mlm_logits, nsp_logits = build_pretraining_model(config)(ids, mask, torch.zeros_like(ids), mlm_positions)
    assert mlm_logits.shape == (3, VOCAB) and nsp_logits.shape == (3, 2)
    assert build_classifier(config, 919)(ids, mask).shape == (3, 919)
    assert build_classifier(config, 1)(ids, mask).shape == (3, 1)
    with pytest.raises(ValueError, match="longer than the model's max_position 128"):
        build_encoder(config)(random_ids(torch.Generator(), 1, 129), torch.ones(1, 129, dtype=torch.bool))


def test_tiny_yaml_builds_a_model_of_the_documented_size():
    config = load_config(EncoderConfig, TINY_YAML)
    encoder = build_encoder(config)
    per_layer = 4 * 128 * 128 + 2 * 128 * 512  # qkv + out, MLP up + down (weights only)
    weights = sum(p.numel() for name, p in encoder.named_parameters()
                  if name.startswith("layers.") and p.dim() == 2)
    assert weights == 2 * per_layer


HF_LAYOUT = dict(norm_position="post", embedding_layer_norm=True, activation="gelu_new", classifier_head="hf",
                 global_placement="ends", num_global_blocks=2)


@pytest.mark.parametrize("kind", KINDS + ("hf_eval",))
def test_right_padding_leaves_real_positions_unchanged(kind):
    """A 60-token input alone equals the same input padded to 64 beside a longer one (same 8 blocks)."""
    torch.manual_seed(0)
    config = tiny_config("bigbird", sparse_layout="hf_eval", **HF_LAYOUT) if kind == "hf_eval" else tiny_config(kind)
    encoder = build_encoder(config).eval()
    generator = torch.Generator().manual_seed(2)
    short = random_ids(generator, 1, 60)
    batch = random_ids(generator, 2, 64)
    batch[0, :60], batch[0, 60:] = short[0], PAD
    mask = torch.ones(2, 64, dtype=torch.bool)
    mask[0, 60:] = False
    segments = torch.zeros(2, 64, dtype=torch.long)
    segments[:, 30:] = 1
    with torch.no_grad():
        alone_hidden, alone_pooled = encoder(short, torch.ones(1, 60, dtype=torch.bool), segments[:1, :60])
        hidden, pooled = encoder(batch, mask, segments)
    torch.testing.assert_close(hidden[0, :60], alone_hidden[0], atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(pooled[0], alone_pooled[0], atol=2e-5, rtol=1e-4)
    assert torch.isfinite(hidden).all()


def test_mlm_logits_only_at_masked_positions_from_the_tied_embedding():
    torch.manual_seed(0)
    model = build_pretraining_model(tiny_config()).eval()
    ids = random_ids(torch.Generator().manual_seed(3), 2, 24)
    mask = torch.ones(2, 24, dtype=torch.bool)
    segments = torch.zeros_like(ids)
    everywhere = torch.ones(2, 24, dtype=torch.bool)
    chosen = torch.zeros(2, 24, dtype=torch.bool)
    chosen[0, 4] = chosen[1, 2] = chosen[1, 17] = True
    with torch.no_grad():
        all_logits, _ = model(ids, mask, segments, everywhere)
        logits, _ = model(ids, mask, segments, chosen)
        hidden, _ = model.encoder(ids, mask, segments)
    assert logits.shape == (3, VOCAB)
    # rows come in row-major order of the chosen positions: (0, 4), (1, 2), (1, 17)
    torch.testing.assert_close(logits, all_logits.view(2, 24, VOCAB)[chosen])
    head = model.mlm_head
    expected = head.norm(F.gelu(head.transform(hidden[chosen]))) @ model.encoder.token_embedding.weight.T + head.bias
    torch.testing.assert_close(logits, expected)
    # Tied: the (vocab, hidden) matrix exists once and MLM gradients reach the token embedding.
    matrices = [k for k, v in model.state_dict().items() if v.shape == (VOCAB, 32)]
    assert matrices == ["encoder.token_embedding.weight"]
    # Token 7 is absent from the input, so its embedding row gets gradient only as decoder row 7.
    no_seven = ids.masked_fill(ids == 7, 8)
    model(no_seven, mask, segments, chosen)[0][:, 7].sum().backward()
    assert model.encoder.token_embedding.weight.grad[7].abs().sum() > 0


def theme_batch(generator: torch.Generator, batch: int = 8, length: int = 64):
    """MLM where each sequence is 60% one theme token: a masked token's label is the theme,
    which only attention to the other positions can reveal."""
    theme = torch.randint(3, VOCAB, (batch, 1), generator=generator).expand(batch, length)
    noise = torch.randint(3, VOCAB, (batch, length), generator=generator)
    ids = torch.where(torch.rand(batch, length, generator=generator) < 0.6, theme, noise)
    chosen = torch.rand(batch, length, generator=generator) < 0.15
    chosen[:, 0] = False
    ids = ids.masked_fill(chosen, MASK)
    ids[:, 0] = CLS
    return ids, torch.ones(batch, length, dtype=torch.bool), theme, chosen


@pytest.mark.parametrize("kind", KINDS)
def test_every_attention_kind_learns_a_masked_token_task(kind):
    torch.manual_seed(0)
    model = build_pretraining_model(tiny_config(kind, dropout=0.0))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(4)
    losses = []
    for _ in range(200):
        ids, mask, labels, chosen = theme_batch(generator)
        mlm_logits, _ = model(ids, mask, torch.zeros_like(ids), chosen)
        loss = F.cross_entropy(mlm_logits, labels[chosen])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    start, end = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert start > 3.3  # about ln(37): a guess among the 37 data tokens
    assert end < 0.6 * start, losses[::10]


def test_classifier_starts_from_pretrained_encoder_weights():
    torch.manual_seed(0)
    config = tiny_config()
    pretrained = build_pretraining_model(config)
    classifier = build_classifier(dataclasses.replace(config, dropout=0.0), 919).eval()
    load_encoder_weights(classifier, pretrained.state_dict())
    ids = random_ids(torch.Generator().manual_seed(5), 2, 32)
    mask = torch.ones(2, 32, dtype=torch.bool)
    with torch.no_grad():
        assert torch.equal(classifier.encoder(ids, mask)[1], pretrained.eval().encoder(ids, mask)[1])
    with pytest.raises(ValueError, match="no encoder weights"):
        load_encoder_weights(classifier, {"head.classifier.weight": torch.zeros(919, 32)})
    partial = {k: v for k, v in pretrained.state_dict().items() if not k.startswith("encoder.layers.1.")}
    with pytest.raises(RuntimeError, match="Missing key"):
        load_encoder_weights(classifier, partial)


def test_hf_layout_and_every_attention_kind_keep_the_weight_names():
    """Checkpoints move between attention kinds; HF's layout adds the embedding norm and drops the final one."""
    ours = set(build_classifier(tiny_config("full"), 3).state_dict())
    for kind in KINDS:
        assert set(build_classifier(tiny_config(kind), 3).state_dict()) == ours
    hf_full = set(build_classifier(tiny_config("full", **HF_LAYOUT), 3).state_dict())
    hf_eval = set(build_classifier(tiny_config("bigbird", sparse_layout="hf_eval", **HF_LAYOUT), 3).state_dict())
    assert hf_eval == hf_full
    encoder_only = {k for k in hf_full if k.startswith("encoder.")}
    assert encoder_only == {k for k in ours if k.startswith("encoder.") and not k.startswith("encoder.norm.")} | {
        "encoder.embedding_norm.weight", "encoder.embedding_norm.bias"}
    assert hf_full - encoder_only == {"head.dense.weight", "head.dense.bias", "head.classifier.weight",
                                      "head.classifier.bias"}


def test_hf_eval_layout_needs_hf_global_blocks():
    with pytest.raises(ValueError, match="sparse_layout hf_eval is HF's layout"):
        tiny_config("bigbird", sparse_layout="hf_eval")
    with pytest.raises(ValueError, match="norm_position 'middle' is not one of pre, post"):
        tiny_config(norm_position="middle")
