"""Predictions with forward/reverse-complement ensembling (DeepSEA, BigBird F.3) and model ensembles.

Analyses take (model, inputs) and own batching, device placement and eval-mode restore.
The model is any module with `forward(input_ids, attention_mask) -> logits (batch, features)`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from genomics_bigbird.data.labeled import middle_tokens
from genomics_bigbird.genome.sequence import reverse_complement
from genomics_bigbird.model import collect_predictions, predict_rows


@dataclass
class StrandPredictions:
    """Probabilities (n, features) of the forward windows, their reverse complements, and the mean."""

    forward: np.ndarray
    reverse: np.ndarray

    @property
    def ensemble(self) -> np.ndarray:
        return rc_ensemble(self.forward, self.reverse)


def rc_ensemble(forward: np.ndarray, reverse: np.ndarray) -> np.ndarray:
    """Mean of the forward and reverse-complement probabilities."""
    return (np.asarray(forward, dtype=np.float64) + np.asarray(reverse, dtype=np.float64)) / 2.0


def checkpoint_lengths(meta: dict) -> tuple[int, int]:
    """(max_length, length_multiple) of a fine-tuned checkpoint's metadata: its fine-tuning length and its block size.

    max_length counts [CLS] and [SEP]; a checkpoint that recorded none was fine-tuned at its
    model's `max_position`. `gbb evaluate` and `predict_sequences` both read these, so a window
    gets one score from either.
    """
    config = meta["model_config"]
    return int(meta.get("extra", {}).get("max_length") or config["max_position"]), int(config["block_size"])


def predict_sequences(model: torch.nn.Module, tokenizer, sequences: Sequence[str], *, checkpoint: dict | None = None,
                      batch_size: int = 8, device: str | torch.device = "cpu", max_length: int | None = None,
                      length_multiple: int | None = None) -> StrandPredictions:
    """Probabilities for DNA windows read 5'->3' and for their reverse complements (tokenized separately).

    `checkpoint` is the metadata `load_classifier` returns with the model; `max_length` and
    `length_multiple` default to its fine-tuning length and block size (`checkpoint_lengths`),
    which is what `gbb evaluate` uses. Without a checkpoint, `length_multiple` must be given and
    `max_length=None` keeps every token. Each window is `[CLS] tokens [SEP]`; one longer than
    `max_length` keeps its middle tokens, as in training (`TokenizedWindows`). A window is padded
    to its own length rounded up to `length_multiple`, so its prediction does not depend on the
    batch (`genomics_bigbird.model.predict_rows`).
    """
    if checkpoint is not None:
        trained_length, block_size = checkpoint_lengths(checkpoint)
        max_length = max_length or trained_length
        length_multiple = length_multiple or block_size
    if length_multiple is None:
        raise ValueError("pass checkpoint= (the metadata load_classifier returns) or length_multiple= (the model's "
                         "block size): BigBird's answer depends on how far a window is padded")

    def probabilities(strand_sequences: list[str]) -> np.ndarray:
        rows = []
        for ids in tokenizer.encode_batch(strand_sequences):
            if max_length is not None:
                ids = middle_tokens(list(ids), max_length - 2)
            rows.append([tokenizer.cls_id, *ids, tokenizer.sep_id])
        batches = predict_rows(model, enumerate(rows), pad_id=tokenizer.pad_id, batch_size=batch_size, device=device,
                               length_multiple=length_multiple, max_tokens=max_length)
        return collect_predictions(batches, len(rows))

    sequences = list(sequences)
    return StrandPredictions(forward=probabilities(sequences),
                             reverse=probabilities([reverse_complement(s) for s in sequences]))


def ensemble_models(predictions: Sequence[StrandPredictions]) -> StrandPredictions:
    """Average several models' strand predictions (an ensemble of independently trained checkpoints)."""
    if not predictions:
        raise ValueError("no predictions to ensemble")
    forward = np.mean([p.forward for p in predictions], axis=0)
    reverse = np.mean([p.reverse for p in predictions], axis=0)
    return StrandPredictions(forward=forward, reverse=reverse)
