"""`gbb shards`: tokenize a `gbb corpus` directory into HDF5 token shards for pretraining.

Writes shard-NNNNN.h5 (uint16 tokens with sentence and document offsets), shards.json (counts,
tokenizer checksum, inputs, parameters), shards.log and manifest.json into `--out`.

`--workers N` tokenizes in N processes. On a cluster, run one job per contig's corpus and gather
them with `gbb shards --merge DIR... --out DIR` (workflows/Snakefile does).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from genomics_bigbird.data.corpus import COUNTS_JSON, corpus_files
from genomics_bigbird.data.shards import SHARDS_JSON, merge_shard_sets, write_shards
from genomics_bigbird.errors import InputError
from genomics_bigbird.tokenizer import DNATokenizer
from pipelines.job import Job
from pipelines.workers import add_workers_argument, plan_workers


def main(corpus: str | Path, tokenizer: str | Path, out: str | Path, documents_per_shard: int = 1000,
         threads: int = 1, quiet: bool = False, workers: int = 1) -> dict:
    """Tokenize the corpus into shards in `out` (`workers` processes of `threads` threads); return shards.json."""
    files = corpus_files(corpus)
    tok = DNATokenizer.load(tokenizer, num_threads=threads)
    counts_path = Path(corpus) / COUNTS_JSON
    total = json.loads(counts_path.read_text())["documents"] if counts_path.is_file() else None
    config = {"corpus": str(corpus), "tokenizer": str(tokenizer), "tokenizer_sha256": tok.sha256,
              "documents_per_shard": documents_per_shard, "workers": workers, "threads_per_worker": threads}
    with Job("shards", out, inputs=[*files, tokenizer], config=config, quiet=quiet) as job:
        job.log.info("tokenizing in %d worker process%s x %d thread%s", workers, "es" if workers > 1 else "",
                     threads, "s" if threads > 1 else "")
        bar = job.progress(total=total, desc="tokenizing", unit="doc")
        summary = write_shards(files, tok, out, documents_per_shard=documents_per_shard,
                               on_document=lambda document: bar.update(1), workers=workers)
        bar.close()
        counts = summary["counts"]
        job.outputs.update({"shards": len(summary["shards"]), **counts,
                            "bp_per_token": round(counts["bp"] / max(counts["tokens"], 1), 4)})
        job.log.info("%d shards, %d documents, %d tokens (%.2f bp/token)", len(summary["shards"]),
                     counts["documents"], counts["tokens"], job.outputs["bp_per_token"])
    return summary


def merge(parts: list[str | Path], out: str | Path, quiet: bool = False) -> dict:
    """Gather shard directories (e.g. one per contig) into one set in `out`; return shards.json."""
    with Job("shards", out, inputs=[Path(p) / SHARDS_JSON for p in parts], config={"merge": list(map(str, parts))},
             quiet=quiet) as job:
        summary = merge_shard_sets(parts, out)
        job.outputs.update({"shards": len(summary["shards"]), **summary["counts"]})
        job.log.info("gathered %d parts: %d shards, %d documents, %d tokens", len(parts), len(summary["shards"]),
                     summary["counts"]["documents"], summary["counts"]["tokens"])
    return summary


def add_arguments(parser: argparse.ArgumentParser, command: tuple[str, ...]) -> None:
    parser.add_argument("--corpus", help="corpus directory from `gbb corpus`")
    parser.add_argument("--tokenizer", help="tokenizer model (PREFIX.model from `gbb tokenizer train`)")
    parser.add_argument("--merge", nargs="+", metavar="DIR",
                        help="instead of tokenizing: gather shard directories (e.g. one per contig) into --out")
    parser.add_argument("--out", required=True, help="output directory for the shards")
    parser.add_argument("--documents-per-shard", type=int, default=1000, help="documents per shard (default 1000)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or console log")
    add_workers_argument(parser, "batches of documents")


def run(args) -> int:
    if args.merge:
        merge(args.merge, args.out, quiet=args.quiet)
        return 0
    missing = [f"--{name}" for name in ("corpus", "tokenizer") if getattr(args, name) is None]
    if missing:
        raise InputError(f"{' and '.join(missing)} required (or --merge DIR... to gather shard directories)")
    plan = plan_workers(args.workers, args.threads)
    main(args.corpus, args.tokenizer, args.out, documents_per_shard=args.documents_per_shard,
         threads=plan.threads_per_worker, quiet=args.quiet, workers=plan.workers)
    return 0
