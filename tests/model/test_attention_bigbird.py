import pytest
import torch
from torch.nn.attention.flex_attention import _ordered_to_dense

from genomics_bigbird.model.attention import (
    SparsePlan, bigbird_layout, block_sparse_attention, build_attention, global_pattern,
    random_pattern, window_pattern)
from genomics_bigbird.model.attention.bigbird import compiled_flex_attention, flex_block_count, flex_inputs
from genomics_bigbird.model.attention.reference import bigbird_ref, full_ref
from genomics_bigbird.model.attention.select import layer_seed

# The eager (CPU) FlexAttention path warns that it is unfused; that is what we test here.
pytestmark = pytest.mark.filterwarnings("ignore:.*flex_attention.*:UserWarning")


def qkv(batch=2, heads=3, length=77, dim=16, dtype=torch.float32, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return [(scale * torch.randn(batch, heads, length, dim, generator=g, dtype=torch.float64)).to(dtype)
            for _ in range(3)]


def right_padding(batch, length, real_lengths):
    mask = torch.zeros(batch, length, dtype=torch.bool)
    for row, n in enumerate(real_lengths):
        mask[row, :n] = True
    return mask


# ---------------------------------------------------------------- layout rules

def test_global_first_rows_and_columns_are_full_and_nothing_else():
    pattern = global_pattern(8, 2, "first")
    assert pattern[:2].all() and pattern[:, :2].all()
    assert not pattern[2:, 2:].any()


def test_global_ends_puts_ceil_half_first_and_floor_half_last():
    pattern = global_pattern(8, 3, "ends")          # blocks 0, 1 and 7
    full_rows = [i for i in range(8) if pattern[i].all()]
    assert full_rows == [0, 1, 7]
    assert pattern[:, [0, 1, 7]].all() and not pattern[2:7][:, 2:7].any()


def test_window_is_centered_without_wrap_around():
    expected = torch.tensor([[1, 1, 0, 0, 0, 0],
                             [1, 1, 1, 0, 0, 0],
                             [0, 1, 1, 1, 0, 0],
                             [0, 0, 1, 1, 1, 0],
                             [0, 0, 0, 1, 1, 1],
                             [0, 0, 0, 0, 1, 1]], dtype=torch.bool)
    assert torch.equal(window_pattern(6, 3), expected)
    assert torch.equal(window_pattern(6, 5)[0], torch.tensor([1, 1, 1, 0, 0, 0], dtype=torch.bool))


def test_random_blocks_count_exclusions_and_head_difference():
    nb, heads, r = 32, 4, 3
    excluded = global_pattern(nb, 2) | window_pattern(nb, 3)
    rand = random_pattern(nb, heads, r, excluded, torch.Generator().manual_seed(0))
    assert rand.shape == (heads, nb, nb)
    assert not (rand & excluded).any()                       # never global, never in the window
    assert (rand[:, 2:].sum(-1) == r).all()                  # exactly r distinct blocks per row
    assert not rand[:, :2].any()                             # global rows get none
    assert not torch.equal(rand[0], rand[1])                 # heads differ


def test_random_takes_all_remaining_blocks_when_fewer_than_requested():
    layout = bigbird_layout(7, 1, num_global_blocks=2, window_blocks=3, num_random_blocks=5)
    # Row 4: global {0, 1}, window {3, 4, 5}; only {2, 6} remain and both are taken.
    assert layout[0, 4].all()
    assert layout.all()


def test_random_draw_is_uniform_over_candidates():
    nb, draws = 10, 2000
    excluded = global_pattern(nb, 2) | window_pattern(nb, 3)
    rand = random_pattern(nb, draws, 1, excluded, torch.Generator().manual_seed(1))
    counts = rand[:, 5].sum(0)                 # row 5: candidates {2, 3, 7, 8, 9}, 400 expected each
    assert counts[[0, 1, 4, 5, 6]].sum() == 0
    assert counts.sum() == draws
    assert ((counts[[2, 3, 7, 8, 9]] > 330) & (counts[[2, 3, 7, 8, 9]] < 470)).all()


def test_layout_is_fixed_by_seed():
    a = bigbird_layout(20, 2, seed=5)
    assert torch.equal(a, bigbird_layout(20, 2, seed=5))
    assert not torch.equal(a, bigbird_layout(20, 2, seed=6))
    # union of the parts: global rows full; an inner row has g + w + r = 8 blocks; row 2's window
    # overlaps global block 1 and the last row's window is cut at the end: 7 blocks each
    assert a[:, :2].all() and (a[:, 3:19].sum(-1) == 8).all() and (a[:, [2, 19]].sum(-1) == 7).all()


def test_gather_plan_is_sparse():
    plan = SparsePlan.from_layout(bigbird_layout(32, 2), block_size=4)
    assert plan.dense_rows.tolist() == [0, 1]
    assert plan.kv_index.shape == (2, 30, 8)     # 2 global + 3 window + 3 random key blocks per row


# ---------------------------------------------------------------- backends equal the reference

@pytest.mark.parametrize("backend", ["gather", "dense", "flex"])
@pytest.mark.parametrize("length", [64, 77])
@pytest.mark.parametrize("placement", ["first", "ends"])
@pytest.mark.parametrize("padded", [False, True])
def test_backend_equals_float64_reference(backend, length, placement, padded):
    block = 8
    nb = -(-length // block)
    layout = bigbird_layout(nb, 3, global_placement=placement, num_random_blocks=2, seed=3)
    q, k, v = qkv(length=length)
    mask = right_padding(2, length, [length, 45]) if padded else None
    out = block_sparse_attention(q, k, v, layout, block, mask, backend=backend)
    ref = bigbird_ref(q, k, v, layout, block, mask)
    assert out.shape == q.shape and out.dtype == q.dtype
    torch.testing.assert_close(out[0].double(), ref[0], atol=2e-6, rtol=1e-5)
    real = 45 if padded else length
    torch.testing.assert_close(out[1, :, :real].double(), ref[1, :, :real], atol=2e-6, rtol=1e-5)


def test_auto_is_gather_on_cpu():
    layout = bigbird_layout(10, 3)
    q, k, v = qkv()
    assert torch.equal(block_sparse_attention(q, k, v, layout, 8),
                       block_sparse_attention(q, k, v, layout, 8, backend="gather"))


def test_sparse_attention_differs_from_full_where_the_layout_is_sparse():
    # Guards the reference itself: a query block outside the global rows must not see a key
    # block that the layout leaves out (otherwise every test above could pass vacuously).
    layout = bigbird_layout(10, 3, num_random_blocks=0)
    q, k, v = qkv(length=80)
    out = block_sparse_attention(q, k, v, layout, 8, backend="gather")
    k2 = k.clone()
    k2[:, :, 72:] += 5.0                      # change only block 9
    out2 = block_sparse_attention(q, k2, v, layout, 8, backend="gather")
    assert torch.equal(out[:, :, 16:56], out2[:, :, 16:56])    # blocks 2..6 do not see block 9
    assert not torch.allclose(out[:, :, :16], out2[:, :, :16])  # global blocks do


def test_gather_gradients_match_reference_gradients():
    layout = bigbird_layout(5, 2, global_placement="ends", num_global_blocks=1, num_random_blocks=1)
    mask = right_padding(2, 37, [37, 30])
    inputs = [x.requires_grad_() for x in qkv(heads=2, length=37, dtype=torch.float64)]
    weights = torch.randn(2, 2, 37, 16, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    weights[1, :, 30:] = 0                     # padded query outputs are unspecified: no loss on them
    out = block_sparse_attention(*inputs, layout, 8, mask, backend="gather")
    grads = torch.autograd.grad((out * weights).sum(), inputs)
    ref = bigbird_ref(*inputs, layout, 8, mask).nan_to_num()
    ref_grads = torch.autograd.grad((ref * weights).sum(), inputs)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-9)


@pytest.mark.parametrize("backend", ["gather", "flex"])
def test_bf16_inputs_get_float32_softmax(backend):
    # Scores ~ +-100: bf16 spacing there is 0.5, so a softmax over bf16-rounded scores is far off.
    layout = bigbird_layout(8, 2, num_random_blocks=1)
    q, k, v = qkv(heads=2, length=64, dtype=torch.bfloat16, scale=3.0)
    out = block_sparse_attention(q, k, v, layout, 8, backend=backend)
    ref = bigbird_ref(q, k, v, layout, 8)
    err = (out.double() - ref).abs().max().item()
    naive_scores = (q @ k.transpose(-1, -2)) * 0.25                       # bf16 scores
    allowed = layout.repeat_interleave(8, 1).repeat_interleave(8, 2)
    naive = torch.softmax(naive_scores.masked_fill(~allowed, float("-inf")).double(), -1) @ v.double()
    naive_err = (naive - ref).abs().max().item()
    assert err < 0.05 * v.abs().max().item()          # bf16 output rounding level
    assert naive_err > 4 * err                        # and clearly better than bf16 scores


@pytest.mark.parametrize("backend", ["gather", "dense", "flex"])
def test_fully_padded_rows_are_finite(backend):
    layout = bigbird_layout(5, 3, global_placement="ends", num_global_blocks=2)
    q, k, v = [x.requires_grad_(backend != "flex") for x in qkv(length=37)]   # no CPU flex backward
    mask = right_padding(2, 37, [9, 0])                     # row 1 has no real token at all
    out = block_sparse_attention(q, k, v, layout, 8, mask, backend=backend)
    assert torch.isfinite(out).all()
    if backend != "flex":
        out.sum().backward()
        assert all(torch.isfinite(x.grad).all() for x in (q, k, v))


def test_wrong_layout_shape_is_rejected():
    q, k, v = qkv(length=77)
    with pytest.raises(ValueError, match="layout must be"):
        block_sparse_attention(q, k, v, bigbird_layout(9, 3), 8)


# ---------------------------------------------------------------- the module

def test_bigbird_module_has_no_parameters_and_uses_the_layer_seed():
    modules = [build_attention("bigbird", layer_idx=i, num_heads=3, block_size=8, seed=11)
               for i in range(2)]
    assert all(list(m.state_dict()) == [] and not list(m.parameters()) for m in modules)
    q, k, v = qkv(length=77)
    mask = right_padding(2, 77, [77, 50])
    out = modules[1](q, k, v, mask)
    layout = bigbird_layout(10, 3, seed=layer_seed(11, 1))
    torch.testing.assert_close(out, block_sparse_attention(q, k, v, layout, 8, mask))
    assert torch.equal(modules[1].plan(10, q.device).layout, layout)
    assert not torch.equal(modules[0].plan(10, q.device).layout, layout)   # layers differ


# ---------------------------------------------------------------- the CUDA flex path, checked on CPU
# On CUDA, flex runs compiled: the kernel visits the BlockMask's blocks and evaluates mask_mod in
# its partial blocks. Run eagerly (e.g. after a recompile-limit fallback) flex ignores the blocks
# and applies mask_mod to the dense score matrix. These tests take the objects flex_inputs builds
# for the CUDA path and check that both readings compute the layout and nothing else.

def flex_case(length, block=8, heads=2, batch=2, seed=0, padded=True):
    nb = -(-length // block)
    layout = bigbird_layout(nb, heads, num_global_blocks=1, num_random_blocks=1, seed=seed)
    q, k, v = qkv(batch=batch, heads=heads, length=length, seed=seed)
    mask = right_padding(batch, length, [length] + [length // 2] * (batch - 1)) if padded else None
    return layout, (q, k, v), mask


def cuda_path_inputs(layout, q, k, v, mask, block=8):
    return flex_inputs(q, k, v, SparsePlan.from_layout(layout, block), mask)


def kernel_token_mask(block_mask, batch):
    """(batch, H, L, L): the (query, key) pairs a block-sparse kernel scores.

    Full blocks are scored whole, partial blocks where mask_mod allows.
    """
    from torch.nn.attention.flex_attention import create_mask
    bs = block_mask.BLOCK_SIZE[0]
    partial = _ordered_to_dense(block_mask.kv_num_blocks, block_mask.kv_indices, block_mask.kv_indices.shape[-1])
    full = _ordered_to_dense(block_mask.full_kv_num_blocks, block_mask.full_kv_indices,
                             block_mask.full_kv_indices.shape[-1])
    expand = lambda blocks: blocks.repeat_interleave(bs, -2).repeat_interleave(bs, -1).bool()  # noqa: E731
    length = partial.shape[-1] * bs
    evaluated = create_mask(block_mask.mask_mod, batch, partial.shape[1], length, length, device="cpu")
    return expand(full) | (expand(partial) & evaluated)


@pytest.mark.parametrize("length", [96, 100, 200])       # 12, 13 and 25 blocks of 8: padded to 12, 16, 32
@pytest.mark.parametrize("padded", [False, True])
def test_cuda_path_block_mask_lists_exactly_the_layout(length, padded):
    layout, (q, k, v), mask = flex_case(length, padded=padded)
    nb = layout.shape[-1]
    _, _, _, block_mask = cuda_path_inputs(layout, q, k, v, mask)
    dense = block_mask.to_dense()[0]                                     # (H, nbp, nbp)
    assert dense.shape[-1] == flex_block_count(nb) > nb or length == 96
    assert torch.equal(dense[:, :nb, :nb], layout)
    assert not dense[:, nb:].any() and not dense[:, :, nb:].any()        # padding blocks: never visited
    # token level, what the compiled kernel scores: the layout, at real keys only
    real = torch.ones(2, length, dtype=torch.bool) if mask is None else mask
    expected = layout.repeat_interleave(8, 1).repeat_interleave(8, 2)[None, :, :length, :length] & real[:, None, None]
    assert torch.equal(kernel_token_mask(block_mask, 2)[:, :, :length, :length], expected)


@pytest.mark.parametrize("padded", [False, True])
def test_cuda_path_mask_mod_run_eagerly_equals_the_float64_reference(padded):
    from torch.nn.attention.flex_attention import flex_attention
    length = 150                                                         # 19 blocks, padded to 24
    layout, (q, k, v), mask = flex_case(length, padded=padded)
    inputs = cuda_path_inputs(layout, q, k, v, mask)
    # eager flex: mask_mod on the dense score matrix, block lists ignored
    out = flex_attention(*inputs[:3], block_mask=inputs[3])[:, :, :length]
    ref = bigbird_ref(q, k, v, layout, 8, mask)
    real = length // 2 if padded else length
    torch.testing.assert_close(out[0].double(), ref[0], atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(out[1, :, :real].double(), ref[1, :, :real], atol=2e-6, rtol=1e-5)
    assert (out[0].double() - full_ref(q, k, v, mask)[0]).abs().max() > 0.1   # and it is not dense attention


def test_compiled_flex_over_many_lengths_stays_the_layout_with_one_graph_per_length_step():
    # 12 lengths (block multiples and not, batch 2 to 4), more than torch's default limit of 8
    # recompiles: each result still equals the reference and differs from dense attention.
    from torch._dynamo.utils import counters
    lengths = [100, 96, 130, 150, 199, 64 * 4 + 3, 210, 300, 333, 390, 101, 257]
    graphs_before = counters["stats"]["unique_graphs"]
    for i, length in enumerate(lengths):
        layout, (q, k, v), mask = flex_case(length, batch=2 + i % 3, seed=i)
        inputs = cuda_path_inputs(layout, q, k, v, mask)
        out = compiled_flex_attention(*inputs, backend="aot_eager")[:, :, :length]
        ref = bigbird_ref(q, k, v, layout, 8, mask)
        torch.testing.assert_close(out[0].double(), ref[0], atol=2e-6, rtol=1e-5)
        torch.testing.assert_close(out[1:, :, :length // 2].double(), ref[1:, :, :length // 2], atol=2e-6, rtol=1e-5)
        assert (out[0].double() - full_ref(q, k, v, mask)[0]).abs().max() > 0.1
    steps = {flex_block_count(-(-n // 8)) for n in lengths}
    assert len(steps) == 6                 # 12, 16, 24, 32, 48, 64: at most one graph each, whatever the batch
    assert counters["stats"]["unique_graphs"] - graphs_before <= len(steps)


@pytest.mark.parametrize("per_function_limit", [True, False])   # torch >= 2.12, and the config patch before it
def test_a_recompile_limit_hit_raises_instead_of_running_flex_eagerly(monkeypatch, per_function_limit):
    import torch._dynamo
    from torch._dynamo.exc import FailOnRecompileLimitHit

    from genomics_bigbird.model.attention import bigbird
    torch._dynamo.reset()
    monkeypatch.setattr(bigbird, "FLEX_RECOMPILE_LIMIT", 2)
    monkeypatch.setattr(bigbird, "_COMPILE_TAKES_RECOMPILE_LIMIT", per_function_limit)
    try:
        for length in (100, 130):                          # two length steps: two graphs, within the limit
            layout, (q, k, v), mask = flex_case(length)
            compiled_flex_attention(*cuda_path_inputs(layout, q, k, v, mask), backend="aot_eager")
        layout, (q, k, v), mask = flex_case(199)           # a third step
        with pytest.raises(FailOnRecompileLimitHit):
            compiled_flex_attention(*cuda_path_inputs(layout, q, k, v, mask), backend="aot_eager")
    finally:
        torch._dynamo.reset()
