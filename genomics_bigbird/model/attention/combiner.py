"""Combiner attention (Ren et al. 2021, §3-4): full attention support at O(L sqrt L) cost, MLM plans.

Every position i splits the sequence into a direct set (attended token by token) and spans; a
span r enters through one term with score q_i . k_r / sqrt(d), where k_r is the max-pooled key
of the span, and value its local expectation sum_j softmax_j(q_r . k_j / sqrt(d)) v_j with q_r
the max-pooled query. Direct and span scores share one normalizer (eq. 9).
- fixed (eq. 10): the direct set is i's own span of `span` consecutive positions; every other
  span is one term.
- axial: positions in rows of `span` (row-major); the direct set is i's row and i's column;
  each other column c enters as the span "column c outside i's row".
- mixture: the mean of the two (§3.3).
Padded keys are left out of direct terms, pooling and local expectations; a span with no real
key is dropped. The sequence is padded inside to a multiple of `span`.
"""
import math

import torch
from einops import rearrange

from genomics_bigbird.model.attention.padding import (
    compute_dtype, masked_softmax, pad_length, pad_mask, real_token_mask)

PLANS = ("fixed", "axial", "mixture")


def default_span(length: int) -> int:
    """A power of two near sqrt(length): spans and span count are then both O(sqrt L)."""
    return 2 ** max(0, round(math.log2(max(length, 1)) / 2))


def combiner_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: str = "fixed",
                       span: int | None = None,
                       attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Return Combiner attention; q, k, v: (batch, heads, length, head_dim), mask True = real."""
    if plan not in PLANS:
        raise ValueError(f"plan must be one of {PLANS}, got {plan!r}")
    batch, _, length, _ = q.shape
    span = span or default_span(length)
    if span < 1:
        raise ValueError(f"span must be positive, got {span}")
    real = pad_mask(real_token_mask(attention_mask, batch, length, q.device), span)
    ct = compute_dtype(q.dtype)
    qp, kp, vp = (pad_length(x, span).to(ct) for x in (q, k, v))
    if plan == "fixed":
        out = _fixed(qp, kp, vp, real, span)
    elif plan == "axial":
        out = _axial(qp, kp, vp, real, span)
    else:
        out = 0.5 * (_fixed(qp, kp, vp, real, span) + _axial(qp, kp, vp, real, span))
    return out[:, :, :length].to(q.dtype)


def _masked_max(x: torch.Tensor, real: torch.Tensor, dim: int) -> torch.Tensor:
    """Max over real positions along `dim`; real broadcasts against x without its last axis."""
    return x.masked_fill(~real[..., None], torch.finfo(x.dtype).min).amax(dim)


def _fixed(q, k, v, real, span) -> torch.Tensor:
    """Combiner-Fixed on padded inputs: (B, H, N*S, D) -> (B, H, N*S, D)."""
    scale = q.shape[-1] ** -0.5
    qs, ks, vs = (rearrange(x, "b h (n s) d -> b h n s d", s=span) for x in (q, k, v))
    member = rearrange(real, "b (n s) -> b 1 n s", s=span)                  # (B, 1, N, S)
    span_real = member.any(-1)                                              # (B, 1, N)
    # Span abstractions: max-pooled key and query, then the local expectation under q_r.
    k_span = _masked_max(ks, member, dim=-2).where(span_real[..., None], 0.0)   # (B, H, N, D)
    q_span = _masked_max(qs, member, dim=-2).where(span_real[..., None], 0.0)
    local = masked_softmax(torch.einsum("bhnd,bhnsd->bhns", q_span, ks) * scale, member)
    expectation = torch.einsum("bhns,bhnsd->bhnd", local, vs)                # (B, H, N, D)
    # One softmax over [own span's keys | every other span's abstraction].
    direct = torch.einsum("bhnid,bhnjd->bhnij", qs, ks) * scale             # (B, H, N, S, S)
    summary = torch.einsum("bhnid,bhrd->bhnir", qs, k_span) * scale         # (B, H, N, S, N)
    num_spans = qs.shape[2]
    other = ~torch.eye(num_spans, dtype=torch.bool, device=q.device)        # r != own span
    allowed_direct = member[:, :, :, None, :].expand(-1, -1, -1, span, -1)      # (B, 1, N, S, S)
    allowed_span = (other[:, None, :] & span_real[:, :, None, None, :]).expand(-1, -1, -1, span, -1)
    allowed = torch.cat([allowed_direct, allowed_span], dim=-1)
    probs = masked_softmax(torch.cat([direct, summary], dim=-1), allowed)
    out = (torch.einsum("bhnij,bhnjd->bhnid", probs[..., :span], vs)
           + torch.einsum("bhnir,bhrd->bhnid", probs[..., span:], expectation))
    return rearrange(out, "b h n s d -> b h (n s) d")


def _leave_one_out_max(x: torch.Tensor, dim: int) -> torch.Tensor:
    """out[a] = max over every index but a along `dim`, from prefix and suffix maxima (O(n))."""
    prefix = x.cummax(dim).values
    suffix = x.flip(dim).cummax(dim).values.flip(dim)
    edge = torch.full_like(x.narrow(dim, 0, 1), torch.finfo(x.dtype).min)
    before = torch.cat([edge, prefix.narrow(dim, 0, x.shape[dim] - 1)], dim)
    after = torch.cat([suffix.narrow(dim, 1, x.shape[dim] - 1), edge], dim)
    return torch.maximum(before, after)


def _axial(q, k, v, real, span) -> torch.Tensor:
    """Combiner-Axial on padded inputs: rows of `span` columns; (B, H, R*C, D) -> same."""
    scale = q.shape[-1] ** -0.5
    fill = torch.finfo(q.dtype).min
    qs, ks, vs = (rearrange(x, "b h (r c) d -> b h r c d", c=span) for x in (q, k, v))
    member = rearrange(real, "b (r c) -> b 1 r c", c=span)                   # (B, 1, R, C)
    num_rows = qs.shape[2]
    other_row = ~torch.eye(num_rows, dtype=torch.bool, device=q.device)      # (R_a, R_j): j != a
    # Span (a, c) = column c without row a: leave-one-row-out pooled key and query.
    span_real = (member.sum(2, keepdim=True) - member.int()) > 0             # (B, 1, R, C)
    k_span = _leave_one_out_max(ks.masked_fill(~member[..., None], fill), dim=2)
    q_span = _leave_one_out_max(qs.masked_fill(~member[..., None], fill), dim=2)
    k_span = k_span.where(span_real[..., None], 0.0)                          # (B, H, R, C, D)
    q_span = q_span.where(span_real[..., None], 0.0)
    column_real = rearrange(member, "b 1 r c -> b 1 1 c r")                   # key j of column c
    in_span = column_real & other_row[:, None, :]                             # (B, 1, R_a, C, R_j)
    local = masked_softmax(torch.einsum("bhacd,bhjcd->bhacj", q_span, ks) * scale, in_span)
    expectation = torch.einsum("bhacj,bhjcd->bhacd", local, vs)               # (B, H, R, C, D)
    # Query (a, i): one softmax over [row a | column i, other rows | other columns' spans].
    row = torch.einsum("bhaid,bhajd->bhaij", qs, ks) * scale                  # (B, H, R, C, C)
    col = torch.einsum("bhaid,bhjid->bhaij", qs, ks) * scale                  # (B, H, R, C, R)
    spans = torch.einsum("bhaid,bhacd->bhaic", qs, k_span) * scale            # (B, H, R, C, C)
    other_col = ~torch.eye(span, dtype=torch.bool, device=q.device)           # c != i
    allowed_row = member[:, :, :, None, :].expand(-1, -1, -1, span, -1)
    allowed_col = in_span                                                     # real, j != a
    allowed_span = span_real[:, :, :, None, :] & other_col
    allowed = torch.cat([allowed_row, allowed_col, allowed_span], dim=-1)
    probs = masked_softmax(torch.cat([row, col, spans], dim=-1), allowed)
    p_row, p_col, p_span = probs.split([span, num_rows, span], dim=-1)
    out = (torch.einsum("bhaij,bhajd->bhaid", p_row, vs)
           + torch.einsum("bhaij,bhjid->bhaid", p_col, vs)
           + torch.einsum("bhaic,bhacd->bhaid", p_span, expectation))
    return rearrange(out, "b h r c d -> b h (r c) d")
