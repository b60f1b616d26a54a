"""Hugging Face BigBird checkpoints in and out (e.g. GENA-LM's `gena-lm-bigbird-base-t2t`).

`from_hf(directory)` reads an HF model directory (`config.json` + `model.safetensors` or
`pytorch_model.bin`) into our encoder in HF's layout (post-LN, embedding LayerNorm, HF's
activation and heads, global blocks first and last); `to_hf(checkpoint, directory)` writes one of
our checkpoints in that layout back as a directory `transformers` loads with `from_pretrained`.
Only safetensors and torch are needed: `transformers` is not imported.

A `pytorch_model.bin` is a pickle, and unpickling can run code. It is read with
`torch.load(weights_only=True)`, which refuses anything but tensors and plain containers.

Imported block-sparse models run this project's random-block layout (`sparse_layout: random`),
the kind of layout they were trained with. HF's own eval mode draws no random blocks (see
`attention/hf_eval.py`); `sparse_layout: hf_eval` reproduces that for exact comparisons.
"""
from __future__ import annotations

import json
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors.torch import load_file
from torch import nn

from genomics_bigbird.model.checkpoint import WEIGHTS_NAME, load_checkpoint, write_model_directory
from genomics_bigbird.model.config import EncoderConfig
from genomics_bigbird.model.encoder import build_encoder
from genomics_bigbird.model.heads import build_classifier, build_masked_lm, build_pretraining_model

CONFIG_NAME = "config.json"
SAFETENSORS_NAME = WEIGHTS_NAME  # transformers and our checkpoints name the weights file alike
PICKLE_NAME = "pytorch_model.bin"
# architecture -> (our task, the HF heads it carries)
ARCHITECTURES = {"BigBirdForMaskedLM": ("mlm", ("mlm",)),
                 "BigBirdForPreTraining": ("pretraining", ("mlm", "nsp")),
                 "BigBirdForSequenceClassification": ("classification", ("classification",))}
ACTIVATIONS = {"gelu_new": "gelu_new", "gelu": "gelu"}   # HF hidden_act -> ours
IGNORED_KEYS = ("bert.embeddings.position_ids", "bert.embeddings.token_type_ids")
# tied copies old `.bin` files carry; each must equal the weight it is tied to
TIED_KEYS = {"cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
             "cls.predictions.decoder.bias": "cls.predictions.bias"}


class HFFormatError(ValueError):
    """An HF model directory we cannot import (or a checkpoint we cannot export); names the file and key."""

    def __init__(self, message: str, path: str | os.PathLike):
        self.message, self.path = message, str(path)
        super().__init__(f"{self.path}: {message}")


@dataclass
class HFImport:
    """An imported model: ours to save with `save_checkpoint(model=..., task=..., extra=...)`."""

    model: nn.Module
    config: EncoderConfig
    task: str                 # "mlm", "pretraining" or "classification"
    extra: dict[str, Any] = field(default_factory=dict)


def _pairs(num_layers: int, heads: tuple[str, ...]) -> list[tuple[str, str]]:
    """(our key, HF key) of every weight but the fused q/k/v, for the heads present."""
    pairs = [("encoder.token_embedding.weight", "bert.embeddings.word_embeddings.weight"),
             ("encoder.position_embedding.weight", "bert.embeddings.position_embeddings.weight"),
             ("encoder.segment_embedding.weight", "bert.embeddings.token_type_embeddings.weight")]
    pairs += [(f"encoder.embedding_norm.{p}", f"bert.embeddings.LayerNorm.{p}") for p in ("weight", "bias")]
    for i in range(num_layers):
        ours, theirs = f"encoder.layers.{i}", f"bert.encoder.layer.{i}"
        for module, hf_module in (("attention.out", "attention.output.dense"),
                                  ("attention_norm", "attention.output.LayerNorm"),
                                  ("mlp.up", "intermediate.dense"), ("mlp.down", "output.dense"),
                                  ("mlp_norm", "output.LayerNorm")):
            pairs += [(f"{ours}.{module}.{p}", f"{theirs}.{hf_module}.{p}") for p in ("weight", "bias")]
    modules = [("encoder.pooler", "bert.pooler")]
    if "mlm" in heads:
        modules += [("mlm_head.transform", "cls.predictions.transform.dense"),
                    ("mlm_head.norm", "cls.predictions.transform.LayerNorm")]
        pairs.append(("mlm_head.bias", "cls.predictions.bias"))
    if "nsp" in heads:
        modules.append(("nsp_head.classifier", "cls.seq_relationship"))
    if "classification" in heads:
        modules += [("head.dense", "classifier.dense"), ("head.classifier", "classifier.out_proj")]
    pairs += [(f"{ours}.{p}", f"{theirs}.{p}") for ours, theirs in modules for p in ("weight", "bias")]
    return pairs


def _qkv_keys(layer: int) -> tuple[str, list[str]]:
    """Our fused q/k/v key stem and HF's three separate ones, for one layer."""
    stem = f"bert.encoder.layer.{layer}.attention.self"
    return f"encoder.layers.{layer}.attention.qkv", [f"{stem}.{name}" for name in ("query", "key", "value")]


def read_hf_config(directory: str | os.PathLike) -> dict:
    """config.json of an HF model directory, checked to be a BigBird model we can run exactly."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise HFFormatError(f"not found: an HF model directory holds {CONFIG_NAME} and its weights", path)
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise HFFormatError(f"not valid JSON ({err})", path) from None
    if config.get("model_type") != "big_bird":
        raise HFFormatError(f"model_type is {config.get('model_type')!r}; only HF BigBird (big_bird) models "
                            f"convert", path)
    unsupported = {"use_bias": (False,), "rescale_embeddings": (True,), "is_decoder": (True,),
                   "add_cross_attention": (True,)}
    for key, bad in unsupported.items():
        if config.get(key) in bad:
            raise HFFormatError(f"key {key!r} is {config[key]!r}: not supported by this encoder", path)
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise HFFormatError(f"key 'position_embedding_type' is {config['position_embedding_type']!r}; "
                            f"only absolute positions convert", path)
    if config.get("hidden_act", "gelu_new") not in ACTIVATIONS:
        raise HFFormatError(f"key 'hidden_act' is {config['hidden_act']!r}; supported: {', '.join(ACTIVATIONS)}",
                            path)
    if config.get("attention_type", "block_sparse") not in ("block_sparse", "original_full"):
        raise HFFormatError(f"key 'attention_type' is {config['attention_type']!r}; expected block_sparse or "
                            f"original_full", path)
    return config


def encoder_config(hf: Mapping[str, Any], sparse_layout: str = "random") -> EncoderConfig:
    """Our EncoderConfig for an HF BigBird config.json (HF's layout; block-sparse -> BigBird, global ends)."""
    sparse = hf.get("attention_type", "block_sparse") == "block_sparse"
    return EncoderConfig(
        vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"], num_layers=hf["num_hidden_layers"],
        num_heads=hf["num_attention_heads"], intermediate_size=hf["intermediate_size"],
        max_position=hf["max_position_embeddings"], type_vocab_size=hf.get("type_vocab_size", 2),
        dropout=float(hf.get("hidden_dropout_prob", 0.1)), attention="bigbird" if sparse else "full",
        block_size=hf.get("block_size", 64), num_global_blocks=2, global_placement="ends", window_blocks=3,
        num_random_blocks=hf.get("num_random_blocks", 3), pad_id=hf.get("pad_token_id") or 0,
        layer_norm_eps=float(hf.get("layer_norm_eps", 1e-12)),
        initializer_range=float(hf.get("initializer_range", 0.02)), norm_position="post",
        embedding_layer_norm=True, activation=ACTIVATIONS[hf.get("hidden_act", "gelu_new")],
        classifier_head="hf", sparse_layout=sparse_layout if sparse else "random")


def read_hf_weights(directory: str | os.PathLike) -> tuple[dict[str, torch.Tensor], Path]:
    """(state_dict, file) of an HF directory: model.safetensors, else pytorch_model.bin read as weights only."""
    directory = Path(directory)
    safetensors_path, pickle_path = directory / SAFETENSORS_NAME, directory / PICKLE_NAME
    if safetensors_path.is_file():
        try:
            return load_file(str(safetensors_path)), safetensors_path
        except Exception as err:  # safetensors raises its own SafetensorError for damaged files
            raise HFFormatError(f"not a readable safetensors file ({err})", safetensors_path) from None
    if pickle_path.is_file():
        try:
            state = torch.load(pickle_path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
            what = f"it asks for {found.group(1)}" if found else "it holds objects other than tensors"
            raise HFFormatError(f"refused: loading this pickle would run code ({what}); it was not executed. "
                                f"Get the model as {SAFETENSORS_NAME}, or re-save its weights from a trusted "
                                f"source", pickle_path) from None
        except Exception as err:
            raise HFFormatError(f"not a readable PyTorch weights file ({type(err).__name__}: {err})",
                                pickle_path) from None
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise HFFormatError("does not hold a state_dict (a mapping of names to tensors)", pickle_path)
        return state, pickle_path
    raise HFFormatError(f"no weights: expected {SAFETENSORS_NAME} or {PICKLE_NAME} next to {CONFIG_NAME} "
                        f"(checkpoints sharded into several files are not read)", directory)


def _architecture(hf: Mapping[str, Any], weights: Mapping[str, torch.Tensor], config_path: Path) -> str:
    """The architecture config.json names, the MLM kind read from the weights (an NSP head or not)."""
    names = hf.get("architectures") or []
    if names and names[0] not in ARCHITECTURES:
        raise HFFormatError(f"architecture {names[0]!r} does not convert; supported: {', '.join(ARCHITECTURES)}",
                            config_path)
    if names[0:1] == ["BigBirdForSequenceClassification"] or not names and "classifier.out_proj.weight" in weights:
        return "BigBirdForSequenceClassification"
    # config.json files are often copied between MLM and MLM+NSP runs: the weights say which one this is
    return "BigBirdForPreTraining" if "cls.seq_relationship.weight" in weights else "BigBirdForMaskedLM"


def _import_state(weights: dict[str, torch.Tensor], config: EncoderConfig, heads: tuple[str, ...],
                  expected: Mapping[str, torch.Tensor], weights_path: Path,
                  dropped: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """Our state_dict from HF's, every key accounted for and every shape checked (`dropped`: prefixes left out)."""
    unused = {key for key in weights if key not in IGNORED_KEYS and not key.startswith(dropped)}
    for tied, source in TIED_KEYS.items():
        if tied in weights and source in weights and "mlm" in heads:
            if not torch.equal(weights[tied], weights[source]):
                raise HFFormatError(f"key {tied!r} differs from {source!r}: the MLM decoder is not tied to the "
                                    f"embeddings as HF BigBird's is", weights_path)
            unused.discard(tied)

    def take(key: str) -> torch.Tensor:
        if key not in weights:
            raise HFFormatError(f"key {key!r} is missing", weights_path)
        unused.discard(key)
        return weights[key]

    state = {ours: take(theirs) for ours, theirs in _pairs(config.num_layers, heads)}
    for layer in range(config.num_layers):
        ours, theirs = _qkv_keys(layer)
        for p in ("weight", "bias"):
            state[f"{ours}.{p}"] = torch.cat([take(f"{stem}.{p}") for stem in theirs])
    if unused:
        raise HFFormatError(f"key {sorted(unused)[0]!r} (and {len(unused) - 1} more) is not part of the "
                            f"architecture's BigBird layout", weights_path)
    names = dict(_pairs(config.num_layers, heads))
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            source = names.get(key, key)
            raise HFFormatError(f"key {source!r} has shape {tuple(tensor.shape)} but config.json implies "
                                f"{tuple(expected[key].shape)}", weights_path)
    return state


def from_hf(directory: str | os.PathLike, head: str | None = None, sparse_layout: str = "random") -> HFImport:
    """Import an HF BigBird model directory.

    `head=None` keeps the encoder and, where the architecture has them, the MLM (and NSP) heads;
    `head="classification"` imports a `BigBirdForSequenceClassification` with its head.
    `sparse_layout="hf_eval"` runs HF's eval-mode layout instead of drawn random blocks.
    """
    if head not in (None, "classification"):
        raise ValueError(f"head must be None or 'classification', got {head!r}")
    directory = Path(directory)
    hf = read_hf_config(directory)
    weights, weights_path = read_hf_weights(directory)
    architecture = _architecture(hf, weights, directory / CONFIG_NAME)
    task, heads = ARCHITECTURES[architecture]
    if head == "classification" and task != "classification":
        raise HFFormatError(f"architecture {architecture} has no classification head; import it without "
                            f"--head (its encoder fine-tunes with `gbb finetune --pretrained`)", directory / CONFIG_NAME)
    dropped = ()
    if task == "classification" and head is None:  # the encoder alone, for `gbb finetune --pretrained`
        task, heads, dropped = "encoder", (), ("classifier.",)
    try:
        config = encoder_config(hf, sparse_layout)
    except (KeyError, ValueError, TypeError) as err:
        raise HFFormatError(f"cannot build the encoder from it ({type(err).__name__}: {err})",
                            directory / CONFIG_NAME) from None
    labels = hf.get("id2label") or {}
    num_labels = len(labels) if labels else hf.get("num_labels", 2)
    if task == "classification":
        model = build_classifier(config, num_labels)
    elif task == "encoder":
        model = nn.ModuleDict({"encoder": build_encoder(config)})
    else:
        model = build_masked_lm(config) if task == "mlm" else build_pretraining_model(config)
    model.load_state_dict(_import_state(weights, config, heads, model.state_dict(), weights_path, dropped))
    extra: dict[str, Any] = {"hf_architecture": architecture, "hf_config": hf, "hf_source": str(directory),
                             "hf_weights": str(weights_path)}
    if task == "classification":
        extra["feature_names"] = [labels[key] for key in sorted(labels, key=int)] if labels else [
            f"LABEL_{i}" for i in range(num_labels)]
    return HFImport(model=model.eval(), config=config, task=task, extra=extra)


def check_exportable(config: EncoderConfig, path: str | os.PathLike) -> None:
    """HFFormatError unless HF BigBird computes exactly what this encoder computes."""
    layout = (config.norm_position, config.embedding_layer_norm)
    if layout != ("post", True):
        raise HFFormatError(f"the encoder is norm_position={config.norm_position}, embedding_layer_norm="
                            f"{config.embedding_layer_norm}; HF BigBird is post-LN with an embedding LayerNorm. "
                            f"Only models made in HF's layout export (imported with `gbb convert from-hf`, or "
                            f"trained from configs/model/hf_base.yaml)", path)
    if config.attention not in ("full", "bigbird"):
        raise HFFormatError(f"attention {config.attention!r} has no HF BigBird equivalent (full or bigbird only)", path)
    if config.attention == "bigbird" and (config.global_placement, config.num_global_blocks,
                                          config.window_blocks) != ("ends", 2, 3):
        raise HFFormatError(f"BigBird layout global_placement={config.global_placement}, num_global_blocks="
                            f"{config.num_global_blocks}, window_blocks={config.window_blocks}; HF BigBird's is "
                            f"ends, 2, 3", path)


def hf_config(config: EncoderConfig, architecture: str, base: Mapping[str, Any] | None = None,
              feature_names: list[str] | None = None, token_ids: Mapping[str, int] | None = None) -> dict:
    """config.json for `config`: `base` (an imported model's own config.json) updated with our values."""
    out = {key: value for key, value in (base or {}).items() if key not in ("id2label", "label2id")}
    out.update({
        "architectures": [architecture], "model_type": "big_bird", "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size, "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads, "intermediate_size": config.intermediate_size,
        "hidden_act": config.activation, "hidden_dropout_prob": config.dropout,
        "attention_probs_dropout_prob": out.get("attention_probs_dropout_prob", config.dropout),
        "max_position_embeddings": config.max_position, "type_vocab_size": config.type_vocab_size,
        "initializer_range": config.initializer_range, "layer_norm_eps": config.layer_norm_eps,
        "pad_token_id": config.pad_id, "use_bias": True, "rescale_embeddings": False,
        "position_embedding_type": "absolute", "tie_word_embeddings": True,
        "attention_type": "block_sparse" if config.attention == "bigbird" else "original_full",
        "block_size": config.block_size, "num_random_blocks": config.num_random_blocks})
    out.update(token_ids or {})
    if feature_names is not None:
        out["id2label"] = {str(i): name for i, name in enumerate(feature_names)}
        out["label2id"] = {name: i for i, name in enumerate(feature_names)}
        out.setdefault("problem_type", "multi_label_classification")  # our heads train with per-label BCE
    return out


def _export_state(state: Mapping[str, torch.Tensor], config: EncoderConfig,
                  heads: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """HF's state_dict from ours (the tied decoder left out, as transformers writes it)."""
    out = {theirs: state[ours] for ours, theirs in _pairs(config.num_layers, heads)}
    for layer in range(config.num_layers):
        ours, theirs = _qkv_keys(layer)
        for p in ("weight", "bias"):
            for stem, part in zip(theirs, state[f"{ours}.{p}"].chunk(3)):
                out[f"{stem}.{p}"] = part
    return {key: value.detach().to("cpu").contiguous() for key, value in out.items()}


def _export_heads(state: Mapping[str, torch.Tensor], meta: Mapping[str, Any], path: Path) -> tuple[str, tuple]:
    """(HF architecture, heads) of one of our checkpoints, read from the weights it holds."""
    if "head.classifier.weight" in state:
        if "head.dense.weight" not in state:
            raise HFFormatError("the classifier has a linear head on the tanh-pooled [CLS] (classifier_head: "
                                "pooled); HF's BigBirdForSequenceClassification needs classifier_head: hf", path)
        return "BigBirdForSequenceClassification", ("classification",)
    if "mlm_head.bias" in state:
        if "nsp_head.classifier.weight" in state:
            return "BigBirdForPreTraining", ("mlm", "nsp")
        return "BigBirdForMaskedLM", ("mlm",)
    raise HFFormatError(f"checkpoint of task {meta.get('task')!r} has neither an MLM nor a classification head; "
                        f"there is no HF BigBird model to write", path)


def to_hf(checkpoint: str | os.PathLike, directory: str | os.PathLike,
          token_ids: Mapping[str, int] | None = None, files: Mapping[str, bytes] | None = None) -> Path:
    """Write our checkpoint as an HF BigBird directory (config.json + model.safetensors), atomically.

    Pretraining checkpoints become `BigBirdForPreTraining` (MLM + NSP; `AutoModelForMaskedLM` loads
    them), imported MLMs `BigBirdForMaskedLM`, fine-tuned classifiers (with `classifier_head: hf`)
    `BigBirdForSequenceClassification` with their feature names as labels. `token_ids` adds
    config.json's special-token ids (pad_token_id, bos_token_id, ...); `files` ({name: bytes}) are
    written beside them (the tokenizer).
    """
    checkpoint = Path(checkpoint)
    state, meta = load_checkpoint(checkpoint)
    config = EncoderConfig.from_dict(meta["model_config"])
    check_exportable(config, checkpoint)
    architecture, heads = _export_heads(state, meta, checkpoint)
    extra = meta.get("extra", {})
    names = extra.get("feature_names") if architecture == "BigBirdForSequenceClassification" else None
    if names is None and architecture == "BigBirdForSequenceClassification":
        names = [f"LABEL_{i}" for i in range(state["head.classifier.weight"].shape[0])]
    tensors = _export_state(state, config, heads)
    config_json = hf_config(config, architecture, extra.get("hf_config"), names, token_ids)
    return write_model_directory(directory, tensors, {CONFIG_NAME: config_json}, dict(files or {}))
