"""HF BigBird import/export: random tiny `transformers` models built here (no network) are the reference."""
import json
import math

import pytest
import torch
import transformers  # the [hf] extra, which ./run test installs
from safetensors.torch import load_file, save_file

from genomics_bigbird.model import EncoderConfig, build_classifier, save_checkpoint
from genomics_bigbird.model.attention.hf_eval import hf_eval_key_blocks, hf_eval_plan
from genomics_bigbird.model.attention import block_sparse_attention
from genomics_bigbird.model.attention.reference import bigbird_ref
from genomics_bigbird.model.hf import HFFormatError, from_hf, to_hf

BLOCK, RANDOM = 8, 2           # HF runs full attention up to (5 + 2 x 2) x 8 = 72 tokens
LENGTH = 100                   # sparse in HF: 13 blocks once padded to 104
TINY = dict(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=256, block_size=BLOCK, num_random_blocks=RANDOM, pad_token_id=3,
            sep_token_id=2, initializer_range=0.2)  # large weights: layout differences show in the logits


def hf_model(kind, attention_type, tmp_path, seed=0, **config):
    torch.manual_seed(seed)
    cls = {"mlm": transformers.BigBirdForMaskedLM,
           "classification": transformers.BigBirdForSequenceClassification}[kind]
    model = cls(transformers.BigBirdConfig(attention_type=attention_type, **{**TINY, **config})).eval()
    directory = tmp_path / f"hf_{kind}_{attention_type}"
    model.save_pretrained(directory)
    return model, directory


def batch(length=LENGTH):
    """Two rows; the second right-padded with [PAD] after 90 tokens."""
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(5, 40, (2, length), generator=generator)
    mask = torch.ones(2, length, dtype=torch.long)
    mask[1, 90:] = 0
    input_ids[1, 90:] = TINY["pad_token_id"]
    return input_ids, mask


def hf_logits(model, input_ids, mask):
    with torch.no_grad():
        return model(input_ids=input_ids, attention_mask=mask).logits


def our_logits(model, input_ids, mask):
    with torch.no_grad():
        return model(input_ids, mask.bool())


def test_full_attention_mlm_logits_equal_hf(tmp_path):
    hf, directory = hf_model("mlm", "original_full", tmp_path)
    imported = from_hf(directory)
    assert imported.task == "mlm" and imported.config.attention == "full"
    input_ids, mask = batch()
    real = mask.bool()
    diff = (hf_logits(hf, input_ids, mask) - our_logits(imported.model, input_ids, mask))[real]
    assert diff.abs().max() < 1e-5


def test_block_sparse_mlm_logits_equal_hf_eval_mode(tmp_path):
    hf, directory = hf_model("mlm", "block_sparse", tmp_path)
    input_ids, mask = batch()
    real = mask.bool()
    expected = hf_logits(hf, input_ids, mask)
    assert hf.bert.attention_type == "block_sparse"          # HF did not fall back to full attention
    exact = from_hf(directory, sparse_layout="hf_eval")
    assert (expected - our_logits(exact.model, input_ids, mask))[real].abs().max() < 1e-4
    # The default import draws real random blocks, as the model was trained: not HF's eval answer.
    drawn = from_hf(directory)
    assert drawn.config.sparse_layout == "random" and drawn.config.global_placement == "ends"
    assert (expected - our_logits(drawn.model, input_ids, mask))[real].abs().max() > 1e-2


def test_short_inputs_run_full_attention_like_hf(tmp_path):
    hf, directory = hf_model("mlm", "block_sparse", tmp_path)
    input_ids, mask = batch(length=(5 + 2 * RANDOM) * BLOCK)        # the longest input HF keeps full
    expected = hf_logits(hf, input_ids, mask)
    assert hf.bert.attention_type == "original_full"
    ours = our_logits(from_hf(directory, sparse_layout="hf_eval").model, input_ids, mask)
    assert (expected - ours)[mask.bool()].abs().max() < 1e-4


@pytest.mark.parametrize("attention_type", ["original_full", "block_sparse"])
def test_sequence_classification_logits_equal_hf(tmp_path, attention_type):
    hf, directory = hf_model("classification", attention_type, tmp_path, num_labels=3,
                             id2label={0: "CTCF", 1: "DNase", 2: "H3K4me3"})
    input_ids, mask = batch()
    imported = from_hf(directory, head="classification", sparse_layout="hf_eval")
    assert imported.task == "classification" and imported.extra["feature_names"] == ["CTCF", "DNase", "H3K4me3"]
    tolerance = 1e-5 if attention_type == "original_full" else 1e-4
    assert (hf_logits(hf, input_ids, mask) - our_logits(imported.model, input_ids, mask)).abs().max() < tolerance
    encoder_only = from_hf(directory)                                # no --head: the encoder alone
    assert encoder_only.task == "encoder" and set(encoder_only.model.state_dict()) == {
        k for k in imported.model.state_dict() if k.startswith("encoder.")}


def hf_eval_dense_ref(q, k, v, num_blocks):
    """HF's eval rows by hand: global rows 0 and nb-1, windows, block 0 weighted 1 + r (float64)."""
    allowed = torch.zeros(num_blocks, num_blocks, dtype=torch.bool)
    allowed[[0, -1]] = True
    allowed[:, [0, -1]] = True
    for i in range(1, num_blocks - 1):
        allowed[i, i - 1:i + 2] = True
    weight = torch.ones(num_blocks, num_blocks, dtype=torch.float64)
    weight[1:-1, 0] = 1 + RANDOM
    token = torch.arange(q.shape[-2]) // BLOCK
    scores = q.double() @ k.double().transpose(-1, -2) / math.sqrt(q.shape[-1])
    scores = scores + weight.log()[token][:, token]
    scores = scores.masked_fill(~allowed[token][:, token], float("-inf"))
    return torch.softmax(scores, -1) @ v.double()


def test_hf_eval_layout_counts_block_zero_one_plus_r_times():
    num_blocks = 7
    rows = hf_eval_key_blocks(num_blocks, RANDOM)
    assert rows[0] == [0, 1, 2, 6, 0, 0] and rows[2] == [0, 2, 3, 4, 6, 0, 0] and rows[-1] == [0, 4, 5, 6, 0, 0]
    q, k, v = torch.randn(3, 1, 2, num_blocks * BLOCK, 4, generator=torch.Generator().manual_seed(2))
    plan = hf_eval_plan(num_blocks, 2, RANDOM, BLOCK)
    out = block_sparse_attention(q, k, v, plan.layout, BLOCK, backend="gather", plan=plan)
    assert torch.allclose(out.double(), hf_eval_dense_ref(q, k, v, num_blocks), atol=1e-5)
    # Without the repeated block 0 it is plain attention over the layout's union: a different answer.
    assert not torch.allclose(out.double(), bigbird_ref(q, k, v, plan.layout, BLOCK), atol=1e-3)


@pytest.mark.parametrize("kind", ["mlm", "classification"])
def test_to_hf_then_from_pretrained_gives_our_logits(tmp_path, kind):
    _, directory = hf_model(kind, "block_sparse", tmp_path, num_labels=2)
    imported = from_hf(directory, head="classification" if kind == "classification" else None,
                       sparse_layout="hf_eval")  # HF in eval mode runs this layout
    ours = save_checkpoint(tmp_path / "ours", imported.model, model_config=imported.config.to_dict(),
                           task=imported.task, tokenizer_sha256="0" * 64, extra=imported.extra)
    exported = to_hf(ours, tmp_path / "exported")
    auto = (transformers.AutoModelForMaskedLM if kind == "mlm" else
            transformers.AutoModelForSequenceClassification).from_pretrained(exported).eval()
    input_ids, mask = batch()
    diff = (hf_logits(auto, input_ids, mask) - our_logits(imported.model, input_ids, mask)).abs()
    assert (diff[mask.bool()] if kind == "mlm" else diff).max() < 1e-4   # MLM: real positions only
    # ... and HF -> ours -> HF leaves every tensor as it was
    before, after = load_file(str(directory / "model.safetensors")), load_file(str(exported / "model.safetensors"))
    assert before.keys() == after.keys()
    assert all(torch.equal(before[key], after[key]) for key in before)


def test_pretraining_checkpoint_of_ours_exports_as_bigbird_for_pretraining(tmp_path):
    config = EncoderConfig(vocab_size=40, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                           max_position=128, block_size=8, num_random_blocks=2, global_placement="ends",
                           norm_position="post", embedding_layer_norm=True, activation="gelu_new",
                           attention="full", pad_id=3)
    from genomics_bigbird.model import build_pretraining_model

    torch.manual_seed(0)
    model = build_pretraining_model(config).eval()
    ours = save_checkpoint(tmp_path / "pre", model, model_config=config.to_dict(), task="pretraining",
                           tokenizer_sha256="0" * 64)
    exported = to_hf(ours, tmp_path / "hf")
    assert json.loads((exported / "config.json").read_text())["architectures"] == ["BigBirdForPreTraining"]
    hf = transformers.BigBirdForPreTraining.from_pretrained(exported).eval()
    input_ids, mask = batch()
    positions = mask.bool()
    with torch.no_grad():
        mlm, nsp = model(input_ids, positions, torch.zeros_like(input_ids), positions)
        out = hf(input_ids=input_ids, attention_mask=mask)
    assert (out.prediction_logits[positions] - mlm).abs().max() < 1e-4
    assert (out.seq_relationship_logits - nsp).abs().max() < 1e-5


def test_old_bin_with_tied_decoder_and_position_ids_imports(tmp_path):
    hf, directory = hf_model("mlm", "original_full", tmp_path)
    state = load_file(str(directory / "model.safetensors"))
    state["cls.predictions.decoder.weight"] = state["bert.embeddings.word_embeddings.weight"].clone()
    state["cls.predictions.decoder.bias"] = state["cls.predictions.bias"].clone()
    state["bert.embeddings.position_ids"] = torch.arange(256)[None]
    (directory / "model.safetensors").unlink()
    torch.save(state, directory / "pytorch_model.bin")
    imported = from_hf(directory)
    input_ids, mask = batch()
    assert (hf_logits(hf, input_ids, mask) - our_logits(imported.model, input_ids, mask))[mask.bool()].abs().max() < 1e-5


class RunsCode:
    """Unpickling this opens (creates) a file: the kind of payload a hostile .bin carries."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_pickle_that_would_run_code_is_refused_not_run(tmp_path):
    _, directory = hf_model("mlm", "original_full", tmp_path)
    state = load_file(str(directory / "model.safetensors"))
    (directory / "model.safetensors").unlink()
    marker = tmp_path / "code_ran"
    torch.save({**state, "payload": RunsCode(marker)}, directory / "pytorch_model.bin")
    with pytest.raises(HFFormatError, match=r"pytorch_model\.bin: refused: .*io\.open.*not executed") as error:
        from_hf(directory)
    assert error.value.path.endswith("pytorch_model.bin")
    assert not marker.exists()
    torch.load(directory / "pytorch_model.bin", weights_only=False)  # the file really does run code
    assert marker.exists()


def test_unknown_architecture_missing_files_and_shapes_are_named(tmp_path):
    _, directory = hf_model("mlm", "original_full", tmp_path)
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "architectures": ["BigBirdForQuestionAnswering"]}))
    with pytest.raises(HFFormatError, match=r"config\.json: architecture 'BigBirdForQuestionAnswering'"):
        from_hf(directory)
    (directory / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    with pytest.raises(HFFormatError, match="model_type is 'bert'"):
        from_hf(directory)
    # a config.json copied from an MLM+NSP run: the weights (no NSP head) decide
    (directory / "config.json").write_text(json.dumps({**config, "architectures": ["BigBirdForPreTraining"]}))
    assert from_hf(directory).task == "mlm"
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(HFFormatError, match="has no classification head"):
        from_hf(directory, head="classification")
    state = load_file(str(directory / "model.safetensors"))
    key = "bert.encoder.layer.1.intermediate.dense.weight"
    save_file({**state, key: torch.zeros(65, 32)}, str(directory / "model.safetensors"))
    with pytest.raises(HFFormatError, match=rf"model\.safetensors: key '{key}' has shape \(65, 32\) .* \(64, 32\)"):
        from_hf(directory)
    del state["bert.pooler.weight"]
    save_file(state, str(directory / "model.safetensors"))
    with pytest.raises(HFFormatError, match="key 'bert.pooler.weight' is missing"):
        from_hf(directory)
    (directory / "model.safetensors").unlink()
    with pytest.raises(HFFormatError, match="no weights: expected model.safetensors or pytorch_model.bin"):
        from_hf(directory)
    with pytest.raises(HFFormatError, match=r"config\.json: not found"):
        from_hf(tmp_path / "nowhere")


def test_pre_ln_and_pooled_head_checkpoints_are_not_exported(tmp_path):
    config = EncoderConfig(vocab_size=40, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                           max_position=64, block_size=8)
    ours = save_checkpoint(tmp_path / "pre_ln", build_classifier(config, 2), model_config=config.to_dict(),
                           task="chromatin", tokenizer_sha256="0" * 64)
    with pytest.raises(HFFormatError, match="HF BigBird is post-LN"):
        to_hf(ours, tmp_path / "out")
    hf_layout = EncoderConfig(**{**config.to_dict(), "norm_position": "post", "embedding_layer_norm": True,
                                 "attention": "full"})
    ours = save_checkpoint(tmp_path / "pooled", build_classifier(hf_layout, 2), model_config=hf_layout.to_dict(),
                           task="chromatin", tokenizer_sha256="0" * 64)
    with pytest.raises(HFFormatError, match="classifier_head: hf"):
        to_hf(ours, tmp_path / "out")
    assert not (tmp_path / "out").exists()
