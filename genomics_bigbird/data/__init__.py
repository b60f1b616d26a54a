"""The data layer: the F.1 corpus, token shards, MLM+NSP instances, promoter and chromatin data sets.

Exports are imported on first use: the corpus and shards need no torch.
"""
from genomics_bigbird.lazy import lazy_exports

_EXPORTS = {"Document": "corpus", "iter_documents": "corpus", "write_corpus": "corpus",
            "PretrainingDataset": "pretraining", "collate_pretraining": "pretraining",
            "ShardSet": "shards", "TokenShard": "shards", "write_shards": "shards"}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
