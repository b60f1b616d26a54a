"""Predictions with forward/reverse-complement ensembling (DeepSEA, BigBird F.3) and model ensembles.

Analyses take (model, inputs) and own batching, device placement and eval-mode restore.
The model is any module with `forward(input_ids, attention_mask) -> logits (batch, features)`.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from genomics_bigbird.data.labeled import middle_tokens
from genomics_bigbird.genome.sequence import reverse_complement


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


@contextlib.contextmanager
def evaluation_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Put `model` in eval mode without gradients; restore its previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield model
    finally:
        model.train(was_training)


def tokenize_windows(tokenizer, sequences: Sequence[str], max_length: int | None = None) -> dict[str, torch.Tensor]:
    """Encode sequences as `[CLS] tokens [SEP]`, right-padded to the longest; a window longer than
    `max_length` keeps its middle tokens, as in training (`TokenizedWindows`)."""
    encoded = tokenizer.encode_batch(list(sequences))
    rows = []
    for ids in encoded:
        if max_length is not None:
            ids = middle_tokens(list(ids), max_length - 2)
        rows.append([tokenizer.cls_id, *ids, tokenizer.sep_id])
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), tokenizer.pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        attention_mask[i, : len(row)] = True
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def predict_batches(model: torch.nn.Module, batches: Iterable[dict], device: str | torch.device = "cpu") -> np.ndarray:
    """Sigmoid probabilities (n, features) for batches holding `input_ids` and `attention_mask`."""
    device = torch.device(device)
    outputs = []
    with evaluation_mode(model):
        for batch in batches:
            with _autocast(device):
                logits = model(batch["input_ids"].to(device), batch["attention_mask"].to(device))
            outputs.append(torch.sigmoid(logits.float()).cpu().numpy())
    return np.concatenate(outputs, axis=0) if outputs else np.zeros((0, 0))


def predict_sequences(model: torch.nn.Module, tokenizer, sequences: Sequence[str], *, batch_size: int = 8,
                      device: str | torch.device = "cpu", max_length: int | None = None) -> StrandPredictions:
    """Probabilities for DNA windows read 5'->3' and for their reverse complements (tokenized separately)."""
    def batches(strand_sequences: Sequence[str]) -> Iterator[dict]:
        for i in range(0, len(strand_sequences), batch_size):
            yield tokenize_windows(tokenizer, strand_sequences[i: i + batch_size], max_length)

    sequences = list(sequences)
    forward = predict_batches(model, batches(sequences), device)
    reverse = predict_batches(model, batches([reverse_complement(s) for s in sequences]), device)
    return StrandPredictions(forward=forward, reverse=reverse)


def ensemble_models(predictions: Sequence[StrandPredictions]) -> StrandPredictions:
    """Average several models' strand predictions (an ensemble of independently trained checkpoints)."""
    if not predictions:
        raise ValueError("no predictions to ensemble")
    forward = np.mean([p.forward for p in predictions], axis=0)
    reverse = np.mean([p.reverse for p in predictions], axis=0)
    return StrandPredictions(forward=forward, reverse=reverse)
