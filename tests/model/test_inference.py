"""Length-bucketed inference: a row's prediction never depends on its batch-mates, batch size or order."""
import numpy as np
import pytest
import torch

from genomics_bigbird.model import collect_predictions, predict_rows
from genomics_bigbird.model.inference import pad_rows, padded_length

VOCAB, PAD, CLS, SEP, BLOCK = 40, 0, 2, 3, 8  # as the tiny_bigbird fixture
LENGTHS = (9, 20, 42, 17, 70, 41, 100, 23, 44, 8)  # padded to 16, 24, 48, 24, 72, 48, 104, 24, 48, 8


def token_rows(lengths=LENGTHS, seed: int = 1) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    return [[CLS, *torch.randint(5, VOCAB, (n - 2,), generator=generator).tolist(), SEP] for n in lengths]


def alone(model: torch.nn.Module, row: list[int], length: int) -> np.ndarray:
    """The model run on one row padded to `length`: the answer every batching must reproduce."""
    input_ids, attention_mask = pad_rows([row], PAD, length)
    with torch.no_grad():
        return torch.sigmoid(model.eval()(input_ids, attention_mask)).numpy()[0]


def predict(model, rows, order=None, **options) -> np.ndarray:
    order = range(len(rows)) if order is None else order
    batches = predict_rows(model, ((i, rows[i]) for i in order), pad_id=PAD, length_multiple=BLOCK, **options)
    return collect_predictions(batches, len(rows))


def test_padding_to_a_longer_batch_changes_a_bigbird_prediction(tiny_bigbird):
    # why rows are bucketed: the same 42 tokens padded to 48 or to a batch-mate's 104 give different answers
    model, row = tiny_bigbird, token_rows()[2]
    assert np.abs(alone(model, row, 48) - alone(model, row, 104)).max() > 1e-3


def test_predictions_equal_each_row_alone_whatever_the_batch_size_and_order(tiny_bigbird):
    model, rows = tiny_bigbird, token_rows()
    expected = np.stack([alone(model, row, padded_length(len(row), BLOCK)) for row in rows])
    shuffled = np.random.default_rng(0).permutation(len(rows))
    for batch_size in (1, 2, 3, 7, 64):
        for order in (None, shuffled, shuffled[::-1]):
            got = predict(model, rows, order, batch_size=batch_size)
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert predict(model, rows, batch_size=3).dtype == np.float32


def test_padded_length_is_capped_at_max_tokens(tiny_bigbird):
    assert [padded_length(n, 8) for n in (1, 8, 9, 100)] == [8, 8, 16, 104]
    assert padded_length(100, 8, max_tokens=100) == 100
    model, rows = tiny_bigbird, token_rows((100, 9))
    got = predict(model, rows, batch_size=4, max_tokens=100)
    np.testing.assert_allclose(got[0], alone(model, rows[0], 100), atol=1e-6)


def test_a_full_bucket_is_run_before_the_input_ends(tiny_bigbird):
    consumed = []

    def rows():
        for i, row in enumerate(token_rows([12] * 10)):
            consumed.append(i)
            yield i, row

    batches = predict_rows(tiny_bigbird, rows(), pad_id=PAD, batch_size=4, length_multiple=BLOCK)
    indices, probabilities = next(batches)
    assert indices.tolist() == [0, 1, 2, 3] and len(consumed) == 4 and probabilities.shape == (4, 3)
    assert [b[0].tolist() for b in batches] == [[4, 5, 6, 7], [8, 9]]


def test_model_mode_and_autograd_are_left_as_they_were_between_batches(tiny_bigbird):
    model = tiny_bigbird.train()
    batches = predict_rows(model, enumerate(token_rows()), pad_id=PAD, batch_size=2, length_multiple=BLOCK)
    next(batches)
    assert model.training and torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
    list(batches)
    assert model.training


def test_a_row_longer_than_max_tokens_is_an_error(tiny_bigbird):
    with pytest.raises(ValueError, match="row 1 has 20 tokens, more than max_tokens=16"):
        list(predict_rows(tiny_bigbird, enumerate(token_rows((9, 20))), pad_id=PAD, batch_size=2,
                          length_multiple=BLOCK, max_tokens=16))
    with pytest.raises(ValueError, match="batch_size must be positive"):
        list(predict_rows(tiny_bigbird, [], pad_id=PAD, batch_size=0))
    assert collect_predictions(iter([]), 0).shape == (0, 0)
