"""The transformer encoder: embeddings -> pre-LN layers (injected attention + GELU MLP) -> final norm.

Pre-LN (LayerNorm before each sub-layer, one final LayerNorm) rather than BERT's post-LN: it trains
without the long warm-up post-LN needs, keeps the residual stream un-normalized so bf16 rounding
does not accumulate through the stack, and is what deep long-context encoders use today.

BERT's layout stays available for pretrained weights made elsewhere (HF BigBird, GENA-LM):
post-LN layers (`PostNormBlock`, no final norm), a LayerNorm after the summed embeddings and the
tanh-approximated GELU. Both layouts name their weights alike, so one checkpoint format holds either.
"""
from __future__ import annotations

import functools
from typing import Callable

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from genomics_bigbird.model.attention import build_attention
from genomics_bigbird.model.config import EncoderConfig


class SelfAttention(nn.Module):
    """Fused q/k/v projection, the injected attention kernel, output projection."""

    def __init__(self, hidden_size: int, num_heads: int, dropout: float, attention: nn.Module):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.attention = attention  # (q, k, v, attention_mask) -> out; holds no parameters
        self.out = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # x: (batch, length, hidden) -> q, k, v: (batch, heads, length, head_dim)
        q, k, v = rearrange(self.qkv(x), "b l (three h d) -> three b h l d", three=3, h=self.num_heads)
        out = self.attention(q, k, v, attention_mask)
        return self.dropout(self.out(rearrange(out, "b h l d -> b l (h d)")))


def activation_function(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The GELU a config names: "gelu" (exact, erf) or "gelu_new" (tanh approximation, HF BigBird's)."""
    if name == "gelu":
        return F.gelu
    if name == "gelu_new":
        return functools.partial(F.gelu, approximate="tanh")
    raise ValueError(f"unknown activation {name!r}; expected gelu or gelu_new")


class MLP(nn.Module):
    """Position-wise feed-forward: hidden -> intermediate -> GELU -> hidden."""

    def __init__(self, hidden_size: int, intermediate_size: int, dropout: float, activation: str = "gelu"):
        super().__init__()
        self.up = nn.Linear(hidden_size, intermediate_size)
        self.down = nn.Linear(intermediate_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.activation = activation_function(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down(self.activation(self.up(x))))


class Block(nn.Module):
    """One pre-LN encoder layer: x + attention(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int, dropout: float,
                 layer_norm_eps: float, attention: nn.Module, activation: str = "gelu"):
        super().__init__()
        self.attention_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.attention = SelfAttention(hidden_size, num_heads, dropout, attention)
        self.mlp_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.mlp = MLP(hidden_size, intermediate_size, dropout, activation)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x), attention_mask)
        return x + self.mlp(self.mlp_norm(x))


class PostNormBlock(Block):
    """One post-LN (BERT) encoder layer: norm(x + attention(x)), then norm(x + mlp(x)); same weights as `Block`."""

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.attention_norm(x + self.attention(x, attention_mask))
        return self.mlp_norm(x + self.mlp(x))


class Encoder(nn.Module):
    """Token + learned position + segment embeddings, `len(attentions)` layers, final norm, [CLS] pooler.

    `norm_position="post"` builds BERT's layout: post-LN layers and no final norm (each layer ends
    normalized). `embedding_layer_norm` adds BERT's LayerNorm after the embedding dropout. Modules a
    layout does not use are `nn.Identity`, so they hold no weights.
    """

    def __init__(self, *, vocab_size: int, hidden_size: int, num_heads: int, intermediate_size: int,
                 max_position: int, type_vocab_size: int, dropout: float, layer_norm_eps: float,
                 initializer_range: float, attentions: list[nn.Module], norm_position: str = "pre",
                 embedding_layer_norm: bool = False, activation: str = "gelu"):
        super().__init__()
        if norm_position not in ("pre", "post"):
            raise ValueError(f"norm_position must be pre or post, got {norm_position!r}")
        self.max_position = max_position
        self.token_embedding = nn.Embedding(vocab_size, hidden_size)
        self.position_embedding = nn.Embedding(max_position, hidden_size)
        self.segment_embedding = nn.Embedding(type_vocab_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.embedding_norm = (nn.LayerNorm(hidden_size, eps=layer_norm_eps) if embedding_layer_norm
                               else nn.Identity())
        block = PostNormBlock if norm_position == "post" else Block
        self.layers = nn.ModuleList(
            block(hidden_size, num_heads, intermediate_size, dropout, layer_norm_eps, attention, activation)
            for attention in attentions)
        self.norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps) if norm_position == "pre" else nn.Identity()
        self.pooler = nn.Linear(hidden_size, hidden_size)
        self.apply(lambda module: init_weights(module, initializer_range))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                segment_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (hidden (batch, length, hidden), pooled [CLS] (batch, hidden)).

        input_ids, segment_ids: (batch, length) ints; attention_mask: (batch, length), True = real token.
        """
        length = input_ids.shape[1]
        if length > self.max_position:
            raise ValueError(f"input of {length} tokens is longer than the model's max_position "
                             f"{self.max_position}; cut it or use a model with more positions")
        positions = torch.arange(length, device=input_ids.device)
        x = self.token_embedding(input_ids) + self.position_embedding(positions)
        if segment_ids is not None:
            x = x + self.segment_embedding(segment_ids)
        else:  # segment 0 everywhere, without materialising a zeros tensor of ids
            x = x + self.segment_embedding.weight[0]
        x = self.embedding_norm(self.dropout(x))
        attention_mask = attention_mask.bool()
        for layer in self.layers:
            x = layer(x, attention_mask)
        hidden = self.norm(x)
        pooled = torch.tanh(self.pooler(hidden[:, 0]))
        return hidden, pooled


def init_weights(module: nn.Module, std: float) -> None:
    """BERT initialisation: N(0, std) weights, zero biases, unit LayerNorm."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=std)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def build_attentions(config: EncoderConfig) -> list[nn.Module]:
    """One attention kernel per layer, as the config names it (random layouts seeded per layer)."""
    return [build_attention(config.attention, layer_idx=layer_idx, num_heads=config.num_heads,
                            block_size=config.block_size, num_global_blocks=config.num_global_blocks,
                            global_placement=config.global_placement, window_blocks=config.window_blocks,
                            num_random_blocks=config.num_random_blocks, combiner_span=config.combiner_span,
                            backend=config.attention_backend, seed=config.attention_seed,
                            sparse_layout=config.sparse_layout)
            for layer_idx in range(config.num_layers)]


def build_encoder(config: EncoderConfig) -> Encoder:
    """Turn an `EncoderConfig` into an `Encoder` (flat constructor arguments, attention injected)."""
    return Encoder(vocab_size=config.vocab_size, hidden_size=config.hidden_size, num_heads=config.num_heads,
                   intermediate_size=config.intermediate_size, max_position=config.max_position,
                   type_vocab_size=config.type_vocab_size, dropout=config.dropout,
                   layer_norm_eps=config.layer_norm_eps, initializer_range=config.initializer_range,
                   attentions=build_attentions(config), norm_position=config.norm_position,
                   embedding_layer_norm=config.embedding_layer_norm, activation=config.activation)
