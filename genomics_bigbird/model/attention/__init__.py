"""Attention kernels: full, BigBird (block-sparse) and Combiner, behind one module interface."""
from genomics_bigbird.model.attention.full import full_attention
from genomics_bigbird.model.attention.select import ATTENTION_KINDS, build_attention

__all__ = ["ATTENTION_KINDS", "build_attention", "full_attention"]
