"""Fine-tuned classifiers on labeled windows: load a checkpoint, predict a split on both strands, score it.

Shared by `gbb finetune` (validation during training) and `gbb evaluate`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from genomics_bigbird.data.labeled import LabeledWindows, TokenizedWindows
from genomics_bigbird.errors import InputError
from genomics_bigbird.evaluate.ensemble import StrandPredictions
from genomics_bigbird.evaluate.metrics import binary_metrics, multilabel_metrics
from genomics_bigbird.model import (
    EncoderConfig, SequenceClassifier, build_classifier, collect_predictions, load_checkpoint, predict_rows)

BINARY_TASKS = ("promoter",)
TOKENIZE_BLOCK = 64  # windows a DataLoader worker reads and tokenizes per item  # one label, reported with thresholded metrics; other tasks are multi-label


def load_classifier(directory: str | os.PathLike, tokenizer_sha256: str | None = None,
                    tokenizer_path: str | os.PathLike | None = None) -> tuple[SequenceClassifier, dict]:
    """Return (classifier in eval mode on CPU, checkpoint metadata) of a fine-tuned checkpoint.

    With `tokenizer_sha256`, a checkpoint trained with another tokenizer is an InputError that
    names the checkpoint, the tokenizer file and both checksums.
    """
    directory = Path(directory)
    state_dict, meta = load_trained(directory, tokenizer_sha256, tokenizer_path)
    if "head.classifier.weight" not in state_dict:
        raise InputError(f"not a fine-tuned classifier (task {meta.get('task')!r}); pass the checkpoint "
                         f"written by `gbb finetune` (its best/ directory)", directory)
    model = build_classifier(EncoderConfig.from_dict(meta["model_config"]),
                             int(state_dict["head.classifier.weight"].shape[0]))
    model.load_state_dict(state_dict)
    return model.eval(), meta


def load_trained(directory: str | os.PathLike, tokenizer_sha256: str | None = None,
                 tokenizer_path: str | os.PathLike | None = None) -> tuple[dict, dict]:
    """(state_dict, metadata) of a checkpoint (pretrained or fine-tuned), as InputErrors for the user.

    A missing or unreadable checkpoint, or one trained with another tokenizer (`check_tokenizer`),
    is an InputError naming the checkpoint.
    """
    try:
        state_dict, meta = load_checkpoint(directory)
    except (FileNotFoundError, ValueError) as err:
        raise InputError(str(err), directory) from None
    check_tokenizer(meta, directory, tokenizer_sha256, tokenizer_path)
    return state_dict, meta


def check_tokenizer(meta: dict, checkpoint: str | os.PathLike, tokenizer_sha256: str | None,
                    tokenizer_path: str | os.PathLike | None) -> None:
    """InputError unless the checkpoint was trained with the tokenizer of checksum `tokenizer_sha256`."""
    stored = meta.get("tokenizer_sha256")
    if tokenizer_sha256 is None or stored == tokenizer_sha256:
        return
    trained_with = meta.get("extra", {}).get("tokenizer")
    hint = f" (it was trained with {trained_with})" if trained_with else ""
    raise InputError(f"checkpoint {checkpoint} was trained with a tokenizer of sha256 {stored}, but "
                     f"{tokenizer_path or 'the tokenizer given'} has sha256 {tokenizer_sha256}; token ids "
                     f"would not match. Pass the tokenizer the checkpoint was trained with{hint}")


def _identity(iterable: Iterable, **_: Any) -> Iterable:
    return iterable


class _TokenBlocks(torch.utils.data.Dataset):
    """Consecutive windows of a split as `(position, input_ids)` pairs, `block` per item: a DataLoader worker's unit."""

    def __init__(self, windows: TokenizedWindows, block: int):
        self.windows, self.block = windows, block

    def __len__(self) -> int:
        return -(-len(self.windows) // self.block)

    def __getitem__(self, item: int) -> list[tuple[int, np.ndarray]]:
        positions = range(item * self.block, min((item + 1) * self.block, len(self.windows)))
        # numpy, not tensors: a worker would hand each tensor over in its own shared-memory segment
        return [(p, ids.numpy()) for p, ids in zip(positions, self.windows.input_ids(positions))]


def _unchanged(item):
    return item


def tokenized_rows(windows: TokenizedWindows, workers: int = 0, block: int = TOKENIZE_BLOCK
                   ) -> Iterator[tuple[int, np.ndarray]]:
    """`(position, input_ids)` of every window in order, tokenized here (`workers=0`) or by DataLoader workers.

    Windows are read `block` at a time (one HDF5 read each). Workers tokenize blocks ahead of the
    caller (a few per worker at most) and the DataLoader keeps their order, so the rows are the
    same for any count.
    """
    blocks = _TokenBlocks(windows, block)
    if workers == 0:
        for item in range(len(blocks)):
            yield from blocks[item]
        return
    for rows in torch.utils.data.DataLoader(blocks, batch_size=None, num_workers=workers, collate_fn=_unchanged,
                                            prefetch_factor=4):
        yield from rows


def predict_split(model: torch.nn.Module, labeled: LabeledWindows, tokenizer, split: str | None, *,
                  batch_size: int = 8, device: str | torch.device = "cpu", max_length: int | None = None,
                  pad_to_multiple_of: int = 64, strands: Sequence[str] = ("forward", "reverse"),
                  progress: Callable[..., Iterable] = _identity, workers: int = 0) -> StrandPredictions:
    """Probabilities (n, features) of a split's windows and of their reverse complements (tokenized separately).

    Each window is padded to its own length rounded up to `pad_to_multiple_of` (pass the model's
    block size), so its prediction does not depend on `batch_size` (`genomics_bigbird.model.predict_rows`).
    `strands=("forward",)` skips the reverse strand (its array is then empty). `progress(iterable,
    total=, desc=)` may wrap the windows in a progress bar. `workers` DataLoader processes read and
    tokenize the windows while this one runs the model (0: all in this process); the predictions
    are the same for any count.
    """
    out = {}
    for strand in ("forward", "reverse"):
        if strand not in strands:
            out[strand] = np.zeros((0, 0), dtype=np.float32)
            continue
        windows = TokenizedWindows(labeled, tokenizer, split, reverse_complement=strand == "reverse",
                                   max_length=max_length)
        rows = tokenized_rows(windows, workers)
        batches = predict_rows(model, progress(rows, total=len(windows), desc=f"{strand} strand"),
                               pad_id=tokenizer.pad_id, batch_size=batch_size, device=device,
                               length_multiple=pad_to_multiple_of, max_tokens=max_length)
        out[strand] = collect_predictions(batches, len(windows))
    return StrandPredictions(forward=out["forward"], reverse=out["reverse"])


def task_metrics(task: str, labels: np.ndarray, probabilities: np.ndarray, feature_names: Sequence[str],
                 feature_groups: Sequence[str], threshold: float = 0.5) -> dict:
    """Metrics of one set of predictions: binary metrics for promoters, per-feature/per-group otherwise.

    Multi-label results hold `per_feature`, `summary` (overall as `all`, and per group) and the
    features without positives (or negatives), which have no AUROC and are left out of summaries.
    """
    labels, probabilities = np.asarray(labels), np.asarray(probabilities)
    if task in BINARY_TASKS:
        return binary_metrics(labels[:, 0], probabilities[:, 0].astype(np.float64), threshold)
    report = multilabel_metrics(labels, probabilities, feature_names, feature_groups)
    out = report.as_dict()
    out["n"] = int(labels.shape[0])
    out["n_excluded"] = len(report.excluded)
    return out


def selection_score(task: str, metrics: dict) -> float:
    """The number a best checkpoint is chosen by: AUROC (promoter) or mean per-feature AUROC."""
    if task in BINARY_TASKS:
        return float(metrics["auroc"])
    return float(metrics["summary"]["all"]["mean_auroc"])
