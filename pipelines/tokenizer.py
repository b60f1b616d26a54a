"""`gbb tokenizer train`: the sentencepiece BPE over A/C/G/T/N, trained on a `gbb corpus` directory.

A `--holdout-fraction` of the documents (chosen from the seed, per document) is kept out of
training; bases per token on them (the paper: 8.78 at 32k) go to PREFIX.json with the model's
checksum. Writes PREFIX.model, PREFIX.vocab, PREFIX.json, PREFIX.manifest.json and a log.
"""
from __future__ import annotations

import argparse
import json
import zlib
from pathlib import Path
from typing import Iterator

import numpy as np

from genomics_bigbird.atomic import atomic_write
from genomics_bigbird.data.corpus import COUNTS_JSON, corpus_files, iter_corpus_documents
from genomics_bigbird.errors import InputError
from genomics_bigbird.tokenizer import DNATokenizer
from pipelines.job import Job


def is_held_out(file: Path, index: int, seed: int, fraction: float) -> bool:
    """Whether document `index` of corpus file `file` is held out (a fixed draw per document and seed)."""
    if fraction <= 0:
        return False
    return bool(np.random.default_rng([seed, zlib.crc32(file.name.encode()), index]).random() < fraction)


def main(corpus: str | Path, out: str | Path, vocab_size: int = 32000, input_sentence_size: int = 1_000_000,
         threads: int = 1, seed: int = 0, holdout_fraction: float = 0.01, quiet: bool = False) -> dict:
    """Train the tokenizer on the corpus documents not held out; return the report written to PREFIX.json."""
    if not 0 <= holdout_fraction < 1:
        raise InputError(f"--holdout-fraction must be in [0, 1), got {holdout_fraction}")
    files = corpus_files(corpus)
    prefix = Path(out)
    counts_path = Path(corpus) / COUNTS_JSON
    total = json.loads(counts_path.read_text())["documents"] if counts_path.is_file() else None
    config = {"corpus": str(corpus), "vocab_size": vocab_size, "input_sentence_size": input_sentence_size,
              "threads": threads, "seed": seed, "holdout_fraction": holdout_fraction}
    with Job("tokenizer_train", prefix.parent, inputs=files, config=config, seed=seed, quiet=quiet,
             manifest_name=f"{prefix.name}.manifest.json") as job:
        bar = job.progress(total=total, desc="reading corpus", unit="doc")
        held = {"documents": 0}

        def training_sentences() -> Iterator[str]:
            for path, index, sentences in iter_corpus_documents(files):
                bar.update(1)
                if is_held_out(path, index, seed, holdout_fraction):
                    held["documents"] += 1
                else:
                    yield from sentences

        tokenizer = DNATokenizer.train(training_sentences(), vocab_size=vocab_size, model_prefix=prefix, seed=seed,
                                       input_sentence_size=input_sentence_size, num_threads=threads)
        bar.close()
        bases = tokens = 0
        for path, index, sentences in job.progress(iter_corpus_documents(files), total=total,
                                                   desc="held-out bp/token", unit="doc"):
            if is_held_out(path, index, seed, holdout_fraction):
                bases += sum(map(len, sentences))
                tokens += sum(map(len, tokenizer.encode_batch(sentences)))
        report = {"model": str(tokenizer.path), "sha256": tokenizer.sha256, "vocab_size": len(tokenizer),
                  "holdout_fraction": holdout_fraction, "holdout_documents": held["documents"],
                  "holdout_bp": bases, "holdout_tokens": tokens,
                  "bp_per_token": round(bases / tokens, 4) if tokens else None, "paper_bp_per_token": 8.78}
        if tokens:
            job.log.info("held-out bases per token: %.3f over %d documents (paper: 8.78 at 32k)",
                         report["bp_per_token"], held["documents"])
        else:
            job.log.warning("no document was held out: no bp/token figure (raise --holdout-fraction)")
        with atomic_write(prefix.with_name(prefix.name + ".json")) as handle:
            json.dump(report, handle, indent=2)
            handle.write("\n")
        job.outputs.update(report)
    return report


def add_arguments(parser: argparse.ArgumentParser, command: tuple[str, ...]) -> None:
    parser.add_argument("--corpus", required=True, help="corpus directory from `gbb corpus`")
    parser.add_argument("--out", required=True, help="model prefix: writes PREFIX.model, PREFIX.vocab, PREFIX.json")
    parser.add_argument("--vocab-size", type=int, default=32000, help="vocabulary size incl. 5 specials (default 32000)")
    parser.add_argument("--input-sentence-size", type=int, default=1_000_000,
                        help="sentences sampled for training (0: all; default 1,000,000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (sampling and hold-out; default 0)")
    parser.add_argument("--holdout-fraction", type=float, default=0.01,
                        help="fraction of documents held out for the bp/token report (default 0.01)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or console log")


def run(args) -> int:
    main(args.corpus, args.out, vocab_size=args.vocab_size, input_sentence_size=args.input_sentence_size,
         threads=args.threads, seed=args.seed, holdout_fraction=args.holdout_fraction, quiet=args.quiet)
    return 0
