"""BERT MLM + NSP instances built on the fly from token shards (BigBird F.1).

Instance index space. Each document is cut, once and for all, at sentence boundaries into
`n = clip(round(document tokens / (max_length - 3)), 1, sentences)` chunks of about equal token
count, so an instance about fills `max_length`. Index i is one chunk (documents in shard order,
chunks in document order); `len(dataset)` is the number of chunks (~2 per F.1 document at 4096).

Instance i at epoch e is drawn from `numpy.random.default_rng([seed, e, i])` alone, so the same
(seed, epoch, index) gives the same instance in any process, DataLoader worker or rank:
- A is the chunk's first k sentences, k uniform over the chunk's inner sentence boundaries
  (over token positions when the chunk is one sentence);
- with probability 1/2, B is the rest of the chunk (`is_next = 1`); otherwise B comes from a
  uniformly chosen other document, starting at a uniformly chosen sentence, with as many tokens
  as the true continuation would have had (so the pair length does not give NSP away);
- if len(A) + len(B) > max_length - 3, the longer side is shortened until they fit (A loses
  tokens at its start, B at its end, so a true pair stays contiguous);
- `[CLS] A [SEP] B [SEP]`, segment 0 up to the first [SEP], 1 after;
- MLM: round(15%) of the A/B tokens (at least one; never [CLS]/[SEP]) are chosen; each chosen
  token becomes [MASK] with probability 0.8, a uniform random non-special token with 0.1, and
  stays with 0.1. `mlm_labels` holds the original id there and -100 elsewhere.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from genomics_bigbird.data.shards import ShardSet
from genomics_bigbird.errors import InputError
from genomics_bigbird.tokenizer import DNATokenizer

IGNORE_INDEX = -100
SPECIAL_TOKENS = 3  # [CLS], [SEP], [SEP]


def chunk_boundaries(sentence_lengths: np.ndarray, target: int) -> list[int]:
    """Split one document's sentences into ~equal-token chunks of about `target` tokens; return sentence cuts.

    Returns [0, c1, ..., len]: chunk j is sentences cuts[j]:cuts[j+1], never empty.
    """
    n_sentences = len(sentence_lengths)
    total = int(sentence_lengths.sum())
    n_chunks = int(min(max(1, round(total / target)), n_sentences))
    starts = np.cumsum(sentence_lengths) - sentence_lengths  # token position where each sentence begins
    cuts = [0]
    for k in range(1, n_chunks):
        cut = int(np.searchsorted(starts, k * total / n_chunks, side="left"))
        cuts.append(min(max(cut, cuts[-1] + 1), n_sentences - (n_chunks - k)))
    cuts.append(n_sentences)
    return cuts


def fit_pair(len_a: int, len_b: int, target: int) -> tuple[int, int]:
    """Lengths of A and B after shortening the longer one, token by token, until they fit in `target`."""
    if len_a + len_b <= target:
        return len_a, len_b
    new_a = min(len_a, max(target - len_b, (target + 1) // 2))
    return new_a, min(len_b, target - new_a)


class PretrainingDataset(Dataset):
    """Map-style MLM+NSP instances from a `gbb shards` directory; deterministic in (seed, epoch, index)."""

    def __init__(self, shards: str | os.PathLike | ShardSet, tokenizer: DNATokenizer, max_length: int = 4096,
                 seed: int = 0, mask_fraction: float = 0.15, in_memory: bool = False):
        self.shards = shards if isinstance(shards, ShardSet) else ShardSet(shards, in_memory=in_memory)
        self.shards.check_tokenizer(tokenizer)
        if max_length < SPECIAL_TOKENS + 2:
            raise InputError(f"max_length must be at least {SPECIAL_TOKENS + 2}, got {max_length}")
        if len(self.shards) < 2:
            raise InputError("next-sentence prediction needs at least 2 documents; the shards hold "
                             f"{len(self.shards)}", self.shards.directory)
        self.max_length = max_length
        self.seed = seed
        self.epoch = 0
        self.mask_fraction = mask_fraction
        self.vocab_size = len(tokenizer)
        self.cls_id, self.sep_id, self.mask_id = tokenizer.cls_id, tokenizer.sep_id, tokenizer.mask_id
        # BERT's random replacement draws ordinary tokens only; special ids need not be the lowest.
        self.regular_ids = np.setdiff1d(np.arange(self.vocab_size), np.asarray(tokenizer.special_ids))
        self.instances = self._index(max_length - SPECIAL_TOKENS)

    def _index(self, target: int) -> np.ndarray:
        """Rows (document, first sentence, end sentence) of every chunk; sentences local to the document."""
        rows = []
        for document, lengths in enumerate(self.shards.iter_sentence_lengths()):
            cuts = chunk_boundaries(lengths, target)
            rows.extend((document, lo, hi) for lo, hi in zip(cuts[:-1], cuts[1:]))
        return np.asarray(rows, dtype=np.int64).reshape(-1, 3)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch (masks, splits and random B differ per epoch; chunks do not)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.instances)

    def _sentences_tokens(self, document: int, first: int, end: int | None = None,
                          max_tokens: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(tokens, sentence start offsets relative to the first) of sentences first:end of a document, one read."""
        shard, local = self.shards.locate(document)
        doc_first, doc_end = shard.document_sentence_range(local)
        last = doc_end if end is None else doc_first + end
        offsets = shard.sentence_offsets[doc_first + first:last + 1]
        stop = int(offsets[-1]) if max_tokens is None else min(int(offsets[-1]), int(offsets[0]) + max_tokens)
        return shard.tokens(int(offsets[0]), stop).astype(np.int64), offsets[:-1] - offsets[0]

    def _random_segment(self, rng: np.random.Generator, document: int, want: int) -> np.ndarray:
        """Up to `want` tokens of another document, from a uniformly chosen sentence start."""
        other = int(rng.integers(0, len(self.shards) - 1))
        if other >= document:  # uniform over the documents other than this one
            other += 1
        lengths = self.shards.sentence_lengths(other)
        remaining = np.cumsum(lengths[::-1])[::-1]  # tokens from each sentence to the document end
        enough = np.flatnonzero(remaining >= want)
        start = int(rng.choice(enough)) if len(enough) else 0
        tokens, _ = self._sentences_tokens(other, start, max_tokens=want)
        return tokens

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"instance {index} out of range [0, {len(self)})")
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        document, first, end = (int(v) for v in self.instances[index])
        chunk, sentence_starts = self._sentences_tokens(document, first, end)
        splits = sentence_starts[1:] if len(sentence_starts) > 1 else np.arange(1, len(chunk))
        is_next = bool(rng.random() < 0.5) and len(splits) > 0
        a_len = int(rng.choice(splits)) if len(splits) else len(chunk)
        segment_a = chunk[:a_len]
        if is_next:
            segment_b = chunk[a_len:]
        else:
            segment_b = self._random_segment(rng, document, max(1, len(chunk) - a_len))
        target = self.max_length - SPECIAL_TOKENS
        len_a, len_b = fit_pair(len(segment_a), len(segment_b), target)
        segment_a, segment_b = segment_a[len(segment_a) - len_a:], segment_b[:len_b]

        input_ids = np.concatenate([[self.cls_id], segment_a, [self.sep_id], segment_b, [self.sep_id]])
        segment_ids = np.zeros(len(input_ids), dtype=np.int64)
        segment_ids[len_a + 2:] = 1
        labels = np.full(len(input_ids), IGNORE_INDEX, dtype=np.int64)
        candidates = np.concatenate([np.arange(1, len_a + 1), np.arange(len_a + 2, len_a + 2 + len_b)])
        n_masked = max(1, int(round(len(candidates) * self.mask_fraction)))
        chosen = rng.choice(candidates, size=n_masked, replace=False)
        labels[chosen] = input_ids[chosen]
        action = rng.random(n_masked)
        random_ids = self.regular_ids[rng.integers(0, len(self.regular_ids), size=n_masked)]
        input_ids[chosen] = np.where(action < 0.8, self.mask_id, np.where(action < 0.9, random_ids, input_ids[chosen]))
        return {
            "input_ids": torch.from_numpy(input_ids.astype(np.int64)),
            "segment_ids": torch.from_numpy(segment_ids),
            "attention_mask": torch.ones(len(input_ids), dtype=torch.bool),
            "mlm_labels": torch.from_numpy(labels),
            "is_next": torch.tensor(int(is_next), dtype=torch.long),
        }


def collate_pretraining(items: Sequence[dict[str, torch.Tensor]], pad_id: int,
                        pad_to_multiple_of: int | None = None) -> dict[str, torch.Tensor]:
    """Pad instances to the batch's longest (rounded up to `pad_to_multiple_of`); masks False, labels -100 there."""
    length = max(len(item["input_ids"]) for item in items)
    if pad_to_multiple_of:
        length = -(-length // pad_to_multiple_of) * pad_to_multiple_of
    batch = {
        "input_ids": torch.full((len(items), length), pad_id, dtype=torch.long),
        "segment_ids": torch.zeros((len(items), length), dtype=torch.long),
        "attention_mask": torch.zeros((len(items), length), dtype=torch.bool),
        "mlm_labels": torch.full((len(items), length), IGNORE_INDEX, dtype=torch.long),
    }
    for row, item in enumerate(items):
        n = len(item["input_ids"])
        for key in batch:
            batch[key][row, :n] = item[key]
    batch["is_next"] = torch.stack([item["is_next"] for item in items])
    return batch
