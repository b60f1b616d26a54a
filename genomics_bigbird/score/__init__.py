"""The score layer: variant effect scores from a fine-tuned classifier (ref/alt windows, RC-ensembled)."""
from genomics_bigbird.score.variants import ScoredBatch, logit, predict_windows, score_variants

__all__ = ["ScoredBatch", "logit", "predict_windows", "score_variants"]
