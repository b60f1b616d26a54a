"""Batched predictions on token-id rows, each run at a length of its own so no answer depends on its batch.

BigBird draws its random attention blocks per block count, so a window's logits depend on the
padded length of the tensor it is run in. Here every row says the length it is run at: its own
token count, or a larger one it carries (`(index, ids, num_tokens)`), rounded up to
`length_multiple` (use the block size). Only rows of the same padded length share a forward pass,
so a prediction is the same whatever the batch size, the order of the rows or how the data are
sharded, and equals the model run on that row alone at that length.

Rows that must be compared under one attention layout carry a common token count: a variant's
ref, alt and reverse-complement windows all carry the largest of their four counts, so their
scores differ by the sequence change alone, never by a different random-block draw.
"""
from __future__ import annotations

import contextlib
import itertools
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch


def padded_length(num_tokens: int, length_multiple: int, max_tokens: int | None = None) -> int:
    """`num_tokens` rounded up to a multiple of `length_multiple`, at most `max_tokens`."""
    length = -(-num_tokens // length_multiple) * length_multiple
    return length if max_tokens is None else min(length, max_tokens)


def pad_rows(rows: Sequence[Sequence[int]], pad_id: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows right-padded to `length`: (input_ids, attention_mask), both (n, length), mask True = token."""
    counts = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
    attention_mask = np.arange(length)[None, :] < counts[:, None]  # (n, length)
    input_ids = np.full((len(rows), length), pad_id, dtype=np.int64)
    if len(rows):
        input_ids[attention_mask] = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64,
                                                count=int(counts.sum()))
    return torch.from_numpy(input_ids), torch.from_numpy(attention_mask)


def _probabilities(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   device: torch.device) -> np.ndarray:
    """Sigmoid of one forward pass, float32 (n, features): eval mode, no autograd, bf16 autocast on CUDA.

    The model's mode is restored before returning, so nothing leaks to the caller between the
    batches that `predict_rows` yields.
    """
    was_training = model.training
    if was_training:  # switching modes walks every submodule: only when needed
        model.eval()
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                else contextlib.nullcontext())
    try:
        with torch.inference_mode(), autocast:
            logits = model(input_ids.to(device), attention_mask.to(device))
        return torch.sigmoid(logits.float()).cpu().numpy()
    finally:
        if was_training:
            model.train()


def predict_rows(model: torch.nn.Module, rows: Iterable[tuple], *, pad_id: int,
                 batch_size: int, device: str | torch.device = "cpu", length_multiple: int = 64,
                 max_tokens: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stream `(indices, probabilities)` per forward pass for token rows, bucketed by padded length.

    A row is `(index, token_ids)`, run at `padded_length(len(token_ids))`, or `(index, token_ids,
    num_tokens)`, run at `padded_length(num_tokens)` (`num_tokens >= len(token_ids)`: the count it
    shares with the rows it is compared with). A bucket is run once it holds `batch_size` rows and
    the rest when `rows` ends, so memory stays within (distinct padded lengths) x `batch_size` rows
    however long the input. `indices` (n,) are the rows' own indices and `probabilities`
    (n, features) float32 sigmoids. The model is any module with `forward(input_ids,
    attention_mask) -> logits (batch, features)`; tokens must already include any special tokens,
    and a row longer than `max_tokens` is a ValueError (truncate it first).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if length_multiple < 1:
        raise ValueError(f"length_multiple must be positive, got {length_multiple}")
    device = torch.device(device)
    buckets: dict[int, list[tuple[int, Sequence[int]]]] = {}

    def run(bucket: list[tuple[int, Sequence[int]]], length: int) -> tuple[np.ndarray, np.ndarray]:
        input_ids, attention_mask = pad_rows([row for _, row in bucket], pad_id, length)
        indices = np.array([index for index, _ in bucket], dtype=np.int64)
        return indices, _probabilities(model, input_ids, attention_mask, device)

    for index, row, *run_at in rows:
        num_tokens = run_at[0] if run_at else len(row)
        if len(row) == 0:
            raise ValueError(f"row {index} has no tokens")
        if num_tokens < len(row):
            raise ValueError(f"row {index} has {len(row)} tokens but is to be run at {num_tokens}")
        if max_tokens is not None and num_tokens > max_tokens:
            raise ValueError(f"row {index} has {num_tokens} tokens, more than max_tokens={max_tokens}: truncate it first")
        length = padded_length(num_tokens, length_multiple, max_tokens)
        bucket = buckets.setdefault(length, [])
        bucket.append((index, row))
        if len(bucket) == batch_size:
            yield run(buckets.pop(length), length)
    for length in sorted(buckets):
        yield run(buckets[length], length)


def collect_predictions(batches: Iterable[tuple[np.ndarray, np.ndarray]], num_rows: int) -> np.ndarray:
    """Place streamed `(indices, probabilities)` into one float32 array (num_rows, features); (0, 0) when empty.

    Rows that no batch covered stay NaN.
    """
    out: np.ndarray | None = None
    for indices, probabilities in batches:
        if out is None:
            out = np.full((num_rows, probabilities.shape[1]), np.nan, dtype=np.float32)
        out[indices] = probabilities
    return np.zeros((0, 0), dtype=np.float32) if out is None else out
