"""Hugging Face `tokenizers` BPE files (`tokenizer.json`) as a `DNATokenizer` backend, e.g. GENA-LM's.

The file decides everything the model was trained with: the vocabulary and merges, the ids of
[PAD] [UNK] [CLS] [SEP] [MASK] (GENA-LM: [UNK]=0 [CLS]=1 [SEP]=2 [PAD]=3 [MASK]=4, so nothing may
assume [PAD] is 0), its own normalizer and pre-tokenizer (GENA-LM turns runs of 10 or more N into
one `-` token and splits there). The project's normalization (upper case, other codes to N) runs
first, as it does for sentencepiece models; the file's post-processor ([CLS] A [SEP]) is not
applied, because the data layer adds special tokens itself.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from genomics_bigbird.errors import InputError

SPECIAL_TOKENS = {"pad_id": "[PAD]", "unk_id": "[UNK]", "cls_id": "[CLS]", "sep_id": "[SEP]", "mask_id": "[MASK]"}
MAX_VOCAB = 65535  # token ids are uint16 on disk


class HFJsonBackend:
    """A `tokenizers.Tokenizer` read from tokenizer.json bytes, with its special-token ids."""

    def __init__(self, data: bytes, path: str | os.PathLike | None = None):
        from tokenizers import Tokenizer

        where = None if path is None else Path(path)
        try:
            spec = json.loads(data)
            self._tokenizer = Tokenizer.from_str(data.decode("utf-8"))
        except Exception as err:  # tokenizers raises a plain Exception for malformed files
            raise InputError(f"not a Hugging Face tokenizer.json ({type(err).__name__}: {err})", where) from None
        model_type = (spec.get("model") or {}).get("type")
        if model_type != "BPE":
            raise InputError(f"the tokenizer model is {model_type!r}; DNA tokenizers here are BPE", where)
        vocab = self._tokenizer.get_vocab(with_added_tokens=True)
        missing = [token for token in SPECIAL_TOKENS.values() if token not in vocab]
        if missing:
            raise InputError(f"the tokenizer has no {', '.join(missing)} token; a DNA language model needs "
                             f"{' '.join(SPECIAL_TOKENS.values())}", where)
        if len(vocab) > MAX_VOCAB:
            raise InputError(f"the tokenizer has {len(vocab)} tokens; at most {MAX_VOCAB} fit uint16 ids", where)
        self.ids = {name: vocab[token] for name, token in SPECIAL_TOKENS.items()}
        added = {token["id"] for token in spec.get("added_tokens", []) if token.get("special")}
        self.special_ids = tuple(sorted(added | set(self.ids.values())))
        self.size = self._tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, normalized: list[str], num_threads: int) -> list[list[int]]:
        """Token ids of already-normalized sequences (the file's normalizer still runs)."""
        if num_threads > 1 and len(normalized) > 1:
            return [e.ids for e in self._tokenizer.encode_batch(normalized, add_special_tokens=False)]
        return [self._tokenizer.encode(s, add_special_tokens=False).ids for s in normalized]

    def id_to_piece(self, token_id: int) -> str:
        piece = self._tokenizer.id_to_token(int(token_id))
        if piece is None:
            raise IndexError(f"token id {token_id} is outside the vocabulary of {self.size}")
        return piece

    def decode(self, ids) -> str:
        """Bases of the ids; special tokens (GENA-LM's `-` for a run of N among them) decode to nothing."""
        special = set(self.special_ids)
        return "".join(self.id_to_piece(i) for i in ids if int(i) not in special)
