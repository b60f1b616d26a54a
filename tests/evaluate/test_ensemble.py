import math

import numpy as np
import pytest
import torch

from genomics_bigbird.evaluate.ensemble import ensemble_models, predict_sequences, rc_ensemble


class CharTokenizer:
    """One token per base: a real (if trivial) tokenizer with the DNATokenizer interface we use."""

    pad_id, unk_id, cls_id, sep_id, mask_id = 0, 1, 2, 3, 4
    ids = {"A": 5, "C": 6, "G": 7, "T": 8, "N": 9}

    def encode_batch(self, sequences):
        return [[self.ids[b] for b in s] for s in sequences]


class BaseCounter(torch.nn.Module):
    """logit = 0.5 * (#A) - 0.25 * (#T) over real tokens: its answer is computable by hand."""

    def forward(self, input_ids, attention_mask):
        a = ((input_ids == 5) & attention_mask).sum(dim=1).float()
        t = ((input_ids == 8) & attention_mask).sum(dim=1).float()
        return (0.5 * a - 0.25 * t)[:, None]


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_rc_ensemble_is_mean_of_both_strands():
    model = BaseCounter().train()
    preds = predict_sequences(model, CharTokenizer(), ["AAT", "GGGC", "AAAAAT"], batch_size=2)
    # forward: AAT -> 1.0 - 0.25; reverse complement ATT -> 0.5 - 0.5
    assert preds.forward[0, 0] == pytest.approx(sigmoid(0.75))
    assert preds.reverse[0, 0] == pytest.approx(sigmoid(0.0))
    assert preds.forward[1, 0] == pytest.approx(0.5) and preds.reverse[1, 0] == pytest.approx(0.5)
    # AAAAAT (padded in its batch of one) vs ATTTTT
    assert preds.forward[2, 0] == pytest.approx(sigmoid(2.25))
    assert preds.reverse[2, 0] == pytest.approx(sigmoid(0.5 - 1.25))
    np.testing.assert_allclose(preds.ensemble, (preds.forward + preds.reverse) / 2)
    np.testing.assert_allclose(rc_ensemble(preds.forward, preds.reverse), preds.ensemble)
    assert model.training, "eval mode must be restored"


def test_model_ensemble_averages():
    model = BaseCounter()
    one = predict_sequences(model, CharTokenizer(), ["AAT"])
    two = predict_sequences(model, CharTokenizer(), ["AAT"])
    two.forward = two.forward * 0  # a second "model" that always predicts 0 on the forward strand
    mixed = ensemble_models([one, two])
    assert mixed.forward[0, 0] == pytest.approx(sigmoid(0.75) / 2)
    assert mixed.reverse[0, 0] == pytest.approx(0.5)


def test_a_too_long_window_keeps_its_middle_tokens():
    # 10 bases, room for 4 (max_length 6 with [CLS]/[SEP]): the model sees the middle "AAAA" only
    preds = predict_sequences(BaseCounter(), CharTokenizer(), ["TTTAAAATTT"], max_length=6)
    assert preds.forward[0, 0] == pytest.approx(sigmoid(2.0))
    assert preds.reverse[0, 0] == pytest.approx(sigmoid(-1.0))  # AAATTTTAAA -> middle TTTT
