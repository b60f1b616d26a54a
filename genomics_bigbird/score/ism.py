"""In-silico saturation mutagenesis (ISM): every base of a region changed to every other base, scored as a variant.

The SNVs come from `genomics_bigbird.genome.mutagenesis.SaturationSource` and are scored by
`score_variants`, the routine of `gbb score-variants`: the same windows, the same
reverse-complement ensemble, the same shared padded length per variant. So each entry equals the
score of that SNV written in a VCF. The map holds, per position, base (A, C, G, T) and feature:

- `diff = alt - ref` and `log_odds_diff = logit(alt) - logit(ref)` (`genomics_bigbird.score.variants`);
- exactly 0 at the reference base (the reference compared with itself; marked in `reference_mask`);
- `importance`: mean |diff| over the substituted bases (three, or four where the reference is N),
  the per-position track of ISM plots.

The map is held in memory: 2 x positions x 4 x features float32 (a 1 kbp region x 919 features
is 29 MB); `only_features` restricts it to some features.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from genomics_bigbird.genome.mutagenesis import BASES, SaturationSource
from genomics_bigbird.score.variants import ScoredBatch


@dataclass
class SaturationMap:
    """ISM scores of `contig:[start, start + len(reference))` (0-based) for `features`."""

    contig: str
    start: int
    reference: str
    features: list[str]
    diff: np.ndarray            # (positions, 4, features) float32
    log_odds_diff: np.ndarray   # (positions, 4, features) float32

    @functools.cached_property
    def reference_mask(self) -> np.ndarray:
        """(positions, 4) bool: True at each position's reference base (none where the reference is N)."""
        return np.array([[base == ref for base in BASES] for ref in self.reference], dtype=bool).reshape(-1, 4)

    @functools.cached_property
    def importance(self) -> np.ndarray:
        """(positions, features): mean |diff| over the substituted (non-reference) bases."""
        substituted = ~self.reference_mask
        total = (np.abs(self.diff) * substituted[:, :, None]).sum(axis=1)
        return total / substituted.sum(axis=1)[:, None]


def only_features(batch: ScoredBatch, columns: Sequence[int]) -> ScoredBatch:
    """`batch` with the scores of `columns` only: pass it as `score_variants`'s `prepare` so that
    workers send only the features the map keeps."""
    return ScoredBatch(batch.variants, batch.ref[:, columns], batch.alt[:, columns], batch.progress)


def saturation_map(batches: Iterable[ScoredBatch], source: SaturationSource, features: Sequence[str]) -> SaturationMap:
    """Assemble the scored SNVs of `source` into a `SaturationMap`; the batches score `features` (see `only_features`)."""
    shape = (len(source), len(BASES), len(features))
    diff, log_odds = np.zeros(shape, dtype=np.float32), np.zeros(shape, dtype=np.float32)
    seen = np.zeros(shape[:2], dtype=bool)
    for batch in batches:
        positions = np.array([v.record_index for v in batch.variants], dtype=np.int64)
        columns = np.array([v.allele - 1 for v in batch.variants], dtype=np.int64)
        if not all(v.scored for v in batch.variants):
            raise ValueError("an ISM window could not be scored")  # the source only makes placeable SNVs
        if batch.ref.shape[1] != len(features):
            raise ValueError(f"the batches score {batch.ref.shape[1]} features, not the {len(features)} named")
        diff[positions, columns] = batch.diff
        log_odds[positions, columns] = batch.log_odds_diff
        seen[positions, columns] = True
    reference = source.reference()
    result = SaturationMap(source.contig, source.start, reference, list(features), diff, log_odds)
    if not np.array_equal(seen, ~result.reference_mask):
        raise ValueError("the batches do not cover every substitution of the region exactly once")
    return result
