"""BigBird block patterns (Zaheer et al. 2020, appendix D): global, window and random parts, combined with `|`.

Each part is a pure function returning a bool block matrix; True at (i, j) means query block i
attends to key block j. `bigbird_layout` is their union, one matrix per head.
"""
import torch

GLOBAL_PLACEMENTS = ("first", "ends")


def global_blocks(num_blocks: int, num_global_blocks: int, placement: str = "first") -> list[int]:
    """Return the indices of the global blocks ('first': 0..g-1; 'ends': ceil(g/2) first, floor(g/2) last)."""
    if placement not in GLOBAL_PLACEMENTS:
        raise ValueError(f"global_placement must be one of {GLOBAL_PLACEMENTS}, got {placement!r}")
    g = min(num_global_blocks, num_blocks)
    if placement == "first":
        return list(range(g))
    head = (g + 1) // 2
    return sorted(set(range(head)) | set(range(num_blocks - (g - head), num_blocks)))


def global_pattern(num_blocks: int, num_global_blocks: int, placement: str = "first") -> torch.Tensor:
    """Return (nb, nb): global blocks attend to everything and everything attends to them."""
    is_global = torch.zeros(num_blocks, dtype=torch.bool)
    is_global[global_blocks(num_blocks, num_global_blocks, placement)] = True
    return is_global[:, None] | is_global[None, :]


def window_pattern(num_blocks: int, window_blocks: int) -> torch.Tensor:
    """Return (nb, nb): each block sees `window_blocks` blocks centered on itself, no wrap-around."""
    offset = torch.arange(num_blocks)[None, :] - torch.arange(num_blocks)[:, None]  # j - i
    left, right = (window_blocks - 1) // 2, window_blocks // 2
    return (offset >= -left) & (offset <= right)


def random_pattern(num_blocks: int, num_heads: int, num_random_blocks: int,
                   excluded: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Return (H, nb, nb): each row not fully excluded gets `num_random_blocks` blocks not in `excluded`.

    Blocks are drawn uniformly without replacement per (head, row) from the allowed ones (all of
    them if fewer remain). Rows that are entirely excluded (global rows) get none.
    """
    candidates = ~excluded  # (nb, nb)
    take = min(num_random_blocks, num_blocks)
    heads = []
    for _ in range(num_heads):
        # Top-k of uniform keys over the candidates = a uniform draw without replacement.
        keys = torch.rand(num_blocks, num_blocks, generator=generator).masked_fill(~candidates, -1.0)
        chosen = torch.zeros(num_blocks, num_blocks, dtype=torch.bool)
        if take > 0:
            chosen.scatter_(1, keys.topk(take, dim=1).indices, True)
        heads.append(chosen & candidates)
    return torch.stack(heads)


def bigbird_layout(num_blocks: int, num_heads: int, num_global_blocks: int = 2,
                   global_placement: str = "first", window_blocks: int = 3,
                   num_random_blocks: int = 3, seed: int = 0) -> torch.Tensor:
    """Return the BigBird ITC block layout (H, nb, nb) = global | window | random."""
    if num_blocks < 1 or num_heads < 1:
        raise ValueError("num_blocks and num_heads must be positive")
    glob = global_pattern(num_blocks, num_global_blocks, global_placement)
    window = window_pattern(num_blocks, window_blocks)
    generator = torch.Generator().manual_seed(seed)
    rand = random_pattern(num_blocks, num_heads, num_random_blocks, glob | window, generator)
    return (glob | window)[None] | rand
