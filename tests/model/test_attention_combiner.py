import pytest
import torch

from genomics_bigbird.model.attention import build_attention, combiner_attention, full_attention
from genomics_bigbird.model.attention.combiner import default_span
from genomics_bigbird.model.attention.reference import (
    combiner_axial_ref, combiner_fixed_ref, combiner_mixture_ref, full_ref)

REFS = {"fixed": combiner_fixed_ref, "axial": combiner_axial_ref, "mixture": combiner_mixture_ref}


def qkv(batch=2, heads=2, length=37, dim=8, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, heads, length, dim, generator=g, dtype=torch.float64).to(dtype)
            for _ in range(3)]


def right_padding(length, real_lengths):
    mask = torch.zeros(len(real_lengths), length, dtype=torch.bool)
    for row, n in enumerate(real_lengths):
        mask[row, :n] = True
    return mask


def test_fixed_by_hand_with_zero_queries():
    # q = 0: every score is 0 and every softmax is uniform. Position 0 sees values 1, 2 directly
    # and span {2, 3} through one term whose local expectation is (3 + 4) / 2: (1 + 2 + 3.5) / 3.
    # Position 2 sees 3, 4 directly and span {0, 1} as (1 + 2) / 2: (3 + 4 + 1.5) / 3.
    q = torch.zeros(1, 1, 4, 1)
    k = torch.randn(1, 1, 4, 1, generator=torch.Generator().manual_seed(0))
    v = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 4, 1)
    out = combiner_attention(q, k, v, "fixed", span=2)
    torch.testing.assert_close(out.flatten(), torch.tensor([6.5, 6.5, 8.5, 8.5]) / 3)


@pytest.mark.parametrize("plan", ["fixed", "axial", "mixture"])
@pytest.mark.parametrize("span", [4, 5, None])
@pytest.mark.parametrize("padded", [False, True])
def test_combiner_equals_reference(plan, span, padded):
    q, k, v = qkv()
    mask = right_padding(37, [37, 22]) if padded else None
    out = combiner_attention(q, k, v, plan, span, mask)
    ref = REFS[plan](q, k, v, span or default_span(37), mask)
    torch.testing.assert_close(out[0], ref[0], atol=1e-12, rtol=1e-10)
    real = 22 if padded else 37
    torch.testing.assert_close(out[1, :, :real], ref[1, :, :real], atol=1e-12, rtol=1e-10)


def test_axial_with_inner_padding_drops_empty_spans():
    # Mask a whole column (positions 1, 5, 9, ...) and a whole row: empty spans must be dropped.
    q, k, v = qkv(batch=1, length=24)
    mask = torch.ones(1, 24, dtype=torch.bool)
    mask[0, 1::4] = False
    mask[0, 8:12] = False
    out = combiner_attention(q, k, v, "axial", 4, mask)
    ref = combiner_axial_ref(q, k, v, 4, mask)
    torch.testing.assert_close(out[:, :, mask[0]], ref[:, :, mask[0]], atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("plan", ["fixed", "axial"])
@pytest.mark.parametrize("span", [37, 64])
def test_one_span_covering_the_sequence_is_full_attention(plan, span):
    q, k, v = qkv()
    mask = right_padding(37, [37, 30])
    out = combiner_attention(q, k, v, plan, span, mask)
    full = full_attention(q, k, v, mask)
    torch.testing.assert_close(out[0], full[0], atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(out[1, :, :30], full[1, :, :30], atol=1e-12, rtol=1e-10)


def test_combiner_is_not_full_attention_with_several_spans():
    # Guards the test above: with real spans the abstraction changes the result.
    q, k, v = qkv()
    assert not torch.allclose(combiner_attention(q, k, v, "fixed", 4), full_ref(q, k, v), atol=1e-3)


@pytest.mark.parametrize("plan", ["fixed", "axial"])
def test_gradients_match_reference_gradients(plan):
    inputs = [x.requires_grad_() for x in qkv(batch=1, length=18)]
    mask = right_padding(18, [15])
    weights = torch.randn(1, 2, 18, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    weights[:, :, 15:] = 0
    out = combiner_attention(*inputs, plan, 4, mask)
    grads = torch.autograd.grad((out * weights).sum(), inputs)
    ref = REFS[plan](*inputs, 4, mask).nan_to_num()
    ref_grads = torch.autograd.grad((ref * weights).sum(), inputs)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-9)


@pytest.mark.parametrize("plan", ["fixed", "axial"])
def test_bf16_inputs_match_reference_within_bf16_rounding(plan):
    q, k, v = (x * 3 for x in qkv(dtype=torch.bfloat16))
    out = combiner_attention(q, k, v, plan, 4)
    assert out.dtype == torch.bfloat16
    ref = REFS[plan](q, k, v, 4)
    # float32 softmax inside: only the bf16 rounding of the output remains (~2^-8 relative)
    assert (out.double() - ref).abs().max() <= 2 ** -7 * ref.abs().max()


@pytest.mark.parametrize("plan", ["fixed", "axial", "mixture"])
def test_fully_padded_rows_are_finite_with_finite_gradients(plan):
    q, k, v = [x.requires_grad_() for x in qkv(dtype=torch.float32)]
    mask = right_padding(37, [6, 0])
    out = combiner_attention(q, k, v, plan, 4, mask)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert all(torch.isfinite(x.grad).all() for x in (q, k, v))


def test_default_span_is_a_power_of_two_near_sqrt_length():
    assert [default_span(n) for n in (1, 16, 37, 1000, 4096, 16384)] == [1, 4, 8, 32, 64, 128]


@pytest.mark.parametrize("kind", ["combiner-fixed", "combiner-axial", "combiner-mixture"])
def test_combiner_modules_have_no_parameters(kind):
    module = build_attention(kind, layer_idx=0, num_heads=2, combiner_span=4)
    assert list(module.state_dict()) == [] and not list(module.parameters())
    q, k, v = qkv()
    torch.testing.assert_close(module(q, k, v, None),
                               combiner_attention(q, k, v, kind.split("-")[1], 4))


def test_unknown_kind_and_plan_are_rejected():
    with pytest.raises(ValueError, match="unknown attention kind"):
        build_attention("combiner-zigzag", layer_idx=0, num_heads=2)
    q, k, v = qkv()
    with pytest.raises(ValueError, match="plan must be"):
        combiner_attention(q, k, v, "zigzag")
