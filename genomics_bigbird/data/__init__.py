"""The data layer: the F.1 corpus, token shards, MLM+NSP instances, promoter and chromatin data sets."""
from genomics_bigbird.data.corpus import Document, iter_documents, write_corpus
from genomics_bigbird.data.pretraining import PretrainingDataset, collate_pretraining
from genomics_bigbird.data.shards import ShardSet, TokenShard, write_shards

__all__ = ["Document", "PretrainingDataset", "ShardSet", "TokenShard", "collate_pretraining", "iter_documents",
           "write_corpus", "write_shards"]
