"""Tokenized corpus documents in HDF5 shards, and a reader with fast sentence/document access.

A shard (`shard-00000.h5`) holds `documents_per_shard` documents:
- `token_ids` (uint16, n_tokens): every sentence's tokens, concatenated in corpus order;
- `sentence_offsets` (int64, n_sentences + 1): sentence i is token_ids[off[i]:off[i+1]];
- `document_offsets` (int64, n_documents + 1): document d is sentences doc_off[d]:doc_off[d+1];
- `sentence_bp` (int32, n_sentences): bases of each sentence (for bp/token accounting);
and attributes `tokenizer_sha256` and `vocab_size`. Datasets are chunked and gzip-compressed
(with the byte-shuffle filter), so a read touches only the 64 Ki-token chunks it needs.
`shards.json` in the same directory lists the shards with their counts, the tokenizer checksum,
the inputs and the parameters. Every file is written under a temporary name and renamed.
"""
from __future__ import annotations

import itertools
import json
import logging
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import h5py
import numpy as np

from genomics_bigbird.atomic import atomic_path, atomic_write
from genomics_bigbird.data.corpus import COUNTS_JSON, iter_corpus_documents
from genomics_bigbird.errors import InputError
from genomics_bigbird.parallel import ordered_map
from genomics_bigbird.tokenizer import DNATokenizer

log = logging.getLogger(__name__)

SHARDS_JSON = "shards.json"
FORMAT_VERSION = 1
CHUNK_TOKENS = 1 << 16
DOCUMENTS_PER_TASK = 8  # documents tokenized per worker task (~0.5 Mbp, ~0.1 s on one core)


@dataclass
class _ShardBuffer:
    """Documents waiting to be written as one shard."""

    tokens: list[np.ndarray]
    sentence_lengths: list[np.ndarray]
    sentence_bp: list[np.ndarray]
    document_sentences: list[int]

    @classmethod
    def empty(cls) -> "_ShardBuffer":
        return cls([], [], [], [])

    def add(self, document: "EncodedDocument") -> None:
        self.tokens.append(document.token_ids)
        self.sentence_lengths.append(document.sentence_lengths)
        self.sentence_bp.append(document.sentence_bp)
        self.document_sentences.append(len(document.sentence_lengths))


@dataclass
class EncodedDocument:
    """One document's tokens: every sentence's ids concatenated, with each sentence's token and base counts."""

    token_ids: np.ndarray         # uint16 (tokens,)
    sentence_lengths: np.ndarray  # int64 (sentences,)
    sentence_bp: np.ndarray       # int32 (sentences,)


@dataclass(frozen=True)
class DocumentEncoder:
    """Tokenize batches of documents (lists of sentences); picklable, so it can run in worker processes."""

    tokenizer: DNATokenizer

    def __call__(self, documents: list[list[str]]) -> list[EncodedDocument]:
        encoded = []
        for sentences in documents:
            ids = self.tokenizer.encode_batch(sentences)
            lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
            flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.uint16, count=int(lengths.sum()))
            bp = np.fromiter(map(len, sentences), dtype=np.int32, count=len(sentences))
            encoded.append(EncodedDocument(flat, lengths, bp))
        return encoded


def _batches(documents: Iterable[list[str]], size: int) -> Iterator[list[list[str]]]:
    """Consecutive documents, `size` at a time (the unit of work of one worker task)."""
    batch: list[list[str]] = []
    for document in documents:
        batch.append(document)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _write_shard(path: Path, buffer: _ShardBuffer, tokenizer: DNATokenizer) -> dict:
    """Write one shard atomically; return its counts."""
    token_ids = np.concatenate(buffer.tokens) if buffer.tokens else np.zeros(0, np.uint16)
    lengths = np.concatenate(buffer.sentence_lengths) if buffer.sentence_lengths else np.zeros(0, np.int64)
    sentence_bp = np.concatenate(buffer.sentence_bp) if buffer.sentence_bp else np.zeros(0, np.int32)
    sentence_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    document_offsets = np.concatenate([[0], np.cumsum(buffer.document_sentences)]).astype(np.int64)
    compress = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as h5:
            h5.create_dataset("token_ids", data=token_ids,
                              chunks=(max(1, min(CHUNK_TOKENS, len(token_ids))),), **compress)
            for name, values in (("sentence_offsets", sentence_offsets), ("document_offsets", document_offsets),
                                 ("sentence_bp", sentence_bp)):
                h5.create_dataset(name, data=values, chunks=(max(1, min(CHUNK_TOKENS, len(values))),), **compress)
            h5.attrs["tokenizer_sha256"] = tokenizer.sha256
            h5.attrs["vocab_size"] = len(tokenizer)
            h5.attrs["format_version"] = FORMAT_VERSION
    return {"file": path.name, "documents": len(buffer.document_sentences),
            "sentences": len(lengths), "tokens": int(len(token_ids)), "bp": int(sentence_bp.sum())}


class _BackgroundShardWriter:
    """Writes shards in order on one background thread, at most one at a time.

    Compressing a shard takes ~0.7 s per 11M tokens, and h5py releases the GIL while it does;
    done in the reading thread it left the tokenizing workers without tasks meanwhile (2 workers
    ran 1.5x faster than 1, not 2x). Memory: the shard being written and the one being filled.
    """

    def __init__(self, out: Path, tokenizer: DNATokenizer):
        self.out, self.tokenizer = out, tokenizer
        self.shards: list[dict] = []
        self._pending: Future | None = None

    def __enter__(self) -> "_BackgroundShardWriter":
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-writer")
        return self

    def write(self, buffer: _ShardBuffer) -> None:
        self._collect()  # so the shards before this one are all in self.shards
        path = self.out / f"shard-{len(self.shards):05d}.h5"
        self._pending = self._executor.submit(_write_shard, path, buffer, self.tokenizer)

    def _collect(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self.shards.append(pending.result())  # a failed write raises here

    def __exit__(self, exc_type, *exc) -> None:
        try:
            if exc_type is None:
                self._collect()
        finally:
            self._executor.shutdown(wait=True)


def write_shards(corpus_files: Sequence[str | os.PathLike], tokenizer: DNATokenizer, out_dir: str | os.PathLike,
                 documents_per_shard: int = 1000,
                 on_document: Callable[[EncodedDocument], None] | None = None, workers: int = 1) -> dict:
    """Tokenize corpus documents into HDF5 shards in `out_dir` and write shards.json; return its contents.

    `workers` processes tokenize batches of DOCUMENTS_PER_TASK documents while this one reads the
    corpus and writes the shards in corpus order: the shards are the same bytes for any count.
    """
    if documents_per_shard < 1:
        raise InputError(f"documents per shard must be >= 1, got {documents_per_shard}")
    if len(tokenizer) > np.iinfo(np.uint16).max + 1:
        raise InputError(f"a {len(tokenizer)}-token vocabulary does not fit uint16 token ids")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = [Path(f) for f in corpus_files]
    buffer = _ShardBuffer.empty()
    batches = _batches((sentences for _, _, sentences in iter_corpus_documents(files)), DOCUMENTS_PER_TASK)
    with _BackgroundShardWriter(out, tokenizer) as writer:
        for encoded in ordered_map(DocumentEncoder(tokenizer), batches, workers):
            for document in encoded:
                buffer.add(document)
                if on_document is not None:
                    on_document(document)
                if len(buffer.document_sentences) == documents_per_shard:
                    writer.write(buffer)
                    buffer = _ShardBuffer.empty()
        if buffer.document_sentences:
            writer.write(buffer)
    shards = writer.shards
    if not shards:
        raise InputError("the corpus has no documents", files[0].parent if files else None)
    corpus_params = {}
    counts_path = files[0].parent / COUNTS_JSON
    if counts_path.is_file():
        counts = json.loads(counts_path.read_text())
        corpus_params = {k: counts.get(k) for k in ("passes", "seed")}
    totals = {key: sum(s[key] for s in shards) for key in ("documents", "sentences", "tokens", "bp")}
    summary = {
        "format_version": FORMAT_VERSION,
        "tokenizer": str(tokenizer.path) if tokenizer.path else None,
        "tokenizer_sha256": tokenizer.sha256,
        "vocab_size": len(tokenizer),
        "inputs": [{"path": str(f.resolve()), "bytes": f.stat().st_size} for f in files],
        "params": {"documents_per_shard": documents_per_shard, "corpus": corpus_params},
        "seed": corpus_params.get("seed"),  # sharding itself draws nothing at random
        "counts": totals,
        "shards": shards,
    }
    with atomic_write(out / SHARDS_JSON) as handle:
        json.dump(summary, handle, indent=2)
        handle.write("\n")
    log.info("%d shards: %d documents, %d sentences, %d tokens (%.2f bp/token)", len(shards),
             totals["documents"], totals["sentences"], totals["tokens"], totals["bp"] / max(totals["tokens"], 1))
    return summary


def merge_shard_sets(parts: Sequence[str | os.PathLike], out_dir: str | os.PathLike) -> dict:
    """Gather `gbb shards` directories (e.g. one per contig) into one set in `out_dir`; return its shards.json.

    The shard files stay where they are: `out_dir/shards.json` lists them by relative path, in
    the order of `parts`, so `ShardSet(out_dir)` numbers the documents part after part. Every part
    must come from the same tokenizer.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    merged: dict | None = None
    for part in map(Path, parts):
        summary_path = part / SHARDS_JSON
        if not summary_path.is_file():
            raise InputError(f"no {SHARDS_JSON} here: not a finished `gbb shards` directory", part)
        summary = json.loads(summary_path.read_text())
        shards = [{**shard, "file": os.path.relpath(part / shard["file"], out)} for shard in summary["shards"]]
        if merged is None:
            merged = {**summary, "inputs": list(summary["inputs"]), "shards": shards}
            continue
        for key in ("format_version", "tokenizer_sha256", "vocab_size"):
            if summary[key] != merged[key]:
                raise InputError(f"{key} {summary[key]} differs from the first part's {merged[key]}: every part "
                                 "must be tokenized alike", part)
        merged["inputs"] += summary["inputs"]
        merged["shards"] += shards
    if merged is None:
        raise InputError("give at least one shards directory to merge")
    merged["counts"] = {key: sum(s[key] for s in merged["shards"]) for key in ("documents", "sentences", "tokens", "bp")}
    with atomic_write(out / SHARDS_JSON) as handle:
        json.dump(merged, handle, indent=2)
        handle.write("\n")
    return merged


class TokenShard:
    """One shard: offsets in memory, token ids read by slice (or all loaded with `in_memory=True`).

    The HDF5 handle is opened lazily in each process, so a shard can be pickled into DataLoader workers.
    """

    def __init__(self, path: str | os.PathLike, in_memory: bool = False):
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError("token shard not found", self.path)
        self.in_memory = in_memory
        self._h5: h5py.File | None = None
        self._pid = -1
        try:
            with h5py.File(self.path, "r") as h5:
                self.sentence_offsets = h5["sentence_offsets"][:]
                self.document_offsets = h5["document_offsets"][:]
                self.tokenizer_sha256 = str(h5.attrs["tokenizer_sha256"])
                self.vocab_size = int(h5.attrs["vocab_size"])
                self._tokens = h5["token_ids"][:] if in_memory else None
        except (OSError, KeyError) as err:
            raise InputError(f"not a token shard ({err}); rebuild it with `gbb shards`", self.path) from None

    @property
    def sentence_bp(self) -> np.ndarray:
        """Bases of each sentence (read on demand: instance building never needs it)."""
        with h5py.File(self.path, "r") as h5:
            return h5["sentence_bp"][:]

    @property
    def num_documents(self) -> int:
        return len(self.document_offsets) - 1

    @property
    def num_sentences(self) -> int:
        return len(self.sentence_offsets) - 1

    @property
    def num_tokens(self) -> int:
        return int(self.sentence_offsets[-1])

    def tokens(self, start: int, end: int) -> np.ndarray:
        """Return token_ids[start:end] (uint16)."""
        if self._tokens is not None:
            return self._tokens[start:end]
        if self._h5 is None or self._pid != os.getpid():
            self._h5, self._pid = h5py.File(self.path, "r"), os.getpid()
        return self._h5["token_ids"][start:end]

    def sentence(self, index: int) -> np.ndarray:
        """Return the tokens of sentence `index` of this shard."""
        return self.tokens(int(self.sentence_offsets[index]), int(self.sentence_offsets[index + 1]))

    def document_sentence_range(self, document: int) -> tuple[int, int]:
        """Return the [first, last) sentence indices of a document in this shard."""
        return int(self.document_offsets[document]), int(self.document_offsets[document + 1])

    def document(self, document: int) -> list[np.ndarray]:
        """Return a document's sentences as token arrays (one read for the whole document)."""
        first, last = self.document_sentence_range(document)
        offsets = self.sentence_offsets[first:last + 1]
        block = self.tokens(int(offsets[0]), int(offsets[-1]))
        return np.split(block, (offsets[1:-1] - offsets[0]).tolist())

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_h5"], state["_pid"] = None, -1
        return state

    def close(self) -> None:
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5, self._pid = None, -1


class ShardSet:
    """All shards of a `gbb shards` directory, with documents numbered across shards in corpus order."""

    def __init__(self, directory: str | os.PathLike, in_memory: bool = False):
        self.directory = Path(directory)
        summary_path = self.directory / SHARDS_JSON
        if not summary_path.is_file():
            raise InputError(f"no {SHARDS_JSON} here; build token shards with `gbb shards`", self.directory)
        self.summary = json.loads(summary_path.read_text())
        self.tokenizer_sha256: str = self.summary["tokenizer_sha256"]
        self.vocab_size: int = self.summary["vocab_size"]
        self.shards = [TokenShard(self.directory / s["file"], in_memory) for s in self.summary["shards"]]
        for shard in self.shards:
            if shard.tokenizer_sha256 != self.tokenizer_sha256:
                raise InputError(f"shard was made with tokenizer {shard.tokenizer_sha256[:12]}, the set with "
                                 f"{self.tokenizer_sha256[:12]}; rebuild the shards", shard.path)
        self.document_starts = np.concatenate([[0], np.cumsum([s.num_documents for s in self.shards])])

    def __len__(self) -> int:
        return int(self.document_starts[-1])

    def locate(self, document: int) -> tuple[TokenShard, int]:
        """Return (shard, index within it) of a global document index."""
        if not 0 <= document < len(self):
            raise IndexError(f"document {document} out of range [0, {len(self)})")
        shard = int(np.searchsorted(self.document_starts, document, side="right")) - 1
        return self.shards[shard], document - int(self.document_starts[shard])

    def document(self, document: int) -> list[np.ndarray]:
        """Return a document's sentences as token arrays."""
        shard, local = self.locate(document)
        return shard.document(local)

    def sentence_lengths(self, document: int) -> np.ndarray:
        """Return the token count of each sentence of a document (from the offsets, no token read)."""
        shard, local = self.locate(document)
        first, last = shard.document_sentence_range(local)
        return np.diff(shard.sentence_offsets[first:last + 1])

    def iter_sentence_lengths(self) -> Iterable[np.ndarray]:
        """Yield `sentence_lengths` of every document in order (vectorized per shard)."""
        for shard in self.shards:
            lengths = np.diff(shard.sentence_offsets)
            yield from np.split(lengths, shard.document_offsets[1:-1].tolist())

    def check_tokenizer(self, tokenizer: DNATokenizer) -> None:
        """Raise InputError unless these shards were made by `tokenizer`."""
        if tokenizer.sha256 != self.tokenizer_sha256:
            raise InputError(f"these shards were tokenized with tokenizer {self.tokenizer_sha256[:12]}, not "
                             f"{tokenizer.sha256[:12]} ({tokenizer.path}); use the matching .model or "
                             f"rebuild the shards", self.directory)
