"""Training losses (MLM, NSP, positive-upweighted BCE) and the accuracies logged beside them."""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100  # label of a position that is not predicted (BERT / PyTorch convention)


class PretrainingLoss(NamedTuple):
    """MLM + NSP loss: `total` is what is back-propagated; the parts are logged."""

    total: torch.Tensor
    mlm: torch.Tensor
    nsp: torch.Tensor


def mlm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over predicted tokens; labels equal to -100 are ignored.

    logits: (n, vocab) and labels: (n,) (the masked positions only), or logits (batch, length,
    vocab) with labels (batch, length). Computed in float32 even under bf16.
    """
    logits = logits.reshape(-1, logits.shape[-1]).float()
    labels = labels.reshape(-1)
    if logits.shape[0] != labels.shape[0]:
        raise ValueError(f"{logits.shape[0]} MLM logit rows for {labels.shape[0]} labels")
    if not bool((labels != IGNORE_INDEX).any()):
        return logits.sum() * 0.0  # no masked token: zero loss that still joins the graph
    return F.cross_entropy(logits, labels.long(), ignore_index=IGNORE_INDEX)


def nsp_loss(logits: torch.Tensor, is_next: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of next-sentence prediction; logits (batch, 2), is_next (batch,) in {0, 1}."""
    return F.cross_entropy(logits.float(), is_next.long().reshape(-1))


def pretraining_loss(mlm_logits: torch.Tensor, mlm_labels: torch.Tensor,
                     nsp_logits: torch.Tensor, is_next: torch.Tensor) -> PretrainingLoss:
    """BERT's pretraining objective: MLM cross-entropy + NSP cross-entropy (unweighted sum)."""
    mlm = mlm_loss(mlm_logits, mlm_labels)
    nsp = nsp_loss(nsp_logits, is_next)
    return PretrainingLoss(total=mlm + nsp, mlm=mlm, nsp=nsp)


def bce_with_pos_weight(logits: torch.Tensor, targets: torch.Tensor, pos_weight: float = 8.0) -> torch.Tensor:
    """Mean binary cross-entropy with positives weighted by `pos_weight` (BigBird F.3, default 8).

    loss = -mean(pos_weight * y * log(sigmoid(x)) + (1 - y) * log(1 - sigmoid(x))); chromatin
    labels are sparse, so up-weighting positives keeps the model from predicting all zeros.
    """
    weight = torch.as_tensor(pos_weight, dtype=torch.float32, device=logits.device)
    return F.binary_cross_entropy_with_logits(logits.float(), targets.float(), pos_weight=weight)


def mlm_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[int, int]:
    """Return (correct, predicted) over MLM positions whose label is not -100."""
    labels = labels.reshape(-1)
    keep = labels != IGNORE_INDEX
    predicted = logits.reshape(-1, logits.shape[-1]).argmax(dim=-1)
    return int((predicted[keep] == labels[keep]).sum()), int(keep.sum())


def nsp_accuracy(logits: torch.Tensor, is_next: torch.Tensor) -> tuple[int, int]:
    """Return (correct, total) of next-sentence predictions."""
    predicted = logits.argmax(dim=-1)
    return int((predicted == is_next.reshape(-1).long()).sum()), int(predicted.numel())
