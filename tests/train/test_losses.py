import math

import pytest
import torch

from genomics_bigbird.train.losses import (
    bce_with_pos_weight, mlm_accuracy, mlm_loss, nsp_accuracy, nsp_loss, pretraining_loss)


def test_mlm_loss_ignores_unpredicted_positions():
    # two predicted tokens with logits whose softmax is known: log-softmax of [0, ln 3] at index 1
    logits = torch.tensor([[0.0, math.log(3.0)], [5.0, -5.0], [0.0, 0.0]])
    labels = torch.tensor([1, -100, 0])
    expected = (-math.log(3 / 4) - math.log(1 / 2)) / 2
    assert mlm_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_mlm_loss_accepts_full_sequence_logits_and_no_masked_token():
    logits = torch.zeros(2, 3, 4, requires_grad=True)
    labels = torch.full((2, 3), -100)
    labels[1, 2] = 3
    assert mlm_loss(logits, labels).item() == pytest.approx(math.log(4))
    empty = mlm_loss(logits, torch.full((2, 3), -100))
    assert empty.item() == 0.0
    empty.backward()  # still differentiable, so a batch without masks does not break training
    assert logits.grad is not None and float(logits.grad.abs().sum()) == 0.0


def test_nsp_and_pretraining_loss_sum():
    nsp_logits = torch.tensor([[math.log(4.0), 0.0], [0.0, 0.0]])
    is_next = torch.tensor([0, 1])
    expected_nsp = (-math.log(4 / 5) - math.log(1 / 2)) / 2
    assert nsp_loss(nsp_logits, is_next).item() == pytest.approx(expected_nsp, rel=1e-6)
    mlm_logits = torch.zeros(3, 8)
    mlm_labels = torch.tensor([1, 2, 3])
    out = pretraining_loss(mlm_logits, mlm_labels, nsp_logits, is_next)
    assert out.mlm.item() == pytest.approx(math.log(8), rel=1e-6)
    assert out.nsp.item() == pytest.approx(expected_nsp, rel=1e-6)
    assert out.total.item() == pytest.approx(math.log(8) + expected_nsp, rel=1e-6)


def test_bce_with_pos_weight_equals_its_formula():
    logits = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 0.0, 4.0]])
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    w = 8.0
    terms = []
    for x, y in zip(logits.flatten().tolist(), targets.flatten().tolist()):
        p = 1 / (1 + math.exp(-x))
        terms.append(-(w * y * math.log(p) + (1 - y) * math.log(1 - p)))
    expected = sum(terms) / len(terms)
    assert bce_with_pos_weight(logits, targets).item() == pytest.approx(expected, rel=1e-6)
    # pos_weight 1 is the plain BCE
    plain = sum(-(y * math.log(1 / (1 + math.exp(-x))) + (1 - y) * math.log(1 - 1 / (1 + math.exp(-x))))
                for x, y in zip(logits.flatten().tolist(), targets.flatten().tolist())) / 6
    assert bce_with_pos_weight(logits, targets, pos_weight=1.0).item() == pytest.approx(plain, rel=1e-6)


def test_accuracies_count_correct_predictions():
    logits = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    assert mlm_accuracy(logits, torch.tensor([1, 1, -100, 0])) == (2, 3)
    assert nsp_accuracy(logits, torch.tensor([1, 0, 0, 0])) == (3, 4)
