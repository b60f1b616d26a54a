"""`build_attention`: one parameter-free module per layer, chosen by the config's attention kind."""
import torch
from torch import nn

from genomics_bigbird.model.attention.full import full_attention

ATTENTION_KINDS = ("full", "bigbird", "combiner-fixed", "combiner-axial", "combiner-mixture")


class FullAttention(nn.Module):
    """Dense softmax attention over real keys."""

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return full_attention(q, k, v, attention_mask)


def build_attention(kind: str, *, layer_idx: int, num_heads: int, block_size: int = 64,
                    num_global_blocks: int = 2, global_placement: str = "first",
                    window_blocks: int = 3, num_random_blocks: int = 3,
                    combiner_span: int | None = None, backend: str = "auto",
                    seed: int = 0) -> nn.Module:
    """Return the attention module for one layer: forward(q, k, v, attention_mask) -> out."""
    if kind == "full":
        return FullAttention()
    raise ValueError(f"unknown attention kind {kind!r}; expected one of {', '.join(ATTENTION_KINDS)}")
