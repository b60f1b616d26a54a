import math

import numpy as np
import pytest
import torch

from genomics_bigbird.evaluate.ensemble import ensemble_models, predict_sequences, rc_ensemble
from genomics_bigbird.score import predict_windows


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
    preds = predict_sequences(model, CharTokenizer(), ["AAT", "GGGC", "AAAAAT"], batch_size=2, length_multiple=8)
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
    one = predict_sequences(model, CharTokenizer(), ["AAT"], length_multiple=8)
    two = predict_sequences(model, CharTokenizer(), ["AAT"], length_multiple=8)
    two.forward = two.forward * 0  # a second "model" that always predicts 0 on the forward strand
    mixed = ensemble_models([one, two])
    assert mixed.forward[0, 0] == pytest.approx(sigmoid(0.75) / 2)
    assert mixed.reverse[0, 0] == pytest.approx(0.5)


def test_a_too_long_window_keeps_its_middle_tokens():
    # 10 bases, room for 4 (max_length 6 with [CLS]/[SEP]): the model sees the middle "AAAA" only
    preds = predict_sequences(BaseCounter(), CharTokenizer(), ["TTTAAAATTT"], max_length=6, length_multiple=8)
    assert preds.forward[0, 0] == pytest.approx(sigmoid(2.0))
    assert preds.reverse[0, 0] == pytest.approx(sigmoid(-1.0))  # AAATTTTAAA -> middle TTTT


def test_a_bigbird_prediction_is_the_same_in_any_batch_and_equals_variant_scoring(tiny_bigbird):
    rng = np.random.default_rng(0)
    # 20 to 102 tokens with [CLS]/[SEP], padded to 24 ... 104: past 40 tokens sparse in 8-token blocks
    sequences = ["".join(rng.choice(list("ACGT"), n)) for n in (40, 70, 18, 100, 46, 41)]
    alone = predict_sequences(tiny_bigbird, CharTokenizer(), sequences, batch_size=1, length_multiple=8)
    for batch_size in (3, 8):
        batched = predict_sequences(tiny_bigbird, CharTokenizer(), sequences, batch_size=batch_size, length_multiple=8)
        np.testing.assert_allclose(batched.forward, alone.forward, rtol=0, atol=1e-6)
        np.testing.assert_allclose(batched.reverse, alone.reverse, rtol=0, atol=1e-6)
    backwards = predict_sequences(tiny_bigbird, CharTokenizer(), sequences[::-1], batch_size=4, length_multiple=8)
    np.testing.assert_allclose(backwards.ensemble[::-1], alone.ensemble, rtol=0, atol=1e-6)
    # `gbb evaluate` and `gbb score-variants` give one window one score
    scored = predict_windows(tiny_bigbird, CharTokenizer(), sequences, batch_size=5, length_multiple=8)
    np.testing.assert_allclose(scored, alone.ensemble, rtol=0, atol=1e-6)


def test_without_a_checkpoint_the_padding_multiple_must_be_given():
    # No silent default: a BigBird answer depends on how far its window is padded.
    with pytest.raises(ValueError, match="checkpoint="):
        predict_sequences(BaseCounter(), CharTokenizer(), ["AAT"])
