"""Attention kernels: full, BigBird (block-sparse) and Combiner, behind one module interface."""
from genomics_bigbird.model.attention.bigbird import SparsePlan, block_sparse_attention
from genomics_bigbird.model.attention.combiner import combiner_attention
from genomics_bigbird.model.attention.full import full_attention
from genomics_bigbird.model.attention.patterns import (
    bigbird_layout, global_pattern, random_pattern, window_pattern)
from genomics_bigbird.model.attention.select import ATTENTION_KINDS, SPARSE_LAYOUTS, build_attention

__all__ = ["ATTENTION_KINDS", "SPARSE_LAYOUTS", "SparsePlan", "bigbird_layout", "block_sparse_attention",
           "build_attention", "combiner_attention", "full_attention", "global_pattern", "random_pattern",
           "window_pattern"]
