"""`gbb`: a table of commands, each a pipeline module imported only when it runs.

A pipeline module provides `add_arguments(parser, command)` (command: the words, e.g.
("finetune", "promoter")) and `run(args) -> int | None`; `args.command` holds the words too.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from types import ModuleType
from typing import Sequence

from genomics_bigbird import __version__
from genomics_bigbird.errors import InputError, TrainingError
from pipelines.threads import apply_threads

# (words of the command) -> (module, one-line help). Order is the order of `gbb --help`.
COMMANDS: dict[tuple[str, ...], tuple[str, str]] = {
    ("demo",): ("pipelines.demo", "run the whole chain on the simulated genome (the README's default)"),
    ("simulate",): ("pipelines.simulate", "write a small simulated genome with promoters, chromatin labels, VCF and chain"),
    ("windows",): ("pipelines.windows", "extract centered or TSS-anchored windows for BED records (FASTA or HDF5)"),
    ("liftover",): ("pipelines.liftover", "lift BED intervals through a UCSC chain; unmapped records to their own file"),
    ("corpus",): ("pipelines.corpus", "build the BigBird F.1 pretraining documents from a FASTA"),
    ("tokenizer", "train"): ("pipelines.tokenizer", "train the sentencepiece BPE tokenizer on a corpus"),
    ("shards",): ("pipelines.shards", "tokenize a corpus into HDF5 shards for pretraining"),
    ("pretrain",): ("pipelines.pretrain", "MLM+NSP pretraining under DeepSpeed"),
    ("promoter", "prepare"): ("pipelines.promoter", "build the promoter data set (liftover, TSS windows, negatives)"),
    ("chromatin", "prepare"): ("pipelines.chromatin", "build the chromatin-profile data set (DeepSEA, bins BED or peaks)"),
    ("finetune", "promoter"): ("pipelines.finetune", "fine-tune the promoter head"),
    ("finetune", "chromatin"): ("pipelines.finetune", "fine-tune the 919-label chromatin head"),
    ("evaluate",): ("pipelines.evaluate", "evaluate fine-tuned checkpoints with reverse-complement ensembling"),
    ("experiment", "context"): ("pipelines.experiment", "context-length x attention ablation: fine-tune one encoder "
                                "at several window widths, evaluate on the same test bins"),
    ("score-variants",): ("pipelines.score_variants", "score VCF variants with a fine-tuned checkpoint"),
    ("convert", "from-hf"): ("pipelines.convert", "import a Hugging Face BigBird model (e.g. GENA-LM) as our checkpoint"),
    ("convert", "to-hf"): ("pipelines.convert", "export our checkpoint as a Hugging Face BigBird model directory"),
    ("ism",): ("pipelines.ism", "in-silico saturation mutagenesis: every base of a region to every other, scored"),
    ("data", "fetch"): ("pipelines.data", "download an external data set listed in data_manifests/"),
    ("data", "verify"): ("pipelines.data", "verify downloaded data sets against their checksums"),
}


def _available() -> dict[tuple[str, ...], tuple[str, str]]:
    """Commands whose pipeline module exists in this installation."""
    found = {}
    for words, (module, help_text) in COMMANDS.items():
        if importlib.util.find_spec(module) is not None:
            found[words] = (module, help_text)
    return found


def _top_level_help(commands) -> str:
    width = max((len(" ".join(words)) for words in commands), default=0)
    lines = [f"gbb {__version__}: long-context DNA language models (BigBird, Combiner)", "",
             "usage: gbb COMMAND [options]   (gbb COMMAND --help for its options)", "", "commands:"]
    lines += [f"  {' '.join(words):<{width}}  {help_text}" for words, (_, help_text) in commands.items()]
    return "\n".join(lines)


def parse(argv: Sequence[str]) -> tuple[ModuleType, argparse.Namespace]:
    """The pipeline module of the command `argv` names and its parsed options (`args.command`: the words).

    An unknown command is an InputError; bad options exit through argparse (status 2), as in `gbb`.
    """
    argv = list(argv)
    commands = _available()
    match = max((w for w in commands if tuple(argv[: len(w)]) == w), key=len, default=None)
    if match is None:
        known = ", ".join(" ".join(w) for w in commands)
        raise InputError(f"unknown command {' '.join(argv[:2])!r}; commands: {known}")
    module_name, help_text = commands[match]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog="gbb " + " ".join(match), description=help_text)
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads (torch, tokenization, workers); default: OMP_NUM_THREADS, "
                             "else the usable cores that other work leaves free")
    module.add_arguments(parser, match)
    args = parser.parse_intermixed_args(argv[len(match):])
    args.command = match
    return module, args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gbb` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_top_level_help(_available()))
        return 0
    if argv[0] == "--version":
        print(f"gbb {__version__}")
        return 0
    try:
        module, args = parse(argv)
    except InputError as err:
        print(f"gbb: error: {err}", file=sys.stderr)
        return 2
    prog = "gbb " + " ".join(args.command)
    try:
        args.threads = apply_threads(args.threads).threads
    except ValueError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    try:
        return int(module.run(args) or 0)
    except (InputError, TrainingError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
