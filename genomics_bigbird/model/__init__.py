"""Model layer: imports only torch, einops, numpy, safetensors and its own modules."""
from genomics_bigbird.model.checkpoint import load_checkpoint, save_checkpoint, unwrap_model
from genomics_bigbird.model.config import EncoderConfig
from genomics_bigbird.model.encoder import Encoder, build_encoder
from genomics_bigbird.model.heads import (
    ClsHead, MaskedLanguageModel, MLMHead, PooledHead, PretrainingModel, SequenceClassifier, build_classifier,
    build_masked_lm, build_pretraining_model, load_encoder_weights)
from genomics_bigbird.model.inference import collect_predictions, predict_rows

__all__ = ["ClsHead", "Encoder", "EncoderConfig", "MLMHead", "MaskedLanguageModel", "PooledHead",
           "PretrainingModel", "SequenceClassifier", "build_classifier", "build_encoder", "build_masked_lm",
           "build_pretraining_model", "collect_predictions",
           "load_checkpoint", "load_encoder_weights", "predict_rows", "save_checkpoint", "unwrap_model"]
