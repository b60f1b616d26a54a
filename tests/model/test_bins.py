"""The central-bin classifier: which tokens it marks, and that every inference path reads it the same way."""
import pytest
import torch

from genomics_bigbird.model import (
    EncoderConfig, build_classifier, collect_predictions, load_checkpoint, predict_rows, save_checkpoint)
from genomics_bigbird.model.bins import BinClassifier, center_bin_mask, masked_mean
from genomics_bigbird.model.heads import SequenceClassifier

# ids 0-4 special (0 bp); id k >= 5 spells (k - 4) * 10 bp, so lengths are easy to add up by hand
TOKEN_BP = torch.tensor([0, 0, 0, 0, 0] + [10 * k for k in range(1, 36)])
CLS, SEP, PAD = 2, 3, 0


def bp(length: int) -> int:
    """The token id that spells `length` bp."""
    return length // 10 + 4


def test_marks_the_tokens_that_overlap_the_central_bin():
    # bases: 100 | 50 | 60 | 40 | 150 = 400 bp, bin [100, 300): tokens 2-5 (1-based), not the one ending at 100
    row = [CLS, bp(100), bp(50), bp(60), bp(40), bp(150), SEP]
    ids = torch.tensor([row + [PAD, PAD]])
    mask = torch.tensor([[True] * 7 + [False, False]])
    marked = center_bin_mask(ids, mask, TOKEN_BP, 200)
    assert marked.tolist() == [[False, False, True, True, True, True, False, False, False]]


def test_bin_of_an_odd_total_and_padding_do_not_shift_it():
    # 30 + 10 + 10 + 30 = 80 bp (odd half: 40), bin of 10 bp = [35, 45): only the second 10-bp token
    row = [CLS, bp(30), bp(10), bp(10), bp(30), SEP]
    alone = center_bin_mask(torch.tensor([row]), torch.ones(1, 6, dtype=torch.bool), TOKEN_BP, 10)
    padded = center_bin_mask(torch.tensor([row + [bp(300)] * 3]), torch.tensor([[True] * 6 + [False] * 3]),
                             TOKEN_BP, 10)
    assert alone.tolist() == [[False, False, True, True, False, False]]
    assert padded[:, :6].tolist() == alone.tolist() and not padded[:, 6:].any()


def test_masked_mean_matches_a_hand_average():
    hidden = torch.arange(12.0).view(1, 4, 3)
    mask = torch.tensor([[False, True, False, True]])
    assert masked_mean(hidden, mask).tolist() == [[(3 + 9) / 2, (4 + 10) / 2, (5 + 11) / 2]]
    assert masked_mean(hidden, torch.zeros(1, 4, dtype=torch.bool)).tolist() == [[0.0, 0.0, 0.0]]


def small_config(**changes) -> EncoderConfig:
    sizes = dict(vocab_size=40, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_position=64,
                 attention="bigbird", block_size=8, num_global_blocks=1, window_blocks=3, num_random_blocks=1,
                 attention_backend="gather")
    return EncoderConfig(**{**sizes, **changes})


def test_default_config_keeps_the_cls_classifier():
    assert type(build_classifier(small_config(), 3)) is SequenceClassifier


def test_bin_segment_is_segment_one_on_the_bin_tokens():
    torch.manual_seed(0)
    model = build_classifier(small_config(bin_bp=200), 3).eval()
    assert isinstance(model, BinClassifier)
    with pytest.raises(ValueError, match="token_bp is unset"):
        model(torch.tensor([[CLS, bp(100), SEP]]), torch.ones(1, 3, dtype=torch.bool))
    model.set_token_bp(TOKEN_BP)
    ids = torch.tensor([[CLS, bp(100), bp(50), bp(60), bp(40), bp(150), SEP]])
    mask = torch.ones_like(ids, dtype=torch.bool)
    segments = torch.tensor([[0, 0, 1, 1, 1, 1, 0]])
    with torch.no_grad():
        expected = model.head(model.encoder(ids, mask, segments)[1])
        assert torch.allclose(model(ids, mask), expected)
        assert not torch.allclose(model(ids, mask, torch.zeros_like(ids)), expected)


def test_bin_pooling_reads_cls_and_the_mean_of_the_bin_tokens():
    torch.manual_seed(0)
    model = build_classifier(small_config(bin_bp=200, bin_segment=False, bin_pooling=True), 3).eval()
    model.set_token_bp(TOKEN_BP)
    assert model.head.classifier.in_features == 64
    ids = torch.tensor([[CLS, bp(100), bp(50), bp(60), bp(40), bp(150), SEP]])
    mask = torch.ones_like(ids, dtype=torch.bool)
    with torch.no_grad():
        hidden, pooled = model.encoder(ids, mask)
        expected = model.head(torch.cat([pooled, hidden[:, 2:6].mean(dim=1)], dim=-1))
        assert torch.allclose(model(ids, mask), expected, atol=1e-6)


def test_checkpoint_carries_the_token_lengths_and_predict_rows_reads_it(tmp_path):
    torch.manual_seed(0)
    config = small_config(bin_bp=200, bin_pooling=True)
    model = build_classifier(config, 3).eval()
    model.set_token_bp(TOKEN_BP)
    save_checkpoint(tmp_path / "ckpt", model, model_config=config.to_dict(), task="chromatin", tokenizer_sha256="x")
    state, meta = load_checkpoint(tmp_path / "ckpt")
    loaded = build_classifier(EncoderConfig.from_dict(meta["model_config"]), 3).eval()
    loaded.load_state_dict(state)
    assert torch.equal(loaded.token_bp, TOKEN_BP)
    rows = [[CLS, bp(100), bp(50), bp(60), bp(40), bp(150), SEP], [CLS] + [bp(20)] * 20 + [SEP]]
    # each row padded to a multiple of 8 tokens: the padding marks nothing and moves no bin
    batched = collect_predictions(predict_rows(loaded, enumerate(rows), pad_id=PAD, batch_size=2,
                                               length_multiple=8), len(rows))
    for index, row in enumerate(rows):
        with torch.no_grad():
            alone = torch.sigmoid(model(torch.tensor([row]), torch.ones(1, len(row), dtype=torch.bool)))[0]
        assert torch.allclose(torch.as_tensor(batched[index]), alone, atol=1e-5)


def test_with_a_trained_tokenizer_the_marked_tokens_spell_the_central_bin(tmp_path):
    import numpy as np

    from genomics_bigbird.genome.sequence import reverse_complement
    from genomics_bigbird.score.variants import predict_windows
    from genomics_bigbird.tokenizer import DNATokenizer

    rng = np.random.default_rng(0)
    sequences = ["".join(rng.choice(list("ACGT"), size=1000)) for _ in range(40)]
    tokenizer = DNATokenizer.train(sequences, vocab_size=60, model_prefix=tmp_path / "bpe", seed=0)
    lengths = torch.as_tensor(tokenizer.token_bp())
    window = sequences[0]
    ids = tokenizer.encode(window)
    assert int(lengths[ids].sum()) == len(window) and lengths[list(tokenizer.special_ids)].sum() == 0
    row = torch.tensor([[tokenizer.cls_id, *ids, tokenizer.sep_id]])
    marked = center_bin_mask(row, torch.ones_like(row, dtype=torch.bool), lengths, 200)[0]
    spelled = tokenizer.decode(row[0][marked].tolist())
    start = window.index(spelled)  # the marked tokens are one stretch of the window ...
    assert start <= 400 and start + len(spelled) >= 600  # ... that covers bases 400-600
    assert len(spelled) < 200 + 2 * int(lengths.max())  # and no more than the tokens overlapping them

    torch.manual_seed(0)
    config = small_config(vocab_size=len(tokenizer), max_position=512, bin_bp=200, bin_pooling=True)
    model = build_classifier(config, 3).eval()
    model.set_token_bp(lengths)
    scored = predict_windows(model, tokenizer, sequences[:3], batch_size=2, length_multiple=8)
    for sequence, probabilities in zip(sequences[:3], scored):
        strands = []
        for text in (sequence, reverse_complement(sequence)):
            one = torch.tensor([[tokenizer.cls_id, *tokenizer.encode(text), tokenizer.sep_id]])
            with torch.no_grad():
                strands.append(torch.sigmoid(model(one, torch.ones_like(one, dtype=torch.bool)))[0])
        assert np.allclose(probabilities, ((strands[0] + strands[1]) / 2).numpy(), atol=1e-5)


@pytest.mark.parametrize("changes, message", [
    ({"classifier_head": "hf"}, "bin_bp needs classifier_head: pooled"),
    ({"type_vocab_size": 1}, "type_vocab_size >= 2"),
])
def test_bin_settings_the_model_cannot_run_are_refused_with_the_config(changes, message):
    # refused when the config is read, before any model is built or a run directory written
    with pytest.raises(ValueError, match=message):
        EncoderConfig(vocab_size=40, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                      max_position=64, block_size=8, bin_bp=200, **changes)
    EncoderConfig(vocab_size=40, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, max_position=64,
                  block_size=8, bin_bp=200, **{**changes, "bin_segment": False, "classifier_head": "pooled"})
