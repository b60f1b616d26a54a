"""`gbb convert from-hf|to-hf`: Hugging Face BigBird model directories in and out of our checkpoint format.

    gbb convert from-hf gena-lm-bigbird-base-t2t --out ckpt/gena [--head classification]
    gbb convert to-hf out/finetune/best --out hf/my-model

from-hf reads config.json, model.safetensors (or pytorch_model.bin, as weights only) and
tokenizer.json, and writes our checkpoint with the tokenizer beside it (DST/tokenizer.json is what
`--tokenizer` takes afterwards). to-hf writes config.json, model.safetensors and the tokenizer
(tokenizer.json + tokenizer_config.json; a sentencepiece model is converted to the same ids),
loadable with transformers' `from_pretrained`. A log and
a manifest go next to DST (DST.convert.log, DST.manifest.json).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from genomics_bigbird.errors import InputError

HF_TOKENIZER = "tokenizer.json"
LAYOUTS = ("random", "hf_eval")


def add_arguments(parser: argparse.ArgumentParser, command: tuple[str, ...]) -> None:
    if command[-1] == "from-hf":
        parser.add_argument("source", type=Path, metavar="SRC",
                            help="HF model directory: config.json, model.safetensors or pytorch_model.bin, tokenizer.json")
        parser.add_argument("--head", choices=("classification",),
                            help="also import the head of a BigBirdForSequenceClassification (for gbb score-variants)")
        parser.add_argument("--layout", choices=LAYOUTS, default="random",
                            help="block-sparse random part: random (drawn blocks, as in training; default) or "
                                 "hf_eval (HF's eval mode: no random blocks, block 0 repeated; for exact comparisons)")
    else:
        parser.add_argument("source", type=Path, metavar="SRC", help="our checkpoint directory (gbb finetune best/, "
                                                                     "gbb pretrain final/, or gbb convert from-hf)")
        parser.add_argument("--tokenizer", type=Path, help="the checkpoint's tokenizer, .model or tokenizer.json "
                                                           "(default: SRC/tokenizer.json, else the one SRC records)")
    parser.add_argument("--out", type=Path, required=True, metavar="DST", help="output directory (replaced if it exists)")
    parser.add_argument("--quiet", action="store_true", help="no console log")


def run(args: argparse.Namespace) -> int:
    if args.command[-1] == "from-hf":
        from_hf_main(args.source, args.out, head=args.head, layout=args.layout, quiet=args.quiet)
    else:
        to_hf_main(args.source, args.out, tokenizer=args.tokenizer, quiet=args.quiet)
    return 0


def _job(name: str, out: Path, inputs: list[Path], config: dict, quiet: bool):
    from pipelines.job import Job

    return Job(name, out.parent, inputs=inputs, config=config, quiet=quiet,
               manifest_name=f"{out.name}.manifest.json", log_name=f"{out.name}.convert.log")


def from_hf_main(source: Path, out: Path, *, head: str | None = None, layout: str = "random",
                 quiet: bool = False) -> dict:
    """Import the HF model directory `source` into our checkpoint `out`; return the job's outputs."""
    from genomics_bigbird.model import save_checkpoint
    from genomics_bigbird.model.hf import HFFormatError, from_hf
    from genomics_bigbird.tokenizer import DNATokenizer

    source, out = Path(source), Path(out)
    tokenizer_path = source / HF_TOKENIZER
    if not tokenizer_path.is_file():
        raise InputError(f"not found: the model's {HF_TOKENIZER} must be next to config.json (a checkpoint is "
                         f"only usable with the tokenizer it was trained with)", tokenizer_path)
    tokenizer = DNATokenizer.load(tokenizer_path)
    try:
        imported = from_hf(source, head=head, sparse_layout=layout)
    except HFFormatError as err:
        raise InputError(err.message, err.path) from None
    config = imported.config
    if tokenizer.pad_id != config.pad_id:
        raise InputError(f"the tokenizer's [PAD] id is {tokenizer.pad_id} but config.json's pad_token_id is "
                         f"{config.pad_id}: they must come from the same model", tokenizer_path)
    if len(tokenizer) != config.vocab_size:  # fine-tuning and scoring check the same (pipelines.pretrain)
        raise InputError(f"the tokenizer has {len(tokenizer)} tokens but the model {config.vocab_size} "
                         f"(vocab_size in config.json): they must come from the same model", tokenizer_path)
    inputs = [source / "config.json", Path(imported.extra["hf_weights"]), tokenizer_path]
    with _job("convert-from-hf", out, inputs, {"source": str(source), "head": head, "layout": layout}, quiet) as job:
        job.log.info("%s: %s, %d layers x %d, %s attention (%s), %d tokens", source, imported.extra["hf_architecture"],
                     config.num_layers, config.hidden_size, config.attention, config.sparse_layout, len(tokenizer))
        extra = {**imported.extra, "tokenizer": str(out / HF_TOKENIZER)}
        save_checkpoint(out, imported.model, model_config=config.to_dict(), task=imported.task,
                        tokenizer_sha256=tokenizer.sha256, extra=extra,
                        files={HF_TOKENIZER: tokenizer_path.read_bytes()})
        job.outputs.update({"checkpoint": str(out), "task": imported.task, "tokenizer": str(out / HF_TOKENIZER),
                            "architecture": imported.extra["hf_architecture"]})
        job.log.info("wrote %s (task %s); fine-tune it with: gbb finetune TASK --pretrained %s --tokenizer %s",
                     out, imported.task, out, out / HF_TOKENIZER)
    return dict(job.outputs)


def hf_tokenizer_files(tokenizer, max_length: int) -> dict[str, bytes]:
    """tokenizer.json (a sentencepiece model converted, same ids) and the tokenizer_config.json that
    lets `AutoTokenizer.from_pretrained` read it."""
    from genomics_bigbird.tokenizer.hf_json import to_tokenizer_json

    pieces = {name: tokenizer.id_to_piece(getattr(tokenizer, f"{name}_id"))
              for name in ("pad", "unk", "cls", "sep", "mask")}
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": max_length,
              **{f"{name}_token": piece for name, piece in pieces.items()}}
    return {HF_TOKENIZER: to_tokenizer_json(tokenizer),
            "tokenizer_config.json": (json.dumps(config, indent=2, sort_keys=True) + "\n").encode()}


def _export_tokenizer(checkpoint: Path, meta: dict, given: Path | None):
    """The checkpoint's tokenizer.json (given, next to it, or recorded in it), checked against its checksum."""
    from genomics_bigbird.evaluate.classifier import check_tokenizer
    from genomics_bigbird.tokenizer import DNATokenizer

    recorded = meta.get("extra", {}).get("tokenizer")
    candidates = [given] if given else [checkpoint / HF_TOKENIZER] + ([Path(recorded)] if recorded else [])
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise InputError(f"no tokenizer: pass --tokenizer (looked for {', '.join(map(str, candidates))})", checkpoint)
    tokenizer = DNATokenizer.load(path)
    check_tokenizer(meta, checkpoint, tokenizer.sha256, path)
    return tokenizer


def to_hf_main(source: Path, out: Path, *, tokenizer: Path | None = None, quiet: bool = False) -> dict:
    """Export our checkpoint `source` as the HF BigBird directory `out`; return the job's outputs."""
    from genomics_bigbird.model import load_checkpoint
    from genomics_bigbird.model.checkpoint import META_NAME, WEIGHTS_NAME
    from genomics_bigbird.model.hf import HFFormatError, to_hf

    source, out = Path(source), Path(out)
    try:
        _, meta = load_checkpoint(source)
    except (FileNotFoundError, ValueError) as err:
        raise InputError(str(err), source) from None
    tok = _export_tokenizer(source, meta, tokenizer)
    token_ids = {"pad_token_id": tok.pad_id, "bos_token_id": tok.cls_id, "eos_token_id": tok.sep_id,
                 "sep_token_id": tok.sep_id}
    inputs = [source / META_NAME, source / WEIGHTS_NAME, tok.path]
    with _job("convert-to-hf", out, inputs, {"source": str(source)}, quiet) as job:
        try:
            to_hf(source, out, token_ids=token_ids,
                  files=hf_tokenizer_files(tok, meta["model_config"]["max_position"]))
        except HFFormatError as err:
            raise InputError(err.message, err.path) from None
        architecture = json.loads((out / "config.json").read_text())["architectures"][0]
        job.outputs.update({"hf_directory": str(out), "architecture": architecture})
        job.log.info("wrote %s (%s); load it with transformers' from_pretrained(%r)", out, architecture, str(out))
    return dict(job.outputs)
