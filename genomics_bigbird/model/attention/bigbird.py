"""BigBird block-sparse attention (seeds/000 §D, Fig. 4-6) with gather, flex and dense backends.

All backends compute the same thing: dense softmax attention restricted to the token-level
expansion of a block layout (H, nb, nb) and to real keys. The sequence is padded inside to a
multiple of the block size; padded keys are masked and padded query rows are cut off again.
"""
import copy
import functools
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
    block_masks: dict = field(default_factory=dict)  # flex BlockMasks, keyed by (padded, device)

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
    real = pad_mask(real_token_mask(attention_mask, batch, length, q.device), block_size)
    padded = attention_mask is not None or length % block_size != 0
    q, k, v = (pad_length(x, block_size) for x in (q, k, v))
    if backend == "dense":
        out = _dense_attention(q, k, v, layout.to(q.device), block_size, real)
    else:
        plan = (plan or SparsePlan.from_layout(layout, block_size)).to(q.device)
        if backend == "gather":
            out = _gather_attention(q, k, v, plan, real)
        else:
            out = _flex_attention(q, k, v, plan, real if padded else None)
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
    """Blockify, gather each query block's key/value blocks, one batched attention (seeds/000 Fig. 6).

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

    The default tiles are 128 wide and refuse smaller sparse blocks (BENCHMARKS.md), so blocks of
    32 or 64 get tiles that divide them.
    """
    if block_size % 128 == 0:
        return None
    if block_size in (32, 64):
        half = block_size // 2
        return {"BLOCK_M": block_size, "BLOCK_N": block_size,
                "BLOCK_M1": half, "BLOCK_N1": block_size, "BLOCK_M2": block_size, "BLOCK_N2": half}
    return False


@functools.cache
def _compiled_flex():
    """torch.compile(flex_attention), built once per process (compiling is the expensive part)."""
    from torch.nn.attention.flex_attention import flex_attention
    return torch.compile(flex_attention, dynamic=False)


def _block_mask(plan: SparsePlan, batch_padding: bool, device: torch.device):
    """The layout's BlockMask from its kv block indices (never from a dense token mask), cached."""
    from torch.nn.attention.flex_attention import BlockMask
    key = (batch_padding, str(device))
    if key not in plan.block_masks:
        index, counts = _kv_blocks(plan.layout.to(device))
        index, counts = index.to(torch.int32)[None], counts.to(torch.int32)[None]   # (1, H, nb, nb), (1, H, nb)
        length = plan.num_blocks * plan.block_size
        if batch_padding:   # partial blocks: the key-padding mask_mod runs inside every block
            mask = BlockMask.from_kv_blocks(counts, index, BLOCK_SIZE=plan.block_size,
                                            seq_lengths=(length, length))
        else:               # full blocks: no mask_mod evaluated at all
            zeros = torch.zeros_like(counts)
            mask = BlockMask.from_kv_blocks(zeros, index, counts, index, BLOCK_SIZE=plan.block_size,
                                            seq_lengths=(length, length))
        plan.block_masks[key] = mask
    return plan.block_masks[key]


def _flex_attention(q, k, v, plan: SparsePlan, real) -> torch.Tensor:
    """FlexAttention with a kv-index BlockMask; compiled on CUDA, eager (forward only) elsewhere."""
    from torch.nn.attention.flex_attention import flex_attention
    compiled = q.is_cuda
    block_mask = _block_mask(plan, real is not None, q.device)
    if real is not None or not compiled:
        block_mask = copy.copy(block_mask)
        block_mask.mask_mod = _flex_mask_mod(plan, real, layout_in_mask=not compiled)
    if compiled:
        options = flex_kernel_options(plan.block_size)
        return _compiled_flex()(q, k, v, block_mask=block_mask, kernel_options=options or None)
    return flex_attention(q, k, v, block_mask=block_mask)


def _flex_mask_mod(plan: SparsePlan, real, layout_in_mask: bool):
    """mask_mod for key padding; with `layout_in_mask`, it also looks the layout up per block.

    The compiled kernel skips blocks by the BlockMask's indices, so padding is all it needs. The
    eager path ignores block sparsity and applies mask_mod to the dense score matrix, so there the
    mask_mod must carry the layout itself: a (H, nb, nb) block table, never a token table.
    """
    if real is not None:
        real = attend_all_if_empty(real)
    layout, bs = plan.layout, plan.block_size

    def key_is_real(b, h, q_idx, kv_idx):
        return real[b, kv_idx]

    def in_layout(b, h, q_idx, kv_idx):
        return layout[h, q_idx // bs, kv_idx // bs]

    def in_layout_and_real(b, h, q_idx, kv_idx):
        return layout[h, q_idx // bs, kv_idx // bs] & real[b, kv_idx]

    if not layout_in_mask:
        return key_is_real
    return in_layout if real is None else in_layout_and_real
