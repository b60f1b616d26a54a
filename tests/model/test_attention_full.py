import math

import torch

from genomics_bigbird.model.attention import build_attention, full_attention
from genomics_bigbird.model.attention.reference import full_ref


def qkv(batch=2, heads=3, length=21, dim=8, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, heads, length, dim, generator=g, dtype=dtype) for _ in range(3)]


def test_full_attention_equals_hand_computed_softmax_on_two_tokens():
    # One head, two tokens, d=1: weights are softmax([q k0, q k1]) with no scaling beyond sqrt(1).
    q = torch.tensor([[[[1.0], [0.0]]]])
    k = torch.tensor([[[[0.0], [math.log(3.0)]]]])
    v = torch.tensor([[[[10.0], [20.0]]]])
    out = full_attention(q, k, v)
    # query 0: weights 1/4, 3/4 -> 17.5; query 1: equal weights -> 15
    torch.testing.assert_close(out[0, 0, :, 0], torch.tensor([17.5, 15.0]))


def test_full_attention_matches_reference_with_padding():
    q, k, v = qkv()
    mask = torch.ones(2, 21, dtype=torch.bool)
    mask[1, 13:] = False
    out = full_attention(q, k, v, mask)
    ref = full_ref(q, k, v, mask)
    torch.testing.assert_close(out[0].double(), ref[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[1, :, :13].double(), ref[1, :, :13], atol=1e-5, rtol=1e-5)


def test_padded_keys_do_not_change_real_outputs():
    q, k, v = qkv(batch=1, length=10)
    mask = torch.ones(1, 10, dtype=torch.bool)
    mask[0, 6:] = False
    out = full_attention(q, k, v, mask)
    short = full_attention(q[:, :, :6], k[:, :, :6], v[:, :, :6])
    torch.testing.assert_close(out[:, :, :6], short)


def test_fully_padded_sequence_gives_finite_output():
    q, k, v = qkv()
    mask = torch.zeros(2, 21, dtype=torch.bool)
    mask[0, :5] = True
    assert torch.isfinite(full_attention(q, k, v, mask)).all()


def test_full_module_has_no_parameters_and_calls_the_kernel():
    module = build_attention("full", layer_idx=0, num_heads=3)
    assert list(module.state_dict()) == [] and not list(module.parameters())
    q, k, v = qkv()
    torch.testing.assert_close(module(q, k, v, None), full_attention(q, k, v))
