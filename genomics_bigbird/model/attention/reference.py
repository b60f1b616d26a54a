"""Float64 reference twins of every kernel, written from the definitions with dense score matrices.

They are slow (explicit loops, O(L^2) memory) and exist for tests: every fast path must equal them.
Outputs at padded query positions are NaN or garbage here; compare real positions only.
"""
import math

import torch


def _scaled_scores(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """(batch, heads, Lq, Lk) float64 scores q k^T / sqrt(d)."""
    return q.double() @ k.double().transpose(-1, -2) / math.sqrt(q.shape[-1])


def _dense_softmax_attention(q, k, v, allowed: torch.Tensor) -> torch.Tensor:
    """softmax over allowed keys, float64; allowed broadcasts to (batch, heads, Lq, Lk)."""
    scores = _scaled_scores(q, k).masked_fill(~allowed, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v.double()


def _real(attention_mask, q) -> torch.Tensor:
    batch, _, length, _ = q.shape
    if attention_mask is None:
        return torch.ones(batch, length, dtype=torch.bool)
    return attention_mask.bool().cpu()


def full_ref(q, k, v, attention_mask=None) -> torch.Tensor:
    """Dense softmax attention over real keys, float64."""
    real = _real(attention_mask, q)
    return _dense_softmax_attention(q, k, v, real[:, None, None, :].to(q.device))


def bigbird_ref(q, k, v, layout, block_size, attention_mask=None) -> torch.Tensor:
    """Dense softmax restricted to the token-level expansion of the layout and to real keys, float64."""
    length = q.shape[-2]
    token_of_block = torch.arange(length) // block_size                 # (L,)
    allowed = layout.cpu().bool()[:, token_of_block][:, :, token_of_block]   # (H, L, L)
    allowed = allowed[None] & _real(attention_mask, q)[:, None, None, :]
    return _dense_softmax_attention(q, k, v, allowed.to(q.device))


def _combiner_position(q, k, v, i: int, direct: list[int], spans: list[list[int]]) -> torch.Tensor:
    """Eqs. 7-9 for one query: direct keys one by one, each span through its abstraction."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = [q[i] @ k[j] * scale for j in direct]
    values = [v[j] for j in direct]
    for members in spans:
        if not members:                       # a span with no real key is dropped
            continue
        k_span = k[members].max(dim=0).values
        q_span = q[members].max(dim=0).values
        local = torch.softmax(k[members] @ q_span * scale, dim=0)
        scores.append(q[i] @ k_span * scale)
        values.append(local @ v[members])
    return torch.softmax(torch.stack(scores), dim=0) @ torch.stack(values)


def _combiner_ref(q, k, v, attention_mask, partition) -> torch.Tensor:
    """Apply `partition(i, real) -> (direct, spans)` position by position, float64."""
    q, k, v = q.double(), k.double(), v.double()
    batch, heads, length, _ = q.shape
    real = _real(attention_mask, q).tolist()
    rows = []
    for b in range(batch):
        for h in range(heads):
            outputs = []
            for i in range(length):
                direct, spans = partition(i, real[b])
                if direct or any(spans):
                    outputs.append(_combiner_position(q[b, h], k[b, h], v[b, h], i, direct, spans))
                else:                           # nothing real to attend to: padding, NaN
                    outputs.append(torch.full_like(q[b, h, i], float("nan")))
            rows.append(torch.stack(outputs))
    return torch.stack(rows).view_as(q)


def combiner_fixed_ref(q, k, v, span: int, attention_mask=None) -> torch.Tensor:
    """Combiner-Fixed (eq. 10) from the definition: own span direct, every other span abstracted."""
    length = q.shape[-2]

    def partition(i, real):
        own = i // span
        direct = [j for j in range(length) if j // span == own and real[j]]
        spans = [[j for j in range(r * span, min(length, (r + 1) * span)) if real[j]]
                 for r in range(math.ceil(length / span)) if r != own]
        return direct, spans

    return _combiner_ref(q, k, v, attention_mask, partition)


def combiner_axial_ref(q, k, v, span: int, attention_mask=None) -> torch.Tensor:
    """Combiner-Axial from the definition: row and column direct, other columns minus i's row abstracted."""
    length = q.shape[-2]

    def partition(i, real):
        row, col = divmod(i, span)
        direct = [j for j in range(length) if (j // span == row or j % span == col) and real[j]]
        spans = [[j for j in range(length) if j % span == c and j // span != row and real[j]]
                 for c in range(span) if c != col]
        return direct, spans

    return _combiner_ref(q, k, v, attention_mask, partition)


def combiner_mixture_ref(q, k, v, span: int, attention_mask=None) -> torch.Tensor:
    """Combiner-Mixture: the mean of the fixed and axial plans (§3.3)."""
    return 0.5 * (combiner_fixed_ref(q, k, v, span, attention_mask)
                  + combiner_axial_ref(q, k, v, span, attention_mask))
