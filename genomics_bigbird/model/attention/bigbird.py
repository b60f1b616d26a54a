"""BigBird block-sparse attention (Zaheer et al. 2020, appendix D, Fig. 4-6): gather, flex and dense backends.

All backends compute the same thing: dense softmax attention restricted to the token-level
expansion of a block layout (H, nb, nb) and to real keys. The sequence is padded inside to a
multiple of the block size; padded keys are masked and padded query rows are cut off again.
"""
import copy
import functools
import inspect
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange

from genomics_bigbird.model.attention.padding import (
    attend_all_if_empty, compute_dtype, pad_length, pad_mask, real_token_mask)

BACKENDS = ("auto", "gather", "flex", "dense")


def _kv_blocks(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For bool block rows (..., nb): every key block, attended ones first in ascending order, and their count."""
    # A stable sort of "not attended" keeps the attended blocks first and in block order.
    return torch.argsort((~rows).to(torch.uint8), dim=-1, stable=True), rows.sum(dim=-1)


@dataclass
class SparsePlan:
    """Index tensors derived once from a layout; reused by every call with the same layout.

    dense_rows: query blocks that attend to every key block in every head (global rows).
    sparse_rows: the others; kv_index (H, Ns, K) lists each one's key blocks (ascending, padded
    with masked slots up to K = the longest row), kv_valid marks the real slots.
    gather_index: kv_index flattened over (head, block), what one index_select takes;
    row_order: puts [dense_rows | sparse_rows] outputs back into block order.
    """

    layout: torch.Tensor          # (H, nb, nb) bool
    block_size: int
    dense_rows: torch.Tensor      # (Nd,) long
    sparse_rows: torch.Tensor     # (Ns,) long
    kv_index: torch.Tensor        # (H, Ns, K) long
    kv_valid: torch.Tensor        # (H, Ns, K) bool
    gather_index: torch.Tensor    # (H*Ns*K,) long, into blocks flattened as (head, block)
    row_order: torch.Tensor       # (nb,) long
    block_masks: dict = field(default_factory=dict)  # flex: (padded layout, BlockMask) per (device, kind)

    @classmethod
    def from_layout(cls, layout: torch.Tensor, block_size: int) -> "SparsePlan":
        """Build the gather indices of a (H, nb, nb) layout."""
        layout = layout.bool()
        heads, num_blocks, _ = layout.shape
        dense = layout.all(dim=-1).all(dim=0)
        dense_rows, sparse_rows = dense.nonzero().flatten(), (~dense).nonzero().flatten()
        index, counts = _kv_blocks(layout[:, sparse_rows])              # (H, Ns, nb), (H, Ns)
        width = int(counts.max()) if counts.numel() else 0
        kv_index = index[..., :width]
        kv_valid = torch.arange(width, device=layout.device) < counts[..., None]
        head_offset = num_blocks * torch.arange(heads, device=layout.device)[:, None, None]
        gather_index = (kv_index + head_offset).flatten()
        row_order = torch.cat([dense_rows, sparse_rows]).argsort()
        return cls(layout, block_size, dense_rows, sparse_rows, kv_index, kv_valid, gather_index, row_order)

    @property
    def num_blocks(self) -> int:
        return self.layout.shape[-1]

    def to(self, device: torch.device) -> "SparsePlan":
        """Return this plan with its tensors on `device` (self when already there)."""
        if self.layout.device == torch.device(device):
            return self
        return SparsePlan(self.layout.to(device), self.block_size, self.dense_rows.to(device),
                          self.sparse_rows.to(device), self.kv_index.to(device),
                          self.kv_valid.to(device), self.gather_index.to(device),
                          self.row_order.to(device))


def block_sparse_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                           layout: torch.Tensor, block_size: int,
                           attention_mask: torch.Tensor | None = None, backend: str = "auto", *,
                           plan: SparsePlan | None = None) -> torch.Tensor:
    """Return softmax attention restricted to `layout` (H, nb, nb) and real keys.

    q, k, v: (batch, heads, length, head_dim), nb = ceil(length / block_size);
    attention_mask: (batch, length), True = real token. Pass a cached `plan` (made from the same
    layout) to skip re-deriving indices and BlockMasks on every call.
    """
    batch, heads, length, _ = q.shape
    num_blocks = math.ceil(length / block_size)
    if layout.shape != (heads, num_blocks, num_blocks):
        raise ValueError(f"layout must be (heads, nb, nb) = {(heads, num_blocks, num_blocks)} for "
                         f"length {length} and block_size {block_size}, got {tuple(layout.shape)}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        backend = "flex" if q.is_cuda and flex_kernel_options(block_size) is not False else "gather"
    if backend == "flex":
        plan = (plan or SparsePlan.from_layout(layout, block_size)).to(q.device)
        return _flex_attention(q, k, v, plan, attention_mask)
    real = pad_mask(real_token_mask(attention_mask, batch, length, q.device), block_size)
    q, k, v = (pad_length(x, block_size) for x in (q, k, v))
    if backend == "dense":
        out = _dense_attention(q, k, v, layout.to(q.device), block_size, real)
    else:
        plan = (plan or SparsePlan.from_layout(layout, block_size)).to(q.device)
        out = _gather_attention(q, k, v, plan, real)
    return out[:, :, :length]


def _dense_attention(q, k, v, layout, block_size, real) -> torch.Tensor:
    """Masked SDPA over the token-level expansion of the layout (O(L^2) memory: tests only)."""
    allowed = layout.repeat_interleave(block_size, 1).repeat_interleave(block_size, 2)
    allowed = allowed[None] & real[:, None, None, :]                    # (B, H, L, L)
    allowed = attend_all_if_empty(allowed)                              # keep empty rows finite
    ct = compute_dtype(q.dtype)
    out = F.scaled_dot_product_attention(q.to(ct), k.to(ct), v.to(ct), attn_mask=allowed)
    return out.to(q.dtype)


def _gather_attention(q, k, v, plan: SparsePlan, real) -> torch.Tensor:
    """Blockify, gather each query block's key/value blocks, one batched attention (BigBird appendix D, Fig. 6).

    The attention itself is SDPA over the gathered blocks: on CPU its fused kernel never
    materialises the (query, key) score tensor, which made the unfused matmul-softmax-matmul
    about 2.3x slower forward+backward at 1,600 tokens (benchmarks/train_step.py).
    """
    bs, dtype = plan.block_size, q.dtype
    q, k, v = (x.to(compute_dtype(dtype)) for x in (q, k, v))   # float32 scores, even under bf16
    q_blocks = rearrange(q, "b h (n w) d -> b h n w d", w=bs)
    pieces = []
    if plan.dense_rows.numel():
        # Global query rows attend to every key: plain dense attention for those rows only.
        q_dense = rearrange(q_blocks[:, :, plan.dense_rows], "b h n w d -> b h (n w) d")
        out = F.scaled_dot_product_attention(q_dense, k, v, attn_mask=attend_all_if_empty(real)[:, None, None, :])
        pieces.append(rearrange(out, "b h (n w) d -> b h n w d", w=bs))
    if plan.sparse_rows.numel():
        heads, num_sparse, _ = plan.kv_index.shape

        def gather(x):  # (B, H, L, D) -> (B, H*Ns, K*bs, D): one index_select over every head
            blocks = rearrange(x, "b h (n w) d -> b (h n) w d", w=bs)
            picked = blocks.index_select(1, plan.gather_index)
            return rearrange(picked, "b (hs j) w d -> b hs (j w) d", hs=heads * num_sparse)

        real_sel = real.view(real.shape[0], -1, bs)[:, plan.kv_index]      # (B, H, Ns, K, bs)
        allowed = rearrange(real_sel & plan.kv_valid[None, ..., None], "b h s j w -> b (h s) 1 (j w)")
        q_sparse = rearrange(q_blocks[:, :, plan.sparse_rows], "b h s w d -> b (h s) w d")
        out = F.scaled_dot_product_attention(q_sparse, gather(k), gather(v), attn_mask=attend_all_if_empty(allowed))
        pieces.append(rearrange(out, "b (h s) w d -> b h s w d", h=heads))
    out = torch.cat(pieces, dim=2)[:, :, plan.row_order]
    return rearrange(out, "b h n w d -> b h (n w) d").to(dtype)


def flex_kernel_options(block_size: int) -> dict | None | bool:
    """Triton tile sizes for the compiled flex kernel: None = defaults (block 128), False = unsupported.

    The default tiles are 128 wide and the compiled kernel refuses smaller sparse blocks ("Q and KV
    block size must be divisible by BLOCK_M and BLOCK_N"), so blocks of 32 or 64 get tiles that
    divide them.
    """
    if block_size % 128 == 0:
        return None
    if block_size in (32, 64):
        half = block_size // 2
        return {"BLOCK_M": block_size, "BLOCK_N": block_size,
                "BLOCK_M1": half, "BLOCK_N1": block_size, "BLOCK_M2": block_size, "BLOCK_N2": half}
    return False


def flex_block_count(num_blocks: int) -> int:
    """The block count the flex path pads `num_blocks` to: the next of 1, 2, 3, 4, 6, 8, 12, 16, 24, ...

    The compiled kernel is specialized to its input length, so every new length would compile
    again. On this ladder (two steps per doubling) a job compiles at most one graph per step it
    reaches, whatever lengths it sees. The padding costs memory, not compute: q/k/v grow by at
    most 1.5x, but no real query lists a padded key block and padded query rows list none, so the
    kernel skips them.
    """
    if num_blocks < 1:
        raise ValueError(f"num_blocks must be positive, got {num_blocks}")
    power = 1 << (num_blocks - 1).bit_length()      # the next power of two >= num_blocks
    three_quarters = 3 * power // 4
    return three_quarters if num_blocks <= three_quarters else power


# Compiled flex graphs allowed per process before a recompile raises. One graph per
# (flex_block_count step, dtype, grad mode, batch of one or more); batch sizes share a graph.
# A job uses a few steps; hitting this means shapes leak into the guards, which must be loud:
# torch would otherwise run flex eagerly, dense over the whole padded length.
FLEX_RECOMPILE_LIMIT = 64


def _flex_tables(plan: SparsePlan, device: torch.device, key_padding: bool):
    """(layout padded to flex_block_count (H, nbp, nbp), its BlockMask), built once per device and kind.

    The BlockMask comes from the layout's kv block indices, never from a dense token mask. With
    `key_padding` every layout block is partial (mask_mod runs inside it); without, every block
    is full (mask_mod never runs). Both kinds carry partial and full block lists, so they share
    one compiled graph.
    """
    from torch.nn.attention.flex_attention import BlockMask
    key = (str(device), key_padding)
    if key not in plan.block_masks:
        nb, nbp = plan.num_blocks, flex_block_count(plan.num_blocks)
        layout = torch.zeros(plan.layout.shape[0], nbp, nbp, dtype=torch.bool, device=device)
        layout[:, :nb, :nb] = plan.layout.to(device)
        index, counts = _kv_blocks(layout)
        index, counts = index.to(torch.int32)[None], counts.to(torch.int32)[None]   # (1, H, nbp, nbp), (1, H, nbp)
        partial, full = (counts, torch.zeros_like(counts)) if key_padding else (torch.zeros_like(counts), counts)
        length = nbp * plan.block_size
        block_mask = BlockMask.from_kv_blocks(partial, index, full, index, BLOCK_SIZE=plan.block_size,
                                              seq_lengths=(length, length))
        plan.block_masks[key] = layout, block_mask
    return plan.block_masks[key]


def flex_inputs(q, k, v, plan: SparsePlan, attention_mask: torch.Tensor | None = None):
    """(q, k, v, block_mask) padded to flex_block_count blocks: what the compiled and the eager flex call take.

    q, k, v: (batch, heads, length, head_dim); attention_mask: (batch, length), True = real token.
    The BlockMask lists the layout's blocks; its mask_mod carries the layout too (and the key
    padding), so flex run eagerly, which applies mask_mod to the dense score matrix and ignores
    the block lists, computes the same attention. Without key padding every listed block is
    full and the compiled kernel never evaluates mask_mod.
    """
    batch, _, length, _ = q.shape
    key_padding = attention_mask is not None or length != plan.num_blocks * plan.block_size
    layout, block_mask = _flex_tables(plan, q.device, key_padding)
    padded_length = layout.shape[-1] * plan.block_size
    extra = padded_length - length
    q, k, v = (F.pad(x, (0, 0, 0, extra)) for x in (q, k, v))
    real = F.pad(real_token_mask(attention_mask, batch, length, q.device), (0, extra), value=False)
    real = attend_all_if_empty(real)
    if not torch.compiler.is_compiling():
        for x in (q, k, v, real):   # batch sizes share one compiled graph
            torch._dynamo.maybe_mark_dynamic(x, 0)
    block_mask = copy.copy(block_mask)
    block_mask.mask_mod = _layout_mask_mod(layout, real, plan.block_size)
    return q, k, v, block_mask


def _layout_mask_mod(layout: torch.Tensor, real: torch.Tensor, block_size: int):
    """mask_mod: the query's block row lists the key's block, and the key is real (block table, never a token table)."""
    def in_layout_and_real(b, h, q_idx, kv_idx):
        return layout[h, q_idx // block_size, kv_idx // block_size] & real[b, kv_idx]
    return in_layout_and_real


def _flex_call(q, k, v, block_mask, kernel_options):
    from torch.nn.attention.flex_attention import flex_attention
    return flex_attention(q, k, v, block_mask=block_mask, kernel_options=kernel_options)


# torch.compile takes a per-function recompile limit from torch 2.12 on.
_COMPILE_TAKES_RECOMPILE_LIMIT = "recompile_limit" in inspect.signature(torch.compile).parameters


@functools.cache
def _compiled_flex(backend: str, recompile_limit: int):
    """torch.compile of the flex call, built once per process and backend (compiling is the expensive part).

    fullgraph=True: past the recompile limit torch raises FailOnRecompileLimitHit instead of
    running flex eagerly. dynamic=False: each length step gets its own static kernel; batch
    sizes share it through the batch dimension that flex_inputs marks dynamic. The limit is this
    function's own where torch.compile takes one (torch >= 2.12); `compiled_flex_attention` sets
    it around each call otherwise.
    """
    options = dict(backend=backend, fullgraph=True, dynamic=False)
    if _COMPILE_TAKES_RECOMPILE_LIMIT:
        options["recompile_limit"] = recompile_limit
    return torch.compile(_flex_call, **options)


def compiled_flex_attention(q, k, v, block_mask, kernel_options: dict | None = None, *,
                            backend: str = "inductor") -> torch.Tensor:
    """flex_attention compiled with `backend`, on inputs from `flex_inputs`; raises instead of falling back to eager.

    The recompile limit applies to this function alone, not to the rest of the process. Inside a
    caller's torch.compile the call joins the caller's graph (and the caller's limits).
    """
    if torch.compiler.is_compiling():
        return _flex_call(q, k, v, block_mask, kernel_options)
    compiled = _compiled_flex(backend, FLEX_RECOMPILE_LIMIT)
    if _COMPILE_TAKES_RECOMPILE_LIMIT:
        return compiled(q, k, v, block_mask, kernel_options)
    with torch._dynamo.config.patch(recompile_limit=FLEX_RECOMPILE_LIMIT):
        return compiled(q, k, v, block_mask, kernel_options)


def _flex_attention(q, k, v, plan: SparsePlan, attention_mask) -> torch.Tensor:
    """FlexAttention on the padded inputs of `flex_inputs`: compiled on CUDA, eager (forward only) elsewhere."""
    length = q.shape[-2]
    q, k, v, block_mask = flex_inputs(q, k, v, plan, attention_mask)
    if q.is_cuda:
        out = compiled_flex_attention(q, k, v, block_mask, flex_kernel_options(plan.block_size) or None)
    else:
        out = _flex_call(q, k, v, block_mask, None)
    return out[:, :, :length]
