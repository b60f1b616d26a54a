"""Heads and task models: a task model is (encoder, head); forward returns logits, never a loss.

The MLM decoder is tied to the token embedding by construction: the head owns the transform and the
output bias, and the embedding matrix is passed in at call time, so the weight exists once in the
state_dict and a checkpoint needs no re-tying.
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from genomics_bigbird.model.bins import BinClassifier
from genomics_bigbird.model.config import EncoderConfig
from genomics_bigbird.model.encoder import Encoder, activation_function, build_encoder, init_weights


class MLMHead(nn.Module):
    """BERT's masked-LM head: dense + GELU + LayerNorm, then the (tied) embedding matrix + bias."""

    def __init__(self, hidden_size: int, vocab_size: int, layer_norm_eps: float, initializer_range: float,
                 activation: str = "gelu"):
        super().__init__()
        self.transform = nn.Linear(hidden_size, hidden_size)
        self.norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(vocab_size))
        self.activation = activation_function(activation)
        self.apply(lambda module: init_weights(module, initializer_range))

    def forward(self, hidden: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        """hidden: (n, hidden), embedding: (vocab, hidden) -> logits (n, vocab)."""
        return F.linear(self.norm(self.activation(self.transform(hidden))), embedding, self.bias)


class PooledHead(nn.Module):
    """`num_labels` logits from the pooled [CLS] vector: NSP (2), promoter (1), chromatin (919)."""

    reads = "pooled"  # what SequenceClassifier passes in: the tanh-pooled [CLS] vector

    def __init__(self, hidden_size: int, num_labels: int, dropout: float, initializer_range: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)
        self.apply(lambda module: init_weights(module, initializer_range))

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """pooled: (batch, hidden) -> logits (batch, num_labels)."""
        return self.classifier(self.dropout(pooled))


class ClsHead(nn.Module):
    """HF's sequence-classification head: dense, activation, then a projection, on the [CLS] hidden state.

    It bypasses the encoder's tanh pooler (HF BigBird keeps that pooler but does not use it for
    classification). The projection is named `classifier`, like `PooledHead`'s, so a fine-tuned
    checkpoint's label count reads from `head.classifier.weight` whichever head it has.
    """

    reads = "cls"  # the final hidden state of [CLS], before any pooler

    def __init__(self, hidden_size: int, num_labels: int, dropout: float, initializer_range: float,
                 activation: str = "gelu_new"):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.activation = activation_function(activation)
        self.classifier = nn.Linear(hidden_size, num_labels)
        self.apply(lambda module: init_weights(module, initializer_range))

    def forward(self, cls_hidden: torch.Tensor) -> torch.Tensor:
        """cls_hidden: (batch, hidden) -> logits (batch, num_labels)."""
        x = self.activation(self.dense(self.dropout(cls_hidden)))
        return self.classifier(self.dropout(x))


class PretrainingModel(nn.Module):
    """Encoder + MLM head (at masked positions only) + NSP head."""

    def __init__(self, encoder: Encoder, mlm_head: MLMHead, nsp_head: PooledHead):
        super().__init__()
        self.encoder = encoder
        self.mlm_head = mlm_head
        self.nsp_head = nsp_head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, segment_ids: torch.Tensor,
                mlm_positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (mlm_logits (n_masked, vocab) in row-major order of `mlm_positions`, nsp_logits (batch, 2)).

        mlm_positions: (batch, length) bool, True where a token was chosen for prediction
        (usually `mlm_labels != -100`, so `mlm_labels[mlm_positions]` are the matching targets).
        """
        hidden, pooled = self.encoder(input_ids, attention_mask, segment_ids)
        mlm_logits = self.mlm_head(hidden[mlm_positions], self.encoder.token_embedding.weight)
        return mlm_logits, self.nsp_head(pooled)


class MaskedLanguageModel(nn.Module):
    """Encoder + MLM head at every position: HF's `BigBirdForMaskedLM`, e.g. an imported GENA-LM."""

    def __init__(self, encoder: Encoder, mlm_head: MLMHead):
        super().__init__()
        self.encoder = encoder
        self.mlm_head = mlm_head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                segment_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Return MLM logits (batch, length, vocab)."""
        hidden, _ = self.encoder(input_ids, attention_mask, segment_ids)
        return self.mlm_head(hidden, self.encoder.token_embedding.weight)


class SequenceClassifier(nn.Module):
    """Encoder + one classification head: promoter (1 logit) or chromatin profile (919 logits)."""

    def __init__(self, encoder: Encoder, head: PooledHead | ClsHead):
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                segment_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Return logits (batch, num_labels)."""
        hidden, pooled = self.encoder(input_ids, attention_mask, segment_ids)
        return self.head(pooled if self.head.reads == "pooled" else hidden[:, 0])


def build_mlm_head(config: EncoderConfig) -> MLMHead:
    """The masked-LM head of `config` (its activation is the encoder's)."""
    return MLMHead(config.hidden_size, config.vocab_size, config.layer_norm_eps, config.initializer_range,
                   config.activation)


def build_pretraining_model(config: EncoderConfig) -> PretrainingModel:
    """The MLM + NSP model of BigBird F.1 for `config`."""
    nsp_head = PooledHead(config.hidden_size, 2, config.dropout, config.initializer_range)
    return PretrainingModel(build_encoder(config), build_mlm_head(config), nsp_head)


def build_masked_lm(config: EncoderConfig) -> MaskedLanguageModel:
    """Encoder + MLM head (no NSP): the shape of HF's `BigBirdForMaskedLM`."""
    return MaskedLanguageModel(build_encoder(config), build_mlm_head(config))


def build_classifier(config: EncoderConfig, num_labels: int) -> nn.Module:
    """A sequence classifier with `num_labels` outputs (promoter: 1; chromatin: 919 by default).

    The head is the config's `classifier_head`: "pooled" (a linear layer on the tanh-pooled [CLS])
    or "hf" (`ClsHead`, HF's dense + activation + projection on the [CLS] hidden state).
    With `config.bin_bp` set, a `BinClassifier` that marks the window's central bin (pooled head
    only); fill its `token_bp` from the tokenizer (`set_token_bp`) before training.
    """
    if num_labels < 1:
        raise ValueError(f"num_labels must be at least 1, got {num_labels}")
    if config.bin_bp is None:
        if config.classifier_head == "hf":
            head = ClsHead(config.hidden_size, num_labels, config.dropout, config.initializer_range,
                           config.activation)
        else:
            head = PooledHead(config.hidden_size, num_labels, config.dropout, config.initializer_range)
        return SequenceClassifier(build_encoder(config), head)
    width = config.hidden_size * (2 if config.bin_pooling else 1)
    head = PooledHead(width, num_labels, config.dropout, config.initializer_range)
    return BinClassifier(build_encoder(config), head, vocab_size=config.vocab_size, bin_bp=config.bin_bp,
                         bin_segment=config.bin_segment, bin_pooling=config.bin_pooling)


def load_encoder_weights(model: PretrainingModel | SequenceClassifier,
                         state_dict: Mapping[str, torch.Tensor]) -> None:
    """Copy the `encoder.*` weights of a task model's state_dict into `model.encoder` (heads untouched).

    Every encoder weight must be present and match in shape: a partial load would silently
    fine-tune from random layers.
    """
    prefix = "encoder."
    encoder_state = {key[len(prefix):]: value for key, value in state_dict.items() if key.startswith(prefix)}
    if not encoder_state:
        raise ValueError("state_dict holds no encoder weights (no 'encoder.*' keys): "
                         "pass the state_dict of a pretraining or classifier checkpoint")
    model.encoder.load_state_dict(encoder_state, strict=True)
