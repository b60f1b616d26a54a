"""A BPE tokenizer for DNA over the alphabet A, C, G, T, N (BigBird F.1): sentencepiece, or an HF tokenizer.json.

In models trained here ids 0-4 are reserved: [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4 (an HF
tokenizer.json brings its own; read them from the tokenizer, never assume them). [PAD] and [UNK] are
sentencepiece's own pad/unk pieces and [CLS]/[SEP]/[MASK] are control symbols, so `encode` never
emits them from text (a literal "[CLS]" in a sequence is normalized to N's first anyway). Input is
normalized before encoding and training (upper case; every code other than A/C/G/T becomes N), and
the model uses identity normalization with no dummy prefix, so `decode(encode(s)) == normalize(s)`.
"""
from __future__ import annotations

import hashlib
import io
import itertools
import logging
import math
import os
import re
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import sentencepiece as spm

from genomics_bigbird.atomic import atomic_write
from genomics_bigbird.errors import InputError
from genomics_bigbird.genome.sequence import normalize

log = logging.getLogger(__name__)

ALPHABET = "ACGTN"
SPECIAL_PIECES = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = range(5)
# Longest sentence sentencepiece keeps while training (longer ones are skipped silently by
# sentencepiece, so we raise the limit well above the corpus's 1000 bp sentences).
MAX_SENTENCE_BP = 1 << 16


def _is_path(item) -> bool:
    """Corpus file paths are Path objects or strings with a non-letter (`/`, `.`); sequences are letters only."""
    return isinstance(item, os.PathLike) or (isinstance(item, str) and not item.strip().isalpha())


def _iter_texts(files_or_iterable: str | os.PathLike | Iterable) -> Iterator[str]:
    """Yield the raw lines of corpus files and the sequences given directly, in order."""
    if isinstance(files_or_iterable, (str, os.PathLike)):
        files_or_iterable = [files_or_iterable]
    for item in files_or_iterable:
        if not _is_path(item):
            yield item
            continue
        if not Path(item).is_file():
            raise InputError("corpus file not found", item)
        with open(item) as handle:
            yield from handle


def _iter_sentences(files_or_iterable: str | os.PathLike | Iterable, seen: set[str]) -> Iterator[str]:
    """Yield normalized, non-empty sentences from corpus files (one per line) and/or sequences."""
    for text in _iter_texts(files_or_iterable):
        sentence = normalize(text.strip())
        if sentence:
            seen.update(sentence)
            yield sentence


def sample_sentences(sentences: Iterable[str], size: int, rng: np.random.Generator) -> list[str]:
    """Return a uniform sample of `size` sentences (all when fewer), in one pass (reservoir, Li's algorithm L).

    sentencepiece's own `input_sentence_size` sampling ignores the seed, so we sample here.
    """
    iterator = iter(sentences)
    reservoir = list(itertools.islice(iterator, size))
    if len(reservoir) < size:
        return reservoir
    weight = math.exp(math.log(rng.random()) / size)
    skip = math.floor(math.log(rng.random()) / math.log1p(-weight))
    for sentence in iterator:
        if skip > 0:
            skip -= 1
            continue
        reservoir[int(rng.integers(size))] = sentence
        weight *= math.exp(math.log(rng.random()) / size)
        skip = math.floor(math.log(rng.random()) / math.log1p(-weight)) if weight < 1 else 0
    return reservoir


def _check_bases(seen: set[str]) -> None:
    """Raise InputError when the training sentences lack one of the four bases (not DNA, or not enough)."""
    missing = [base for base in "ACGT" if base not in seen]
    if seen and missing:
        raise InputError(f"the tokenizer corpus has no {'/'.join(missing)} bases; train on DNA sequence")


class SentencePieceBackend:
    """A sentencepiece BPE model with this project's reserved ids 0-4."""

    ids = {"pad_id": PAD_ID, "unk_id": UNK_ID, "cls_id": CLS_ID, "sep_id": SEP_ID, "mask_id": MASK_ID}
    special_ids = (PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID)

    def __init__(self, model_proto: bytes, path: str | os.PathLike | None = None):
        self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        pieces = [self._sp.id_to_piece(i) for i in range(len(SPECIAL_PIECES))]
        if tuple(pieces) != SPECIAL_PIECES:
            raise InputError(f"not a DNA tokenizer model: ids 0-4 are {pieces}, expected {list(SPECIAL_PIECES)}",
                             path)
        self.size = self._sp.get_piece_size()

    def encode(self, normalized: list[str], num_threads: int) -> list[list[int]]:
        return self._sp.encode(normalized, num_threads=num_threads)

    def id_to_piece(self, token_id: int) -> str:
        return self._sp.id_to_piece(int(token_id))

    def decode(self, ids) -> str:
        return self._sp.decode([int(i) for i in ids])

    def score(self, token_id: int) -> float:
        return self._sp.get_score(token_id)


class DNATokenizer:
    """A DNA BPE model: `encode` (no specials), `decode`, special-token ids and the model file's checksum.

    Two kinds of model file give the same API: a sentencepiece `.model` (what `train` writes; ids 0-4
    reserved) and a Hugging Face `tokenizer.json` (`hf_json.py`; e.g. GENA-LM's, whose special ids
    are read from the file). `sha256` is the checksum of the file's bytes either way.
    """

    def __init__(self, model_proto: bytes, path: str | os.PathLike | None = None, num_threads: int = 1,
                 kind: str = "sentencepiece"):
        self.model_proto = model_proto  # the model file's bytes
        self.path = None if path is None else Path(path)
        self.num_threads = num_threads
        self.kind = kind
        self.sha256 = hashlib.sha256(model_proto).hexdigest()
        if kind == "sentencepiece":
            self._backend = SentencePieceBackend(model_proto, path)
        elif kind == "hf":
            from genomics_bigbird.tokenizer.hf_json import HFJsonBackend

            self._backend = HFJsonBackend(model_proto, path)
        else:
            raise ValueError(f"kind must be sentencepiece or hf, got {kind!r}")
        ids = self._backend.ids
        self.pad_id, self.unk_id, self.cls_id = ids["pad_id"], ids["unk_id"], ids["cls_id"]
        self.sep_id, self.mask_id = ids["sep_id"], ids["mask_id"]
        self.special_ids = tuple(self._backend.special_ids)

    @classmethod
    def train(cls, files_or_iterable: str | os.PathLike | Iterable, vocab_size: int = 32000,
              model_prefix: str | os.PathLike = "dna_bpe", seed: int = 0,
              input_sentence_size: int = 1_000_000, num_threads: int = 1,
              max_piece_length: int = 16) -> "DNATokenizer":
        """Train a BPE model on corpus files (one sentence per line) or sentences; write PREFIX.model/.vocab.

        `input_sentence_size` sentences (0: all) are sampled uniformly with `seed` when the corpus
        is larger; the same inputs and seed give the same model bytes.
        """
        if vocab_size < len(SPECIAL_PIECES) + len(ALPHABET) or vocab_size > 65535:
            raise InputError(f"vocab size must be in [{len(SPECIAL_PIECES) + len(ALPHABET)}, 65535] "
                             f"(token ids are uint16 on disk), got {vocab_size}")
        if input_sentence_size < 0:
            raise InputError(f"input sentence size must be 0 (all) or positive, got {input_sentence_size}")
        seen: set[str] = set()
        writer = io.BytesIO()
        sentences = _iter_sentences(files_or_iterable, seen)
        if input_sentence_size > 0:
            sentences = iter(sample_sentences(sentences, input_sentence_size, np.random.default_rng(seed)))
        spm.set_random_generator_seed(seed)  # for any sampling inside sentencepiece (process-wide)
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=sentences, model_writer=writer,
                model_type="bpe", vocab_size=vocab_size, character_coverage=1.0,
                pad_id=PAD_ID, pad_piece="[PAD]", unk_id=UNK_ID, unk_piece="[UNK]", bos_id=-1, eos_id=-1,
                control_symbols=list(SPECIAL_PIECES[2:]),
                # sentencepiece drops a required char that is also frequent in the corpus when all
                # five are listed; N alone is enough (bases are always present, checked below).
                required_chars="N",
                add_dummy_prefix=False, normalization_rule_name="identity", remove_extra_whitespaces=False,
                split_by_whitespace=False, max_sentence_length=MAX_SENTENCE_BP,
                max_sentencepiece_length=max_piece_length,
                num_threads=num_threads, minloglevel=2)
        except RuntimeError as err:
            _check_bases(seen)
            too_high = re.search(r"Vocabulary size too high \((\d+)\).*<= (\d+)", str(err))
            if too_high:
                raise InputError(f"vocab size {too_high.group(1)} is too large for this corpus: "
                                 f"use --vocab-size {too_high.group(2)} or less, or a larger corpus") from None
            if not seen:
                raise InputError("the tokenizer corpus has no sentences") from None
            raise
        _check_bases(seen)
        proto = writer.getvalue()
        prefix = Path(model_prefix)
        tokenizer = cls(proto, path=prefix.with_name(prefix.name + ".model"), num_threads=num_threads)
        with atomic_write(tokenizer.path, "wb") as handle:
            handle.write(proto)
        with atomic_write(prefix.with_name(prefix.name + ".vocab")) as handle:
            for i in range(len(tokenizer)):
                handle.write(f"{tokenizer.id_to_piece(i)}\t{tokenizer._backend.score(i):g}\n")
        log.info("trained %d-token BPE on %s (sha256 %s)", len(tokenizer), tokenizer.path, tokenizer.sha256[:12])
        return tokenizer

    @classmethod
    def load(cls, path: str | os.PathLike, num_threads: int = 1) -> "DNATokenizer":
        """Load a sentencepiece model written by `train` (PREFIX.model) or an HF `tokenizer.json`."""
        path = Path(path)
        if not path.is_file():
            raise InputError("tokenizer model not found", path)
        kind = "hf" if path.suffix.lower() == ".json" else "sentencepiece"
        try:
            return cls(path.read_bytes(), path=path, num_threads=num_threads, kind=kind)
        except RuntimeError as err:
            raise InputError(f"not a sentencepiece model ({err}); HF tokenizers are files ending in .json",
                             path) from None

    def __len__(self) -> int:
        return self._backend.size

    def encode(self, sequence: str) -> list[int]:
        """Return the token ids of a DNA sequence (normalized first; no special tokens)."""
        return self._backend.encode([normalize(sequence)], 1)[0]

    def encode_batch(self, sequences: Sequence[str]) -> list[list[int]]:
        """Return the token ids of each sequence (the backend's threads, `num_threads`)."""
        return self._backend.encode([normalize(s) for s in sequences], self.num_threads)

    def decode(self, ids: Iterable[int]) -> str:
        """Return the bases of `ids` (special tokens decode to nothing)."""
        return self._backend.decode(ids)

    def id_to_piece(self, token_id: int) -> str:
        """Return the piece (bases or a special name) of one id."""
        return self._backend.id_to_piece(token_id)

    def token_bp(self) -> np.ndarray:
        """Base pairs each token id spells (int64, one per id; 0 for special tokens): what a
        `BinClassifier` needs to find the window's central bin."""
        special = set(self.special_ids)
        return np.array([0 if i in special else len(self.id_to_piece(i)) for i in range(len(self))], dtype=np.int64)

    def bp_per_token(self, sequences: Iterable[str]) -> float:
        """Return bases per token over `sequences` (the paper reports 8.78 at 32k on held-out GRCh37)."""
        bases = tokens = 0
        for sequence in sequences:
            bases += len(sequence)
            tokens += len(self.encode(sequence))
        if tokens == 0:
            raise ValueError("bp_per_token needs at least one non-empty sequence")
        return bases / tokens

    def __repr__(self) -> str:
        return f"DNATokenizer({str(self.path)!r}, vocab {len(self)}, sha256 {self.sha256[:12]})"
