"""`gbb finetune promoter|chromatin`: fine-tune a classification head (and the encoder) under DeepSpeed.

    gbb finetune promoter --data promoter.h5 --tokenizer dna_bpe.model --pretrained pretrain/final \
        --out out/promoter-ft [train.steps=711 ...]

BigBird F.2/F.3 and Table 21: [CLS] window [SEP] -> encoder -> linear head on [CLS]; BCE with the
positives up-weighted (chromatin: 8); Adam(W), lr 1e-4. Every `eval_every` steps the valid split is
scored (AUROC; chromatin: mean per-feature AUROC; by default of the forward/reverse-complement
ensemble, the number `gbb evaluate` reports) and the best model so far is exported.
Outputs in `out_dir`: config.yaml (resolved), metrics.jsonl, tensorboard/, best/ (our checkpoint
format, for `gbb evaluate` and `gbb score-variants`), checkpoints/ (DeepSpeed, the newest
`train.keep_checkpoints`, for `--resume`), finetune.log and manifest.json.

`--resume` continues from the last checkpoint exactly: the same losses, validation scores and
weights as a run that was never interrupted. The best score so far is part of the checkpoint,
and best/ is replaced only by a model that beats the one it holds, so a restart never swaps a
better best/ for a worse one.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import math
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from genomics_bigbird.errors import InputError
from pipelines.config import from_dict, load_config, save_config, to_dict
from pipelines.finetune_loop import train_loop, validate
from pipelines.job import Job, RankLog
from pipelines.pretrain import check_compatible, resolve_model_config, resolve_path
from pipelines.training import (
    finished_outputs, launcher_rank, log_finished, plan_deepspeed, resume, saved_checkpoint, start_deepspeed)

TASKS = ("promoter", "chromatin")


@dataclass
class FinetuneData:
    """The labeled windows (`gbb promoter/chromatin prepare`) and the tokenizer of the pretrained model."""

    path: str = "out/promoter/promoter.h5"
    tokenizer: str = "out/tokenizer/dna_bpe.model"
    max_length: int | None = None  # tokens with [CLS]/[SEP]; the middle of a longer window is kept; None: model.max_position
    reverse_complement: bool = True  # augmentation: each training window is read on a random strand
    seed: int = 0  # data order and strand draws
    num_workers: int = 0


@dataclass
class FinetuneTrain:
    """Optimization (BigBird Table 21: Adam, lr 1e-4, batch 256; promoter 711 steps, chromatin 500k)."""

    steps: int | None = None  # optimizer steps; or give epochs
    epochs: float | None = None  # passes over the train split (steps derived from the global batch)
    global_batch_size: int = 256
    micro_batch_size: int = 8
    lr: float = 1e-4
    warmup_steps: int = 0
    weight_decay: float = 0.01
    adam_eps: float = 1e-6
    gradient_clipping: float = 1.0
    pos_weight: float | None = None  # None: 8 for chromatin (F.3), 1 for promoters
    zero_stage: int = 2
    precision: str = "auto"  # auto = bf16 on GPU, fp32 on CPU
    deepspeed_json: str | None = None  # None: configs/deepspeed/zero<stage>.json
    eval_every: int = 100  # steps between valid-split evaluations (and always at the last step)
    eval_batch_size: int = 16
    # Choose best/ by the mean of the forward and reverse-complement probabilities, the score
    # `gbb evaluate` and `gbb score-variants` report; false: forward strand only (half the time).
    eval_rc_ensemble: bool = True
    log_every: int = 10
    checkpoint_every: int = 500  # steps between DeepSpeed checkpoints (and always at the last step)
    keep_checkpoints: int = 2  # older ones are deleted; best/ holds the chosen weights, these only resume
    resume: bool = False
    seed: int = 0  # head initialization and dropout


@dataclass
class FinetuneConfig:
    """`model` (a configs/model/*.yaml path or a mapping of EncoderConfig fields) is used when no
    `pretrained` checkpoint is given; with one, the encoder's config is the checkpoint's and a
    `model` mapping may only change non-shape fields (dropout, attention_backend, ...)."""

    task: str = "promoter"
    model: str | dict | None = "configs/model/base.yaml"
    pretrained: str | None = None  # a `gbb pretrain` final/ directory (or any checkpoint with encoder.* weights)
    data: FinetuneData = field(default_factory=FinetuneData)
    train: FinetuneTrain = field(default_factory=FinetuneTrain)
    out_dir: str = "out/finetune"


def add_arguments(parser: argparse.ArgumentParser, command: tuple[str, ...]) -> None:
    task = command[-1]
    parser.add_argument("--data", help=f"labeled windows HDF5 from `gbb {task} prepare` (data.path)")
    parser.add_argument("--tokenizer", help="the tokenizer the encoder was pretrained with: .model or tokenizer.json (data.tokenizer)")
    parser.add_argument("--pretrained", help="pretrained checkpoint directory, e.g. out/pretrain/final")
    parser.add_argument("--config", help=f"YAML (default: configs/finetune/{task}.yaml)")
    parser.add_argument("--out", help="output directory (out_dir)")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value",
                        help="config overrides, e.g. train.steps=100 train.pos_weight=4")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the last checkpoint in out_dir (same as train.resume=true)")
    parser.add_argument("--quiet", action="store_true", help="no console log or progress bar")


def run(args: argparse.Namespace) -> int:
    task = args.command[-1]
    config_path = args.config or f"configs/finetune/{task}.yaml"
    config = load_config(FinetuneConfig, config_path, args.overrides)
    if config.task != task:
        raise InputError(f"the config is for task {config.task!r}, not {task!r}; use configs/finetune/{task}.yaml",
                         config_path)
    config.task = task
    for value, apply in ((args.data, lambda v: setattr(config.data, "path", v)),
                         (args.tokenizer, lambda v: setattr(config.data, "tokenizer", v)),
                         (args.pretrained, lambda v: setattr(config, "pretrained", v)),
                         (args.out, lambda v: setattr(config, "out_dir", v))):
        if value is not None:
            apply(value)
    if args.resume:
        config.train.resume = True
    main(config, quiet=args.quiet)
    return 0


def check_train(train: FinetuneTrain) -> None:
    """Refuse schedule values that cannot describe a run."""
    if (train.steps is None) == (train.epochs is None):
        raise InputError(f"give exactly one of train.steps and train.epochs (got steps={train.steps}, "
                         f"epochs={train.epochs})")
    for name in ("log_every", "eval_every", "eval_batch_size", "global_batch_size", "micro_batch_size",
                 "checkpoint_every", "keep_checkpoints"):
        if getattr(train, name) < 1:
            raise InputError(f"train.{name} must be at least 1, got {getattr(train, name)}")
    if train.steps is not None and train.steps < 1 or train.epochs is not None and not train.epochs > 0:
        raise InputError(f"train.steps/epochs must be positive (steps={train.steps}, epochs={train.epochs})")
    if not train.lr > 0:
        raise InputError(f"train.lr must be positive, got {train.lr}")
    if train.pos_weight is not None and not train.pos_weight > 0:
        raise InputError(f"train.pos_weight must be positive, got {train.pos_weight}")


def resolve_encoder(model: str | dict | None, pretrained_meta: dict | None, log: logging.Logger):
    """EncoderConfig: the pretrained checkpoint's (plus `model` mapping overrides), else from `model`."""
    if pretrained_meta is None:
        if model is None:
            raise InputError("no encoder: pass --pretrained (a `gbb pretrain` final/ directory) or set "
                             "model=configs/model/base.yaml to train from random weights")
        return resolve_model_config(model)
    tree = dict(pretrained_meta["model_config"])
    if isinstance(model, dict):
        tree.update({key: value for key, value in model.items() if key != "config"})
    elif model is not None:
        log.info("encoder config from the pretrained checkpoint (model=%s is not used)", model)
    return resolve_model_config(tree)


def total_steps(train: FinetuneTrain, num_train: int) -> int:
    from genomics_bigbird.train.finetune import steps_for_epochs

    if train.steps is not None:
        return train.steps
    return steps_for_epochs(train.epochs, num_train, train.global_batch_size)


@dataclass
class FinetuneInputs:
    """What a fine-tuning run reads before it starts, checked against each other."""

    tokenizer: Any
    tokenizer_path: Path
    labeled: Any
    data_path: Path
    data: FinetuneData  # with max_length resolved
    model_config: Any
    pretrained_path: Path | None
    pretrained_state: dict | None
    steps: int
    pos_weight: float


def main(config: FinetuneConfig, quiet: bool = False) -> dict[str, Any]:
    """Fine-tune; return the outputs (paths, best step and valid AUROC). Every rank calls this.

    The settings and the output directory are checked before torch is imported and the log
    opens; the tokenizer, data and pretrained checkpoint right after, before anything is written.
    """
    task, train = config.task, config.train
    if task not in TASKS:
        raise InputError(f"task must be one of {TASKS}, got {task!r}")
    check_train(train)
    plan_deepspeed(train, "cpu")  # batch sizes, ZeRO stage and DeepSpeed JSON
    out_dir = Path(config.out_dir)
    saved = saved_checkpoint(out_dir, out_dir / "checkpoints", train.resume)
    if (out_dir / "best").exists() and not train.resume:
        raise InputError("holds the best/ checkpoint of an earlier fine-tuning run; pass --resume to continue it, "
                         "or choose another out_dir", out_dir)
    is_main = launcher_rank() == 0
    job = (Job("finetune", out_dir, config=to_dict(config), seed=train.seed, quiet=quiet) if is_main
           else RankLog(launcher_rank(), "finetune"))
    with job:
        inputs = read_inputs(config, job.log)
        finished = finished_outputs(out_dir, saved, inputs.steps)
        if finished is not None:
            log_finished(job, inputs.steps, "best/")
            job.outputs.update(finished)
        else:
            _finetune(config, inputs, job, saved)
    if finished is None:
        _wait_for_all_ranks()
    return dict(job.outputs)


def read_inputs(config: FinetuneConfig, log: logging.Logger) -> FinetuneInputs:
    """Load the tokenizer, the labeled windows and the pretrained weights; refuse ones that do not fit."""
    from genomics_bigbird.data.labeled import LabeledWindows
    from genomics_bigbird.tokenizer import DNATokenizer

    task, train = config.task, config.train
    tokenizer_path = resolve_path(config.data.tokenizer)
    tokenizer = DNATokenizer.load(tokenizer_path)
    data_path = resolve_path(config.data.path)
    labeled = LabeledWindows(data_path)
    if labeled.task != task:
        raise InputError(f"this is a {labeled.task!r} data set; fine-tune it with `gbb finetune {labeled.task}`",
                         data_path)
    num_train, num_valid = len(labeled.indices("train")), len(labeled.indices("valid"))
    if num_train == 0 or num_valid == 0:
        raise InputError(f"needs rows in the train and valid splits (train {num_train}, valid {num_valid})", data_path)
    # torch (and sklearn) only now: a wrong tokenizer or data path is reported without waiting for them
    from genomics_bigbird.evaluate.classifier import load_trained
    from genomics_bigbird.train.finetune import DEFAULT_POS_WEIGHT

    pretrained_path = resolve_path(config.pretrained) if config.pretrained else None
    pretrained_state, pretrained_meta = (load_trained(pretrained_path, tokenizer.sha256, tokenizer_path)
                                         if pretrained_path else (None, None))
    model_config = resolve_encoder(config.model, pretrained_meta, log)
    data = dataclasses.replace(config.data, max_length=config.data.max_length or model_config.max_position)
    check_compatible(model_config, tokenizer, data, tokenizer_path)
    steps = total_steps(train, num_train)
    if not 0 <= train.warmup_steps <= steps:
        raise InputError(f"train.warmup_steps={train.warmup_steps} must lie between 0 and the {steps} training steps")
    pos_weight = DEFAULT_POS_WEIGHT[task] if train.pos_weight is None else train.pos_weight
    return FinetuneInputs(tokenizer, tokenizer_path, labeled, data_path, data, model_config, pretrained_path,
                          pretrained_state, steps, pos_weight)


def _wait_for_all_ranks() -> None:
    """Every rank leaves together, after rank 0 wrote the manifest."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()


def _finetune(config: FinetuneConfig, inputs: FinetuneInputs, job, saved: dict | None) -> None:
    """The run itself, inside its job: DeepSpeed, the loop, best/ (outputs in job.outputs)."""
    import torch

    from genomics_bigbird.data.labeled import TokenizedWindows, collate_windows
    from genomics_bigbird.model import build_classifier, load_encoder_weights, save_checkpoint as save_weights
    from genomics_bigbird.train import engine as ds
    from genomics_bigbird.train.finetune import StrandAugmented
    from genomics_bigbird.train.loop import DataPosition, micro_batches

    task, train, data, labeled = config.task, config.train, inputs.data, inputs.labeled
    tokenizer, model_config, steps = inputs.tokenizer, inputs.model_config, inputs.steps
    out_dir = Path(config.out_dir)
    checkpoints, best_dir = out_dir / "checkpoints", out_dir / "best"
    plan = plan_deepspeed(train, "cuda" if torch.cuda.is_available() else "cpu")
    num_train, num_valid = len(labeled.indices("train")), len(labeled.indices("valid"))
    resolved = to_dict(config)
    resolved["model"] = model_config.to_dict()
    resolved["data"]["max_length"] = data.max_length
    resolved["train"].update(steps=steps, epochs=None, pos_weight=inputs.pos_weight)
    epochs = steps * train.global_batch_size / num_train
    job.config = {**resolved, "resolved": {**plan.describe(), "epochs": epochs}}
    job.inputs = [inputs.data_path, inputs.tokenizer_path] + (
        [inputs.pretrained_path / "model.safetensors"] if inputs.pretrained_path else [])
    if launcher_rank() == 0:
        save_config(from_dict(FinetuneConfig, resolved), out_dir / "config.yaml")
    ctx = start_deepspeed(plan)
    torch.manual_seed(train.seed)  # identical head initialization on every rank
    model = build_classifier(model_config, len(labeled.feature_names))
    if inputs.pretrained_state is not None:
        try:
            load_encoder_weights(model, inputs.pretrained_state)
        except (RuntimeError, ValueError) as err:
            raise InputError(f"the encoder weights do not fit the model config: {err}",
                             inputs.pretrained_path) from None
        job.log.info("encoder initialized from %s", inputs.pretrained_path)
    else:
        job.log.warning("no pretrained checkpoint: the encoder starts from random weights")
    if model_config.bin_bp is not None:
        model.set_token_bp(tokenizer.token_bp())
        job.log.info("the central %d bp of each window are the labeled bin: %s", model_config.bin_bp,
                     ", ".join(part for part, on in (("segment 1", model_config.bin_segment),
                                                     ("pooled beside [CLS]", model_config.bin_pooling)) if on)
                     or "marked but unused")
    engine = ds.build_engine(model, plan.config, lr=train.lr, weight_decay=train.weight_decay,
                             warmup_steps=train.warmup_steps, total_steps=steps, eps=train.adam_eps)
    torch.manual_seed(train.seed + 1 + ctx.rank)  # dropout differs between ranks
    if train.resume and saved is None:
        job.log.warning("no checkpoint in %s: starting from step 0", checkpoints)
    start = resume(engine, checkpoints, saved, job.log)
    job.log.info("%s: %d train / %d valid windows, %d features; %d steps (%.2f epochs) of %d = %d rank(s) x "
                 "micro-batch %d x %d accumulation; pos_weight %g; validation on %s; %s on %s", task, num_train,
                 num_valid, len(labeled.feature_names), steps, epochs, train.global_batch_size, ctx.world_size,
                 train.micro_batch_size, plan.accumulation, inputs.pos_weight,
                 "both strands (RC ensemble)" if train.eval_rc_ensemble else "the forward strand",
                 plan.precision, ctx.device)

    windows = TokenizedWindows(labeled, tokenizer, "train", max_length=data.max_length)
    if data.reverse_complement:
        windows = StrandAugmented(windows, TokenizedWindows(labeled, tokenizer, "train", reverse_complement=True,
                                                            max_length=data.max_length), seed=data.seed)
    collate = partial(collate_windows, pad_id=tokenizer.pad_id, pad_to_multiple_of=model_config.block_size)
    batches = micro_batches(windows, collate, train.micro_batch_size, seed=data.seed, rank=ctx.rank,
                            world_size=ctx.world_size, start=DataPosition(start.epoch, start.batches_done),
                            num_workers=data.num_workers)
    extra = {"feature_names": labeled.feature_names, "feature_groups": labeled.feature_groups,
             "scheme": labeled.scheme, "source": labeled.source, "window": labeled.window,
             "data": str(inputs.data_path), "max_length": data.max_length, "tokenizer": str(inputs.tokenizer_path),
             "pretrained": str(inputs.pretrained_path) if inputs.pretrained_path else None,
             "pos_weight": inputs.pos_weight}

    def export_best(step, valid):
        def write(state_dict, directory):
            best_model = build_classifier(model_config, len(labeled.feature_names))
            best_model.load_state_dict(state_dict)
            save_weights(directory, best_model, model_config=model_config.to_dict(), task=task,
                         tokenizer_sha256=tokenizer.sha256, extra={**extra, "step": step, "valid": valid})
        ds.export_weights(engine, best_dir, write)

    def evaluate():
        return validate(engine, labeled, tokenizer, task, batch_size=train.eval_batch_size, device=ctx.device,
                        max_length=data.max_length, block_size=model_config.block_size,
                        rc_ensemble=train.eval_rc_ensemble)

    record, kept, seen = train_loop(engine, batches, evaluate, export_best, train=train, steps=steps, ctx=ctx,
                                    start=start, job=job, out_dir=out_dir, pos_weight=inputs.pos_weight, task=task)
    if math.isnan(kept.valid_auroc):
        job.log.warning("the valid split has no positive (or no negative) examples: no AUROC; best/ holds "
                        "the model of the first evaluation")
    job.outputs.update({"best": str(best_dir), "best_step": kept.step, "best_valid_auroc": kept.valid_auroc,
                        "metrics": str(out_dir / "metrics.jsonl"), "checkpoints": str(checkpoints),
                        "steps": steps, "last": record, "tokens_seen": int(seen["tokens"]),
                        "examples_seen": int(seen["examples"]), "train_seconds": round(seen["seconds"], 3)})
