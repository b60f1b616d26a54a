"""Full (dense) attention with a key-padding mask: the baseline every sparse kernel is measured against."""
import torch
import torch.nn.functional as F

from genomics_bigbird.model.attention.padding import attend_all_if_empty, real_token_mask


def full_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                   attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Return softmax(q k^T / sqrt(d)) v over real keys; q, k, v: (batch, heads, length, head_dim)."""
    if attention_mask is None:
        return F.scaled_dot_product_attention(q, k, v)
    batch, _, length, _ = k.shape
    real = attend_all_if_empty(real_token_mask(attention_mask, batch, length, k.device))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=real[:, None, None, :])
