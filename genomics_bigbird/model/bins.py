"""A classifier that knows where its labeled bin is: the tokens covering the window's central base pairs.

A chromatin label describes the 200 bp bin at the centre of a window (BigBird F.3); the flanks are
context. With [CLS] pooling alone the model must find the bin through learned positions: at
400 bp it fills half the window, at 8 kbp it is 1/40 of it, sits at positions the encoder may
never have seen in pretraining, and the same motifs occur in the flanks. Marking the bin needs no
new input: with the number of base pairs each token id spells (`token_bp`, filled from the
tokenizer), the model finds the tokens that overlap the central `bin_bp` base pairs of the real
tokens itself. Every window that is centred on its bin (chromatin windows, variant windows, their
reverse complements) is therefore read the same way by training and by every inference path.

The marked tokens get segment id 1 (the encoder's pretrained segment embedding, which NSP trained
to mark a span) and, with `bin_pooling`, the head reads the mean of their final hidden states
beside the pooled [CLS] vector.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from genomics_bigbird.model.encoder import Encoder


def center_bin_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor, token_bp: torch.Tensor,
                    bin_bp: int) -> torch.Tensor:
    """(batch, length) bool: real tokens that overlap the central `bin_bp` base pairs of each row.

    input_ids, attention_mask: (batch, length); token_bp: (vocab,) base pairs per token id (0 for
    special tokens). A row of B bases has its bin at [(B - bin_bp) / 2, (B + bin_bp) / 2).
    """
    real = attention_mask.bool()
    bases = token_bp[input_ids] * real                      # (batch, length)
    end = torch.cumsum(bases, dim=1)                        # each token's last base + 1
    start = end - bases
    total = end[:, -1:]                                     # (batch, 1)
    # doubled coordinates keep an odd total exact: the bin is [total - bin, total + bin) / 2
    low, high = total - bin_bp, total + bin_bp
    return real & (bases > 0) & (2 * start < high) & (2 * end > low)


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of hidden (batch, length, dim) over mask (batch, length); zeros for a row with no marked token."""
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class BinClassifier(nn.Module):
    """Encoder + head that marks the central bin's tokens (segment 1) and optionally pools them.

    `token_bp` is a buffer (saved in the state_dict, so a checkpoint carries its tokenizer's
    lengths); fill it with `set_token_bp` after building the model for a tokenizer.
    """

    def __init__(self, encoder: Encoder, head: nn.Module, *, vocab_size: int, bin_bp: int, bin_segment: bool,
                 bin_pooling: bool):
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.bin_bp, self.bin_segment, self.bin_pooling = bin_bp, bin_segment, bin_pooling
        self.register_buffer("token_bp", torch.zeros(vocab_size, dtype=torch.long))
        self._token_bp_checked = False

    def set_token_bp(self, token_bp: Sequence[int]) -> None:
        """Base pairs spelled by each token id (the tokenizer's pieces; 0 for special tokens)."""
        values = torch.as_tensor(token_bp, dtype=torch.long)
        if values.shape != self.token_bp.shape or (values < 0).any():
            raise ValueError(f"token_bp must hold {self.token_bp.numel()} non-negative lengths, got shape "
                             f"{tuple(values.shape)}")
        self.token_bp.copy_(values)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                segment_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Return logits (batch, num_labels); `segment_ids`, when given, replace the bin marking."""
        if not self._token_bp_checked:  # once: reading the buffer waits for the GPU
            if not bool(self.token_bp.any()):
                raise ValueError("token_bp is unset: call set_token_bp with the tokenizer's piece lengths "
                                 "(or load a checkpoint that holds them)")
            self._token_bp_checked = True
        mark = segment_ids is None and self.bin_segment
        in_bin = center_bin_mask(input_ids, attention_mask, self.token_bp, self.bin_bp) \
            if mark or self.bin_pooling else None
        if mark:
            segment_ids = in_bin.long()
        hidden, pooled = self.encoder(input_ids, attention_mask, segment_ids)
        if self.bin_pooling:
            pooled = torch.cat([pooled, masked_mean(hidden, in_bin)], dim=-1)
        return self.head(pooled)

    def extra_repr(self) -> str:
        return f"bin_bp={self.bin_bp}, bin_segment={self.bin_segment}, bin_pooling={self.bin_pooling}"
