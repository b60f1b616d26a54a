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


def to_tokenizer_json(tokenizer) -> bytes:
    """The `DNATokenizer`'s model as HF tokenizer.json bytes: an HF file as it is; a sentencepiece BPE converted.

    The conversion gives the same ids: sentencepiece merges, anywhere in a sequence, the adjacent
    pair whose concatenation is the best-scored piece (leftmost first), so every split of a piece
    into two pieces becomes one merge, ranked by the piece's score. A normalizer does the project's
    normalization (upper case, other codes to N), so `transformers` users may pass raw sequences,
    and the post-processor adds [CLS] ... [SEP] as the data layer does.
    """
    if tokenizer.kind == "hf":
        return tokenizer.model_proto
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, processors

    special = set(tokenizer.special_ids)
    vocab = {tokenizer.id_to_piece(i): i for i in range(len(tokenizer))}
    ranked = sorted((i for i in range(len(tokenizer)) if i not in special and len(tokenizer.id_to_piece(i)) > 1),
                    key=lambda i: (-tokenizer._backend.score(i), i))
    merges = []
    for i in ranked:
        piece = tokenizer.id_to_piece(i)
        merges += [(piece[:cut], piece[cut:]) for cut in range(1, len(piece))
                   if piece[:cut] in vocab and piece[cut:] in vocab]
    model = models.BPE(vocab=vocab, merges=merges, unk_token=tokenizer.id_to_piece(tokenizer.unk_id))
    converted = Tokenizer(model)
    converted.add_special_tokens([tokenizer.id_to_piece(i) for i in sorted(special)])
    converted.normalizer = normalizers.Sequence(
        [normalizers.Replace(low, low.upper()) for low in "acgt"] + [normalizers.Replace(Regex("[^ACGT]"), "N")])
    converted.post_processor = processors.BertProcessing(
        (tokenizer.id_to_piece(tokenizer.sep_id), tokenizer.sep_id),
        (tokenizer.id_to_piece(tokenizer.cls_id), tokenizer.cls_id))
    converted.decoder = decoders.Fuse()
    return converted.to_str().encode("utf-8")
