"""Float64 reference twins of every kernel, written from the definitions with dense score matrices.

They are slow (explicit loops, O(L^2) memory) and exist for tests: every fast path must equal them.
Outputs at padded query positions are NaN or garbage here; compare real positions only.
"""
import math

import torch


def _scaled_scores(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """(batch, heads, Lq, Lk) float64 scores q k^T / sqrt(d)."""
    return q.double() @ k.double().transpose(-1, -2) / math.sqrt(q.shape[-1])


def _dense_softmax_attention(q, k, v, allowed: torch.Tensor) -> torch.Tensor:
    """softmax over allowed keys, float64; allowed broadcasts to (batch, heads, Lq, Lk)."""
    scores = _scaled_scores(q, k).masked_fill(~allowed, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v.double()


def _real(attention_mask, q) -> torch.Tensor:
    batch, _, length, _ = q.shape
    if attention_mask is None:
        return torch.ones(batch, length, dtype=torch.bool)
    return attention_mask.bool().cpu()


def full_ref(q, k, v, attention_mask=None) -> torch.Tensor:
    """Dense softmax attention over real keys, float64."""
    real = _real(attention_mask, q)
    return _dense_softmax_attention(q, k, v, real[:, None, None, :].to(q.device))


def bigbird_ref(q, k, v, layout, block_size, attention_mask=None) -> torch.Tensor:
    """Dense softmax restricted to the token-level expansion of the layout and to real keys, float64."""
    length = q.shape[-2]
    token_of_block = torch.arange(length) // block_size                 # (L,)
    allowed = layout.cpu().bool()[:, token_of_block][:, :, token_of_block]   # (H, L, L)
    allowed = allowed[None] & _real(attention_mask, q)[:, None, None, :]
    return _dense_softmax_attention(q, k, v, allowed.to(q.device))
