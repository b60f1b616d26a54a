"""HF BigBird's eval-mode block-sparse attention, reproduced exactly: a compatibility layout.

transformers' `BigBirdBlockSparseAttention` draws its random blocks only in training mode. In eval
mode the index arrays stay zero, so each of a row's r random slots gathers key block 0 again:
block 0's keys enter that row's softmax 1 + r times (the same as adding log(1 + r) to their
scores). Its rows, with nb blocks of the padded tensor:
- query blocks 0 and nb-1 are global: they attend to every key;
- query block i in 1..nb-2 attends to blocks 0 and nb-1, its window i-1, i, i+1 (block 0 is
  already in the window of row 1, and nb-1 in that of row nb-2: HF counts them once there), and
  block 0 r more times;
- padded keys are masked (HF adds -10000 to their scores; in float32 exp(-10000) is 0, as -inf);
- inputs of at most (5 + 2r) x block tokens are not sparse at all: HF switches the model to full
  attention (permanently, for later inputs too; here per input).

The layout is expressed as a gather plan whose key-block lists repeat block 0, so the project's
gather kernel computes it unchanged. It exists to prove an imported model is exact; imported
models run the real random-block layout by default, the one GENA-LM was trained with.
"""
import math

import torch
from torch import nn

from genomics_bigbird.model.attention.bigbird import SparsePlan, block_sparse_attention
from genomics_bigbird.model.attention.full import full_attention


def hf_eval_full_attention_length(block_size: int, num_random_blocks: int) -> int:
    """The longest input HF BigBird runs with full attention: (5 + 2r) x block tokens."""
    return (5 + 2 * num_random_blocks) * block_size


def hf_eval_key_blocks(num_blocks: int, num_random_blocks: int) -> list[list[int]]:
    """Key blocks of query rows 1..nb-2 as HF's eval mode gathers them, block 0 repeated r times."""
    if num_blocks < 5:
        raise ValueError(f"HF's block-sparse layout needs at least 5 blocks, got {num_blocks}")
    last, repeats = num_blocks - 1, [0] * num_random_blocks
    rows = [[0, 1, 2, last] + repeats]
    rows += [[0, i - 1, i, i + 1, last] + repeats for i in range(2, num_blocks - 2)]
    rows.append([0, last - 2, last - 1, last] + repeats)
    return rows


def hf_eval_plan(num_blocks: int, num_heads: int, num_random_blocks: int, block_size: int) -> SparsePlan:
    """The gather plan of HF's eval-mode layout (the same in every head)."""
    rows = hf_eval_key_blocks(num_blocks, num_random_blocks)
    width = max(map(len, rows))
    kv_index = torch.zeros(len(rows), width, dtype=torch.long)
    kv_valid = torch.zeros(len(rows), width, dtype=torch.bool)
    for r, blocks in enumerate(rows):
        kv_index[r, :len(blocks)] = torch.tensor(blocks)
        kv_valid[r, :len(blocks)] = True
    kv_index, kv_valid = (x.expand(num_heads, -1, -1).contiguous() for x in (kv_index, kv_valid))
    layout = torch.zeros(num_heads, num_blocks, num_blocks, dtype=torch.bool)
    layout[:, [0, -1]] = True                                            # global rows
    layout[:, 1:-1].scatter_(2, kv_index, True)                          # union of each row's key blocks
    dense_rows = torch.tensor([0, num_blocks - 1])
    sparse_rows = torch.arange(1, num_blocks - 1)
    head_offset = num_blocks * torch.arange(num_heads)[:, None, None]
    return SparsePlan(layout, block_size, dense_rows, sparse_rows, kv_index, kv_valid,
                      gather_index=(kv_index + head_offset).flatten(),
                      row_order=torch.cat([dense_rows, sparse_rows]).argsort())


class HFEvalBigBirdAttention(nn.Module):
    """Block-sparse attention in HF BigBird's eval-mode layout (gather backend); full attention for short inputs."""

    def __init__(self, *, num_heads: int, block_size: int, num_random_blocks: int):
        super().__init__()
        self.num_heads, self.block_size, self.num_random_blocks = num_heads, block_size, num_random_blocks
        self._plans: dict[tuple[int, str], SparsePlan] = {}   # not a buffer: no state_dict keys

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        length = q.shape[-2]
        if length <= hf_eval_full_attention_length(self.block_size, self.num_random_blocks):
            return full_attention(q, k, v, attention_mask)
        num_blocks = math.ceil(length / self.block_size)
        key = (num_blocks, str(q.device))
        if key not in self._plans:
            plan = hf_eval_plan(num_blocks, self.num_heads, self.num_random_blocks, self.block_size)
            self._plans[key] = plan.to(q.device)
        plan = self._plans[key]
        return block_sparse_attention(q, k, v, plan.layout, self.block_size, attention_mask, "gather", plan=plan)

    def extra_repr(self) -> str:
        return f"block_size={self.block_size}, hf_eval (block 0 x {1 + self.num_random_blocks})"
