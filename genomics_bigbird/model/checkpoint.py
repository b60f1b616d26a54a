"""Model checkpoints: `model.safetensors` + `checkpoint.json` in one directory, written atomically.

The JSON holds what is needed to rebuild and trust the weights: the model config, the task, the
tokenizer's sha256 (a head must never be paired with another tokenizer's ids) and task extras
(num_labels, feature names, ...). The model layer may not import the project's `atomic.py`, so the
temp-directory-and-rename is done here with os/tempfile.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
META_NAME = "checkpoint.json"
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DDP/DeepSpeed engines and torch.compile wrappers


def unwrap_model(model: nn.Module) -> nn.Module:
    """Return the plain module inside DeepSpeed/DDP (`.module`) and torch.compile (`._orig_mod`) wrappers."""
    while True:
        inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def _clean_key(key: str) -> str:
    """Drop wrapper segments from a state_dict key (also from compiled sub-modules: `encoder._orig_mod.x`)."""
    parts = [part for part in key.split(".") if part != "_orig_mod"]
    while parts and parts[0] == "module":
        parts = parts[1:]
    return ".".join(parts)


def _tensors_and_ties(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """CPU copies of the weights, each shared tensor once, and {tied key: the key that holds it}."""
    tensors: dict[str, torch.Tensor] = {}
    ties: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for key, value in unwrap_model(model).state_dict().items():
        key = _clean_key(key)
        identity = (value.device, value.data_ptr(), value.dtype, tuple(value.shape), value.stride())
        if value.numel() and identity in seen:
            ties[key] = seen[identity]
            continue
        seen[identity] = key
        tensors[key] = value.detach().to("cpu", copy=True).contiguous()
    return tensors, ties


def save_checkpoint(directory: str | os.PathLike, model: nn.Module, *, model_config: dict, task: str,
                    tokenizer_sha256: str, extra: dict[str, Any] | None = None,
                    files: dict[str, bytes] | None = None) -> Path:
    """Write `model`'s weights and metadata to `directory` atomically; return the directory.

    An existing checkpoint at `directory` is replaced only once the new one is complete. `files`
    ({name: bytes}) are written beside the weights, e.g. the tokenizer the model was imported with.
    """
    final = Path(directory)
    tensors, ties = _tensors_and_ties(model)
    meta = {"format_version": FORMAT_VERSION, "task": task, "model_config": model_config,
            "tokenizer_sha256": tokenizer_sha256, "tied_weights": ties, "extra": dict(extra or {})}
    return write_model_directory(final, tensors, {META_NAME: meta}, files)


def write_model_directory(directory: str | os.PathLike, tensors: dict[str, torch.Tensor],
                          documents: dict[str, dict], files: dict[str, bytes] | None = None) -> Path:
    """Write `model.safetensors`, JSON `documents` ({name: data}) and `files` ({name: bytes}) as one directory.

    Everything goes to a fresh temporary directory that is then renamed into place: an existing
    `directory` is replaced only once the new one is complete, and on any error it is left as it was.
    """
    final = Path(directory)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        save_file(tensors, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        for name, data in documents.items():
            (tmp / name).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        for name, data in (files or {}).items():
            (tmp / name).write_bytes(data)
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
            os.replace(final, old / final.name)
            os.replace(tmp, final)
            shutil.rmtree(old)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def load_checkpoint(directory: str | os.PathLike,
                    expected_tokenizer_sha256: str | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """Return (state_dict, metadata) of a checkpoint directory written by `save_checkpoint`.

    With `expected_tokenizer_sha256`, a checkpoint trained with another tokenizer is refused.
    """
    path = Path(directory)
    meta_path, weights_path = path / META_NAME, path / WEIGHTS_NAME
    for needed in (meta_path, weights_path):
        if not needed.is_file():
            raise FileNotFoundError(f"{needed} not found: {path} is not a complete checkpoint "
                                    f"(it needs {META_NAME} and {WEIGHTS_NAME})")
    meta = json.loads(meta_path.read_text())
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"{meta_path}: checkpoint format version {version!r}; this version of "
                         f"genomics-bigbird reads version {FORMAT_VERSION}")
    stored = meta.get("tokenizer_sha256")
    if expected_tokenizer_sha256 is not None and stored != expected_tokenizer_sha256:
        raise ValueError(f"{path}: the checkpoint was trained with the tokenizer of sha256 {stored} but the "
                         f"tokenizer given has sha256 {expected_tokenizer_sha256}; token ids would not "
                         f"match. Use the tokenizer the checkpoint was trained with, or train a model "
                         f"with this tokenizer")
    state_dict = load_file(str(weights_path))
    for tied, source in meta.get("tied_weights", {}).items():
        state_dict[tied] = state_dict[source]
    return state_dict, meta
