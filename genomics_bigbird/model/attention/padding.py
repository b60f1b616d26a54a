"""Key-padding helpers shared by the attention kernels: pad to a block multiple, masked softmax."""
import torch
import torch.nn.functional as F


def real_token_mask(attention_mask: torch.Tensor | None, batch: int, length: int,
                    device: torch.device) -> torch.Tensor:
    """Return the (batch, length) bool mask of real tokens (True = real); all True when None."""
    if attention_mask is None:
        return torch.ones(batch, length, dtype=torch.bool, device=device)
    if attention_mask.shape != (batch, length):
        raise ValueError(f"attention_mask must be (batch, length) = {(batch, length)}, "
                         f"got {tuple(attention_mask.shape)}")
    return attention_mask.to(device=device, dtype=torch.bool)


def attend_all_if_empty(allowed: torch.Tensor) -> torch.Tensor:
    """Open every key to a row of a (..., keys) mask that allows none (a sequence with no real token).

    Such a row would be fully masked, which SDPA and flex turn into NaN; its outputs are padding
    and only need to be finite.
    """
    return allowed | ~allowed.any(dim=-1, keepdim=True)


def pad_length(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Right-pad the length axis (-2) of x: (..., length, dim) with zeros to a multiple."""
    extra = -x.shape[-2] % multiple
    return F.pad(x, (0, 0, 0, extra)) if extra else x


def pad_mask(real: torch.Tensor, multiple: int) -> torch.Tensor:
    """Right-pad a (batch, length) real-token mask with False to a multiple."""
    extra = -real.shape[-1] % multiple
    return F.pad(real, (0, extra), value=False) if extra else real


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype scores and softmax run in: float32, or float64 for float64 inputs."""
    return torch.promote_types(dtype, torch.float32)


def masked_softmax(scores: torch.Tensor, allowed: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax over allowed entries; a row with nothing allowed comes out uniform (finite, unused).

    A finite fill instead of -inf keeps fully masked rows (padded queries, empty batch rows)
    free of NaN in both forward and backward.
    """
    fill = torch.finfo(scores.dtype).min
    return torch.softmax(scores.masked_fill(~allowed, fill), dim=dim)
