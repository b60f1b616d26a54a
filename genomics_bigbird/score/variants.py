"""Variant effect scores: ref/alt windows -> RC-ensembled probabilities per feature and their differences.

For every (record, ALT) that the genome layer could place (status `ok` or `padded`) the model sees
four windows: ref, alt and the reverse complement of each (tokenized separately, `[CLS] ids [SEP]`).
The four are run at one padded length, the longest of the four rounded up to the block size, so
BigBird attends to all four under the same random-block layout and a score measures the sequence
change alone. Per feature, with the conventions of Kipoi's veff and Selene:

- `ref`, `alt`: mean of the forward and reverse-complement probabilities (DeepSEA, BigBird F.3);
- `diff = alt - ref`, `abs_diff = |alt - ref|`;
- `log_odds_diff = logit(alt) - logit(ref)`, probabilities clipped to [eps, 1 - eps] so a
  saturated sigmoid gives a large finite number, never inf.

Variants that were not scored keep their row, with NaN scores. Scoring streams group by group
(`genomics_bigbird.genome.variants.group_variants`): a group of at most `batch_size` scored
variants is tokenized (`tokenize_group`), predicted (`predict_group`), yielded as one
`ScoredBatch` and dropped, so memory does not grow with the input. Both steps can run in
DataLoader workers (`score_variants`); the groups and their forward passes do not depend on the
number of workers, so neither do the scores.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from genomics_bigbird.errors import InputError
from genomics_bigbird.genome.sequence import reverse_complement
from genomics_bigbird.genome.variants import VariantGroup, VariantWindows, group_variants
from genomics_bigbird.model import collect_predictions, predict_rows
from genomics_bigbird.model.inference import padded_length

PROBABILITY_EPS = 1e-7  # logit(1 - 1e-7) = 16.1: finite log-odds for saturated predictions


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
    progress: int = 0  # input units read so far (VCF records, ISM positions): for progress bars

    @functools.cached_property
    def diff(self) -> np.ndarray:
        """alt - ref per feature."""
        return self.alt - self.ref

    @property
    def abs_diff(self) -> np.ndarray:
        """|alt - ref| per feature."""
        return np.abs(self.diff)

    @functools.cached_property
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


@dataclass
class TokenizedGroup:
    """A group's variants and the distinct token rows their windows need, each with the length it runs at."""

    variants: list[VariantWindows]  # without their window sequences: `rows` holds them, tokenized
    progress: int
    rows: list[list[int]]   # `[CLS] ids [SEP]`, each distinct (window, padded length) once
    run_at: list[int]       # padded length of each row: the longest of its variant's four windows
    slots: np.ndarray       # (n_scored, 4) rows of ref, alt, rc(ref), rc(alt) of each scored variant
    scored: np.ndarray      # (n_scored,) positions of the scored variants in `variants`


def tokenize_group(group: VariantGroup, tokenizer, *, length_multiple: int = 64,
                   max_tokens: int | None = None) -> TokenizedGroup:
    """Tokenize a group's four windows per scored variant; the four share one padded length.

    Windows repeated within the group (the reference window of a multi-allelic record, or of the
    three SNVs of an ISM position) are tokenized and run once per padded length.
    """
    scored = [i for i, variant in enumerate(group.variants) if variant.scored]
    index_of: dict[str, int] = {}
    windows = []
    for i in scored:
        variant = group.variants[i]
        for seq in (variant.ref_seq, variant.alt_seq,
                    reverse_complement(variant.ref_seq), reverse_complement(variant.alt_seq)):
            windows.append(index_of.setdefault(seq, len(index_of)))
    ids = tokenizer.encode_batch(list(index_of)) if index_of else []
    counts = [len(row) + 2 for row in ids]
    if max_tokens is not None and counts and max(counts) > max_tokens:
        longest = max(len(group.variants[i].ref_seq) for i in scored)
        raise InputError(f"a window of {longest} bp is {max(counts)} tokens with [CLS]/[SEP], more than the "
                         f"model's {max_tokens} positions: score with a smaller window width")
    rows, run_at, slots = [], [], []
    row_of: dict[tuple[int, int], int] = {}
    for k in range(len(scored)):
        four = windows[4 * k: 4 * k + 4]
        length = padded_length(max(counts[w] for w in four), length_multiple, max_tokens)
        for w in four:
            if (w, length) not in row_of:
                row_of[w, length] = len(rows)
                rows.append([tokenizer.cls_id, *ids[w], tokenizer.sep_id])
                run_at.append(length)
        slots.append([row_of[w, length] for w in four])
    # The windows are tokens now; dropping the sequences keeps them out of every pickle to or from
    # a worker (two windows of up to 8 kbp per variant).
    variants = [dataclasses.replace(v, ref_seq="", alt_seq="") if v.scored else v for v in group.variants]
    return TokenizedGroup(variants, group.progress, rows, run_at,
                          np.asarray(slots, dtype=np.int64).reshape(-1, 4), np.asarray(scored, dtype=np.int64))


def predict_group(model: torch.nn.Module, group: TokenizedGroup, *, pad_id: int, num_features: int,
                  batch_size: int = 16, device: str | torch.device = "cpu", length_multiple: int = 64,
                  max_tokens: int | None = None) -> ScoredBatch:
    """Run a tokenized group's rows (`predict_rows`, `batch_size` per pass) and RC-ensemble each variant's scores."""
    ref = np.full((len(group.variants), num_features), np.nan)
    alt = np.full((len(group.variants), num_features), np.nan)
    if group.rows:
        rows = ((i, row, length) for i, (row, length) in enumerate(zip(group.rows, group.run_at)))
        batches = predict_rows(model, rows, pad_id=pad_id, batch_size=batch_size, device=device,
                               length_multiple=length_multiple, max_tokens=max_tokens)
        probabilities = collect_predictions(batches, len(group.rows)).astype(np.float64)
        if probabilities.shape[1] != num_features:
            raise ValueError(f"the model predicts {probabilities.shape[1]} features, expected {num_features}")
        slots = group.slots
        ref[group.scored] = (probabilities[slots[:, 0]] + probabilities[slots[:, 2]]) / 2.0
        alt[group.scored] = (probabilities[slots[:, 1]] + probabilities[slots[:, 3]]) / 2.0
    return ScoredBatch(group.variants, ref, alt, group.progress)


class GroupedVariants(Protocol):
    """A variant source that cuts itself into groups (`VariantSource`, `SaturationSource`)."""

    def groups(self, size: int, part: int = 0, parts: int = 1) -> Iterator[VariantGroup]: ...


@dataclass
class _WorkerFailure:
    """An InputError raised in a worker, carried to the main process to be raised there as it was."""

    error: InputError


class _Then:
    """`second(first(x))`, picklable (DataLoader workers may be spawned)."""

    def __init__(self, first: Callable, second: Callable):
        self.first, self.second = first, second

    def __call__(self, item):
        return self.second(self.first(item))


class GroupWork(IterableDataset):
    """`work(group)` for each group of a source; in DataLoader worker k of n, for the groups k, k + n, k + 2n, ..."""

    def __init__(self, source: GroupedVariants, work: Callable[[VariantGroup], Any], group_size: int):
        self.source, self.work, self.group_size = source, work, group_size

    def __iter__(self) -> Iterator:
        worker = get_worker_info()
        part, parts = (worker.id, worker.num_workers) if worker is not None else (0, 1)
        try:
            for group in self.source.groups(self.group_size, part, parts):
                yield self.work(group)
        except InputError as err:
            if worker is None:
                raise
            yield _WorkerFailure(err)


def _unchanged(item):
    return item


class _Listed:
    """An iterable of `VariantWindows` (windows already cut) as a source of groups."""

    def __init__(self, windows: Iterable[VariantWindows]):
        self.windows = windows

    def groups(self, size: int, part: int = 0, parts: int = 1) -> Iterator[VariantGroup]:
        return group_variants(enumerate(self.windows, start=1), size, _unchanged, part, parts)


def _for_transfer(batch: ScoredBatch) -> ScoredBatch:
    """A worker's batch as the main process needs it: log-odds computed here, not in the main process."""
    batch.log_odds_diff  # noqa: B018 (cached on the batch)
    return batch


def in_groups(source: GroupedVariants, work: Callable[[VariantGroup], Any], *, group_size: int,
              workers: int = 0) -> Iterator:
    """`work(group)` for every group of `source`, in input order, done by `workers` processes (0: this one).

    Worker k reads the whole input but cuts windows and works only on its own groups; the
    DataLoader hands the results back round-robin, which is the input order.
    """
    if workers < 0:
        raise ValueError(f"workers must be 0 or more, got {workers}")
    dataset = GroupWork(source, work, group_size)
    if workers == 0:
        yield from dataset
        return
    for item in DataLoader(dataset, batch_size=None, num_workers=workers, collate_fn=_unchanged, prefetch_factor=4):
        if isinstance(item, _WorkerFailure):
            raise item.error
        yield item


def score_variants(model: torch.nn.Module, tokenizer, windows: GroupedVariants | Iterable[VariantWindows], *,
                   num_features: int, batch_size: int = 16, device: str | torch.device = "cpu",
                   max_tokens: int | None = None, length_multiple: int = 64, workers: int = 0,
                   prepare: Callable[[ScoredBatch], Any] | None = None) -> Iterator:
    """Score variants in input order, yielding one `ScoredBatch` per group (unscored variants get NaN rows).

    `windows` is a source with `groups` (`VariantSource`, `SaturationSource`) or any iterable of
    `VariantWindows` with their windows cut (read in this process, whatever `workers`). A group
    holds `batch_size` scored variants, about four forward passes of `batch_size` windows. Pass the
    model's block size as `length_multiple` and its positions as `max_tokens` (a longer window is
    an InputError).

    With `workers` > 0, DataLoader processes cut and tokenize the windows of a source's groups; on
    CPU they also run the model (one thread each), since the forward pass is the other CPU-bound
    half of the work, and this process only collects. Groups and forward passes are the same
    whatever `workers`, so the scores are too (run at one thread per process, they are identical).

    `prepare(batch)`, when given, is yielded instead of each batch and runs where the batch was
    scored: in the worker, when workers run the model. Use it to reduce a batch to what the caller
    keeps (the rows of a table, a few features): its (variants x features) float64 matrices, 1.4 MB
    per group of 64 at 919 features, are then never pickled between processes. Collecting those
    held 2 workers to 1.31x the speed of one; sending table rows, 1.79x (`benchmarks/scale.py`).
    It must be picklable (a module-level function or a partial of one).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    options = dict(length_multiple=length_multiple, max_tokens=max_tokens)
    tokenize = functools.partial(tokenize_group, tokenizer=tokenizer, **options)
    predict = functools.partial(predict_group, model, pad_id=tokenizer.pad_id, num_features=num_features,
                                batch_size=batch_size, device=device, **options)
    if not hasattr(windows, "groups"):
        windows, workers = _Listed(windows), 0  # an iterable may be a generator: one process reads it
    if workers > 0 and torch.device(device).type == "cpu":
        work = _Then(_Then(tokenize, predict), prepare or _for_transfer)
        yield from in_groups(windows, work, group_size=batch_size, workers=workers)
    else:
        finish = prepare or _unchanged
        for group in in_groups(windows, tokenize, group_size=batch_size, workers=workers):
            yield finish(predict(group))


def predict_windows(model: torch.nn.Module, tokenizer, sequences: Sequence[str], *, batch_size: int = 16,
                    device: str | torch.device = "cpu", max_tokens: int | None = None,
                    length_multiple: int = 64) -> np.ndarray:
    """RC-ensembled sigmoid probabilities (n, features): mean over each window and its reverse complement.

    Each window (and each reverse complement) is tokenized as `[CLS] ids [SEP]` and run at its own
    length rounded up to `length_multiple`, so its score never depends on its batch-mates
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
