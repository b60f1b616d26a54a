"""Tokenization and MLM+NSP instance-building throughput on one CPU core; prints JSON.

Builds the BigBird F.1 corpus of the simulated genome, trains a BPE on it, then times (medians of
3 passes, the process pinned to one core):
- tokenizing 8 kbp windows with `DNATokenizer.encode` (normalization included) and `encode_batch`
  (1 thread), against the baseline of raw sentencepiece `encode` on the already-normalized windows;
- `PretrainingDataset.__getitem__` at max_length 4096, shards read lazily from HDF5 and in memory.

    python benchmarks/tokenize_throughput.py --out tokenize.json
    python benchmarks/tokenize_throughput.py --quick          # smaller genome and vocabulary: checks the script
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import sentencepiece as spm

if __package__ in (None, ""):   # run as a file: make the repository's `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.harness import environment, finish, median_rate, pin_one_core  # noqa: E402
from genomics_bigbird.data.corpus import corpus_files, write_corpus  # noqa: E402
from genomics_bigbird.data.pretraining import PretrainingDataset  # noqa: E402
from genomics_bigbird.data.shards import write_shards  # noqa: E402
from genomics_bigbird.genome import ReferenceGenome  # noqa: E402
from genomics_bigbird.genome.simulate import simulate  # noqa: E402
from genomics_bigbird.tokenizer import DNATokenizer  # noqa: E402

WINDOW = 8000


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also write the JSON here")
    parser.add_argument("--quick", action="store_true", help="small genome and vocabulary")
    parser.add_argument("--vocab-size", type=int, default=None, help="BPE size (default 8000; quick: 1000)")
    parser.add_argument("--windows", type=int, default=300, help="8 kbp windows to tokenize")
    parser.add_argument("--instances", type=int, default=300, help="instances to build")
    args = parser.parse_args(argv)
    scale = 0.25 if args.quick else 1.0
    vocab_size = args.vocab_size or (1000 if args.quick else 8000)
    core = pin_one_core()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sim = simulate(root / "sim", seed=0, scale=scale)
        genome = ReferenceGenome(root / "sim" / "genome.fa")
        counts = write_corpus(genome, root / "corpus", passes=2, seed=0)
        files = corpus_files(root / "corpus")
        start = time.perf_counter()
        tokenizer = DNATokenizer.train(files, vocab_size=vocab_size, model_prefix=root / "tok" / "dna_bpe",
                                       seed=0, num_threads=1)
        train_s = time.perf_counter() - start

        rng = np.random.default_rng(0)
        contigs = [c for c, n in genome.contigs.items() if n > WINDOW]
        windows = []
        for _ in range(args.windows):
            contig = contigs[int(rng.integers(len(contigs)))]
            lo = int(rng.integers(0, genome.contigs[contig] - WINDOW))
            windows.append(genome.fetch(contig, lo, lo + WINDOW))
        mbp = len(windows) * WINDOW / 1e6
        raw = spm.SentencePieceProcessor(model_proto=tokenizer.model_proto)
        tokens = sum(len(raw.encode(w)) for w in windows)
        tokenize = {
            "window_bp": WINDOW, "windows": len(windows), "bp_per_token": round(len(windows) * WINDOW / tokens, 3),
            "baseline_sentencepiece_encode_mbp_s": round(
                median_rate(lambda: [raw.encode(w) for w in windows], mbp, 3), 3),
            "encode_mbp_s": round(median_rate(lambda: [tokenizer.encode(w) for w in windows], mbp, 3), 3),
            "encode_batch_1_thread_mbp_s": round(median_rate(lambda: tokenizer.encode_batch(windows), mbp, 3), 3),
        }
        tokenize["encode_vs_baseline"] = round(
            tokenize["encode_mbp_s"] / tokenize["baseline_sentencepiece_encode_mbp_s"], 3)

        write_shards(files, tokenizer, root / "shards", documents_per_shard=20)
        instances = {}
        for mode, in_memory in (("hdf5_lazy", False), ("in_memory", True)):
            dataset = PretrainingDataset(root / "shards", tokenizer, max_length=4096, seed=0, in_memory=in_memory)
            order = rng.permutation(len(dataset))[:args.instances] if len(dataset) >= args.instances else \
                rng.integers(0, len(dataset), args.instances)
            dataset[int(order[0])]  # open the files
            lengths = []
            rate = median_rate(lambda: lengths.append(sum(len(dataset[int(i)]["input_ids"]) for i in order)),
                             len(order), 3)
            instances[mode] = {"instances_s": round(rate, 1), "tokens_s": round(rate * lengths[-1] / len(order)),
                               "mean_length": round(lengths[-1] / len(order), 1), "dataset_instances": len(dataset)}

    report = {
        "benchmark": "tokenize",
        **environment(),
        "pinned_core": core,
        "versions": {"python": sys.version.split()[0], "sentencepiece": spm.__version__, "numpy": np.__version__},
        "config": {"genome_bp": sum(sim.contigs.values()), "rate": "median of 3",
                   "corpus_bp": counts.bp, "corpus_documents": counts.documents, "vocab_size": len(tokenizer),
                   "tokenizer_train_s": round(train_s, 2), "quick": args.quick},
        "baseline": "raw sentencepiece encode",
        "tokenize_8kbp": tokenize,
        "instances_4096": instances,
    }
    rates = {key: value for key, value in tokenize.items() if key.endswith("_mbp_s")}
    rates |= {f"{mode} instances_s": figures["instances_s"] for mode, figures in instances.items()}
    return finish(report, args.out, [f"{name} is not a positive rate" for name, value in rates.items()
                                     if not value > 0])


if __name__ == "__main__":
    sys.exit(main())
