"""`build_attention`: one parameter-free module per layer, chosen by the config's attention kind."""
import math

import numpy as np
import torch
from torch import nn

from genomics_bigbird.model.attention.bigbird import SparsePlan, block_sparse_attention
from genomics_bigbird.model.attention.combiner import combiner_attention
from genomics_bigbird.model.attention.full import full_attention
from genomics_bigbird.model.attention.hf_eval import HFEvalBigBirdAttention
from genomics_bigbird.model.attention.patterns import bigbird_layout

ATTENTION_KINDS = ("full", "bigbird", "combiner-fixed", "combiner-axial", "combiner-mixture")
# BigBird's random part: "random" draws real random blocks (training and inference alike);
# "hf_eval" is HF BigBird's eval-mode layout (no random blocks: block 0 repeated), for parity checks.
SPARSE_LAYOUTS = ("random", "hf_eval")


class FullAttention(nn.Module):
    """Dense softmax attention over real keys."""

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return full_attention(q, k, v, attention_mask)


def layer_seed(seed: int, layer_idx: int) -> int:
    """The random-block seed of one layer: distinct per layer, fixed by (seed, layer_idx)."""
    return int(np.random.SeedSequence([seed, layer_idx]).generate_state(1)[0])


class BigBirdAttention(nn.Module):
    """Block-sparse BigBird attention; the layout is made from the length, cached per block count."""

    def __init__(self, *, num_heads: int, block_size: int, num_global_blocks: int,
                 global_placement: str, window_blocks: int, num_random_blocks: int,
                 backend: str, seed: int):
        super().__init__()
        self.num_heads, self.block_size, self.backend, self.seed = num_heads, block_size, backend, seed
        self.num_global_blocks, self.global_placement = num_global_blocks, global_placement
        self.window_blocks, self.num_random_blocks = window_blocks, num_random_blocks
        self._plans: dict[tuple[int, str], SparsePlan] = {}   # not a buffer: no state_dict keys

    def plan(self, num_blocks: int, device: torch.device) -> SparsePlan:
        """The cached layout and gather/flex indices for `num_blocks` blocks on `device`."""
        key = (num_blocks, str(device))
        if key not in self._plans:
            layout = bigbird_layout(num_blocks, self.num_heads, self.num_global_blocks,
                                    self.global_placement, self.window_blocks,
                                    self.num_random_blocks, self.seed)
            self._plans[key] = SparsePlan.from_layout(layout, self.block_size).to(device)
        return self._plans[key]

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        plan = self.plan(math.ceil(q.shape[-2] / self.block_size), q.device)
        return block_sparse_attention(q, k, v, plan.layout, self.block_size, attention_mask,
                                      self.backend, plan=plan)

    def extra_repr(self) -> str:
        return (f"block_size={self.block_size}, global={self.num_global_blocks} "
                f"({self.global_placement}), window={self.window_blocks}, "
                f"random={self.num_random_blocks}, backend={self.backend}, seed={self.seed}")


class CombinerAttention(nn.Module):
    """Combiner attention with a fixed, axial or mixture plan; span None = near sqrt(length)."""

    def __init__(self, *, plan: str, span: int | None):
        super().__init__()
        self.plan, self.span = plan, span

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return combiner_attention(q, k, v, self.plan, self.span, attention_mask)

    def extra_repr(self) -> str:
        return f"plan={self.plan}, span={self.span}"


def build_attention(kind: str, *, layer_idx: int, num_heads: int, block_size: int = 64,
                    num_global_blocks: int = 2, global_placement: str = "first",
                    window_blocks: int = 3, num_random_blocks: int = 3,
                    combiner_span: int | None = None, backend: str = "auto",
                    seed: int = 0, sparse_layout: str = "random") -> nn.Module:
    """Return the attention module for one layer: forward(q, k, v, attention_mask) -> out."""
    if kind == "full":
        return FullAttention()
    if kind == "bigbird" and sparse_layout == "hf_eval":
        return HFEvalBigBirdAttention(num_heads=num_heads, block_size=block_size,
                                      num_random_blocks=num_random_blocks)
    if kind == "bigbird":
        return BigBirdAttention(num_heads=num_heads, block_size=block_size,
                                num_global_blocks=num_global_blocks,
                                global_placement=global_placement, window_blocks=window_blocks,
                                num_random_blocks=num_random_blocks, backend=backend,
                                seed=layer_seed(seed, layer_idx))
    if kind.startswith("combiner-") and kind in ATTENTION_KINDS:
        return CombinerAttention(plan=kind.removeprefix("combiner-"), span=combiner_span)
    raise ValueError(f"unknown attention kind {kind!r}; expected one of {', '.join(ATTENTION_KINDS)}")
