"""Variant effect scores: ref/alt windows -> RC-ensembled probabilities per feature and their differences.

For every (record, ALT) that the genome layer could place (status `ok` or `padded`) the model sees
four windows: ref, alt and the reverse complement of each (tokenized separately, `[CLS] ids [SEP]`).
Per feature:

- `ref`, `alt`: mean of the forward and reverse-complement probabilities (DeepSEA, BigBird F.3);
- `diff = alt - ref`;
- `log_odds_diff = logit(alt) - logit(ref)`, probabilities clipped to [eps, 1 - eps] so a
  saturated sigmoid gives a large finite number, never inf.

Variants that were not scored keep their row, with NaN scores. Scoring streams: a group of at most
`batch_size` scored variants (4 x batch_size windows, run `batch_size` at a time) is predicted,
yielded as one `ScoredBatch` and dropped, so memory does not grow with the VCF.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from genomics_bigbird.errors import InputError
from genomics_bigbird.genome.sequence import reverse_complement
from genomics_bigbird.genome.variants import VariantWindows
from genomics_bigbird.model import collect_predictions, predict_rows

log = logging.getLogger(__name__)

PROBABILITY_EPS = 1e-7  # logit(1 - 1e-7) = 16.1: finite log-odds for saturated predictions
UNSCORED_PER_GROUP = 8  # unscored variants in a group, as a multiple of batch_size (bounds memory)


def logit(probabilities: np.ndarray, eps: float = PROBABILITY_EPS) -> np.ndarray:
    """Return log(p / (1 - p)) with p clipped to [eps, 1 - eps] (finite for saturated probabilities)."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), eps, 1.0 - eps)
    return np.log(p) - np.log1p(-p)


@dataclass
class ScoredBatch:
    """Scores of consecutive variants: `ref`/`alt` RC-ensembled probabilities (n, features), NaN rows unscored."""

    variants: list[VariantWindows]
    ref: np.ndarray
    alt: np.ndarray

    @property
    def diff(self) -> np.ndarray:
        """alt - ref per feature."""
        return self.alt - self.ref

    @property
    def log_odds_diff(self) -> np.ndarray:
        """logit(alt) - logit(ref) per feature (clipped probabilities; NaN rows stay NaN)."""
        return logit(self.alt) - logit(self.ref)

    def summaries(self) -> dict[str, np.ndarray]:
        """Per variant: max |diff| and its feature index, max |log_odds_diff| and its feature (NaN / -1 unscored)."""
        out = {}
        for name, matrix in (("diff", self.diff), ("log_odds_diff", self.log_odds_diff)):
            scored = ~np.isnan(matrix).all(axis=1)
            feature = np.full(len(matrix), -1, dtype=np.int64)
            value = np.full(len(matrix), np.nan)
            if scored.any():
                magnitude = np.abs(matrix[scored])
                feature[scored] = np.argmax(magnitude, axis=1)
                value[scored] = magnitude[np.arange(len(magnitude)), feature[scored]]
            out[f"max_abs_{name}"] = value
            out[f"max_abs_{name}_feature"] = feature
        return out


def predict_windows(model: torch.nn.Module, tokenizer, sequences: Sequence[str], *, batch_size: int = 16,
                    device: str | torch.device = "cpu", max_tokens: int | None = None,
                    length_multiple: int = 64) -> np.ndarray:
    """RC-ensembled sigmoid probabilities (n, features): mean over each window and its reverse complement.

    Each window is tokenized as `[CLS] ids [SEP]` and padded to its own length rounded up to
    `length_multiple` (at most `max_tokens`); only windows of the same padded length share a
    forward pass. A window's score therefore never depends on its batch-mates, even where the
    attention pattern depends on the padded length (BigBird draws its random blocks per block
    count: use the block size as `length_multiple`), so batch size and sharding change nothing
    (`genomics_bigbird.model.predict_rows`). The model is any module with
    `forward(input_ids, attention_mask) -> logits (batch, features)`; it runs in eval mode without
    gradients (its mode is restored), under bf16 autocast on CUDA.
    """
    strands = list(sequences) + [reverse_complement(s) for s in sequences]
    rows = [[tokenizer.cls_id, *ids, tokenizer.sep_id] for ids in tokenizer.encode_batch(strands)]
    longest = max(len(row) for row in rows)
    if max_tokens is not None and longest > max_tokens:
        raise InputError(f"a window of {max(len(s) for s in sequences)} bp is {longest} tokens with [CLS]/[SEP], "
                         f"more than the model's {max_tokens} positions: score with a smaller window width")
    batches = predict_rows(model, enumerate(rows), pad_id=tokenizer.pad_id, batch_size=batch_size, device=device,
                           length_multiple=length_multiple, max_tokens=max_tokens)
    probabilities = collect_predictions(batches, len(rows)).astype(np.float64)
    n = len(sequences)
    return (probabilities[:n] + probabilities[n:]) / 2.0


def _groups(windows: Iterable[VariantWindows], batch_size: int) -> Iterator[list[VariantWindows]]:
    """Consecutive variants holding at most `batch_size` scored ones (and a bounded number of unscored)."""
    group: list[VariantWindows] = []
    n_scored = 0
    for variant in windows:
        group.append(variant)
        n_scored += variant.scored
        if n_scored == batch_size or len(group) >= UNSCORED_PER_GROUP * batch_size:
            yield group
            group, n_scored = [], 0
    if group:
        yield group


def score_variants(model: torch.nn.Module, tokenizer, windows: Iterable[VariantWindows], *, num_features: int,
                   batch_size: int = 16, device: str | torch.device = "cpu", max_tokens: int | None = None,
                   length_multiple: int = 64) -> Iterator[ScoredBatch]:
    """Score variant windows in input order, yielding `ScoredBatch`es (unscored variants get NaN rows).

    `batch_size` is the number of windows per forward pass; a group of `batch_size` scored
    variants needs about four passes (ref, alt, and their reverse complements). See
    `predict_windows` for `max_tokens` and `length_multiple`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    for group in _groups(windows, batch_size):
        ref = np.full((len(group), num_features), np.nan)
        alt = np.full((len(group), num_features), np.nan)
        rows = [i for i, variant in enumerate(group) if variant.scored]
        if rows:
            sequences = [group[i].ref_seq for i in rows] + [group[i].alt_seq for i in rows]
            probabilities = predict_windows(model, tokenizer, sequences, batch_size=batch_size, device=device,
                                            max_tokens=max_tokens, length_multiple=length_multiple)
            if probabilities.shape[1] != num_features:
                raise ValueError(f"the model predicts {probabilities.shape[1]} features, expected {num_features}")
            ref[rows], alt[rows] = probabilities[: len(rows)], probabilities[len(rows):]
        yield ScoredBatch(group, ref, alt)
