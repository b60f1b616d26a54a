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
import json
import logging
import math
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from genomics_bigbird.errors import InputError
from pipelines.config import from_dict, load_config, save_config, to_dict
from pipelines.job import Job, MetricsWriter, RankLog
from pipelines.pretrain import check_compatible, resolve_model_config, resolve_path
from pipelines.training import (
    finished_outputs, launcher_rank, plan_deepspeed, resume, same_on_all_ranks, save_checkpoint, saved_checkpoint,
    start_deepspeed)

TASKS = ("promoter", "chromatin")
NAN_HINT = ("lower train.lr, raise train.warmup_steps, lower train.pos_weight, keep train.gradient_clipping "
            "at 1.0, or use train.precision=fp32")


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


def summarize(totals: dict[str, float], lr: float, seconds: float, step: int, epoch: int) -> dict:
    """One training record from summed micro-batch values (all ranks)."""
    return {"step": step, "epoch": epoch, "loss": totals["loss"] / max(totals["micro_batches"], 1.0), "lr": lr,
            "examples_per_s": totals["examples"] / max(seconds, 1e-9),
            "tokens_per_s": totals["tokens"] / max(seconds, 1e-9)}


def validate(engine, labeled, tokenizer, task: str, *, batch_size: int, device, max_length: int,
             block_size: int, rc_ensemble: bool) -> dict:
    """Metrics of the valid split: of the forward/reverse-complement ensemble, or of the forward strand."""
    from genomics_bigbird.evaluate.classifier import predict_split, task_metrics

    strands = ("forward", "reverse") if rc_ensemble else ("forward",)
    predictions = predict_split(engine.module, labeled, tokenizer, "valid", batch_size=batch_size, device=device,
                                max_length=max_length, pad_to_multiple_of=block_size, strands=strands)
    probabilities = predictions.ensemble if rc_ensemble else predictions.forward
    labels = labeled.labels(labeled.indices("valid"))
    return task_metrics(task, labels, probabilities, labeled.feature_names, labeled.feature_groups)


def valid_record(task: str, metrics: dict, step: int, epoch: int) -> dict:
    """The valid-split numbers logged to metrics.jsonl (per-feature detail stays out)."""
    from genomics_bigbird.evaluate.classifier import selection_score

    record = {"step": step, "epoch": epoch, "valid_auroc": selection_score(task, metrics)}
    if task == "promoter":
        record.update({f"valid_{k}": metrics[k] for k in ("auprc", "accuracy", "f1", "mcc")})
    else:
        record.update(valid_mean_auprc=metrics["summary"]["all"]["mean_auprc"],
                      valid_median_auroc=metrics["summary"]["all"]["median_auroc"])
    return record


@dataclass
class Best:
    """A best validation score and the step that reached it (step None: nothing evaluated yet)."""

    step: int | None = None
    valid_auroc: float = -math.inf

    def beaten_by(self, score: float) -> bool:
        return self.step is None or score > self.valid_auroc


def kept_best(best_dir: Path) -> Best:
    """What best/ holds (step and score, from its metadata); Best() when there is none."""
    from genomics_bigbird.model.checkpoint import META_NAME

    meta_path = best_dir / META_NAME
    if not meta_path.is_file():
        return Best()
    extra = json.loads(meta_path.read_text())["extra"]
    return Best(extra["step"], extra["valid"]["valid_auroc"])


def train_loop(engine, batches, evaluate, export_best, *, train: FinetuneTrain, steps: int, ctx, start, job,
               out_dir: Path, pos_weight: float, task: str) -> tuple[dict, Best]:
    """Optimizer steps from `start` (a training.Resumed) to `steps`, with validation every eval_every and
    checkpoints every checkpoint_every (both always at the last step). Returns the last training
    record and the best/ actually kept.

    `best` replays the run's own decisions (logged in metrics.jsonl, saved in checkpoints); `kept`
    is what best/ holds, which after a restart may come from beyond the checkpoint: it is replaced
    only by a better score, so exact replay rewrites nothing and an inexact one never loses ground.
    """
    from genomics_bigbird.train import engine as ds
    from genomics_bigbird.train.finetune import classification_step
    from genomics_bigbird.train.loop import MetricSums

    step = start.step
    metrics = MetricsWriter(out_dir, step, enabled=ctx.is_main, prefix="finetune")
    sums, record = MetricSums(dict(start.pending_sums)), metrics.last_record()
    best, kept = Best(**start.state.get("best", {})), kept_best(out_dir / "best")
    if best.step is not None and kept.step is None:
        job.log.warning("best/ (step %d, valid AUROC %.4f) is missing: best/ will hold the best model from here on",
                        best.step, best.valid_auroc)
    bar = job.progress(total=steps, desc=f"finetune {task}", unit="step")
    bar.n = bar.last_print_n = step
    tick = time.perf_counter()
    try:
        while step < steps:
            lr = ds.current_lr(engine)
            position = classification_step(engine, batches, engine.gradient_accumulation_steps(), sums, step + 1,
                                           ctx.device, pos_weight, NAN_HINT)
            step += 1
            last = step == steps
            if step % train.log_every == 0 or last:
                now = time.perf_counter()
                record = summarize(sums.reduce(ctx.device), lr, now - tick, step, position.epoch)
                tick = now
                metrics.write(record)
                bar.set_postfix(loss=f"{record['loss']:.4f}")
            if step % train.eval_every == 0 or last:
                scored = valid_record(task, evaluate(), step, position.epoch)
                score = same_on_all_ranks(scored["valid_auroc"], ctx.device)
                if best.beaten_by(score):
                    best = Best(step, score)
                if kept.beaten_by(score) and (best.step == step or kept.step is None):
                    export_best(step=step, valid=scored)
                    kept = Best(step, score)
                metrics.write({**scored, "best_step": best.step, "best_valid_auroc": best.valid_auroc})
                job.log.info("step %d: valid AUROC %.4f (best %.4f at step %d)", step, score, best.valid_auroc,
                             best.step)
                tick = time.perf_counter()  # validation time is not training throughput
            if step % train.checkpoint_every == 0 or last:
                save_checkpoint(engine, out_dir / "checkpoints", step, position, sums, train.keep_checkpoints,
                                world_size=ctx.world_size, best=dataclasses.asdict(best))
            bar.update(1)
    finally:
        bar.close()
        metrics.close()
    return record, kept


def main(config: FinetuneConfig, quiet: bool = False) -> dict[str, Any]:
    """Fine-tune; return the outputs (paths, best step and valid AUROC). Every rank calls this."""
    import torch
    import torch.distributed as dist

    from genomics_bigbird.data.labeled import LabeledWindows, TokenizedWindows, collate_windows
    from genomics_bigbird.evaluate.classifier import load_trained
    from genomics_bigbird.model import build_classifier, load_encoder_weights, save_checkpoint as save_weights
    from genomics_bigbird.tokenizer import DNATokenizer
    from genomics_bigbird.train import engine as ds
    from genomics_bigbird.train.finetune import DEFAULT_POS_WEIGHT, StrandAugmented
    from genomics_bigbird.train.loop import DataPosition, micro_batches

    log = logging.getLogger("gbb.finetune")
    task, train = config.task, config.train
    if task not in TASKS:
        raise InputError(f"task must be one of {TASKS}, got {task!r}")
    check_train(train)
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
    plan = plan_deepspeed(train)
    out_dir = Path(config.out_dir)
    checkpoints, best_dir = out_dir / "checkpoints", out_dir / "best"
    saved = saved_checkpoint(out_dir, checkpoints, train.resume)
    if best_dir.exists() and not train.resume:
        raise InputError("holds the best/ checkpoint of an earlier fine-tuning run; pass --resume to continue it, "
                         "or choose another out_dir", out_dir)
    finished = finished_outputs("finetune", out_dir, saved, steps, kept="best/", quiet=quiet)
    if finished is not None:
        return finished
    is_main = launcher_rank() == 0

    resolved = to_dict(config)
    resolved["model"] = model_config.to_dict()
    resolved["data"]["max_length"] = data.max_length
    resolved["train"].update(steps=steps, epochs=None, pos_weight=pos_weight)
    details = {**plan.describe(), "epochs": steps * train.global_batch_size / num_train}
    inputs = [data_path, tokenizer_path] + ([pretrained_path / "model.safetensors"] if pretrained_path else [])
    job = (Job("finetune", out_dir, inputs=inputs, config={**resolved, "resolved": details}, seed=train.seed,
               quiet=quiet) if is_main else RankLog(launcher_rank(), "finetune"))
    with job:
        if is_main:
            save_config(from_dict(FinetuneConfig, resolved), out_dir / "config.yaml")
        ctx = start_deepspeed(plan)
        torch.manual_seed(train.seed)  # identical head initialization on every rank
        model = build_classifier(model_config, len(labeled.feature_names))
        if pretrained_state is not None:
            try:
                load_encoder_weights(model, pretrained_state)
            except (RuntimeError, ValueError) as err:
                raise InputError(f"the encoder weights do not fit the model config: {err}", pretrained_path) from None
            job.log.info("encoder initialized from %s", pretrained_path)
        else:
            job.log.warning("no pretrained checkpoint: the encoder starts from random weights")
        engine = ds.build_engine(model, plan.config, lr=train.lr, weight_decay=train.weight_decay,
                                 warmup_steps=train.warmup_steps, total_steps=steps, eps=train.adam_eps)
        torch.manual_seed(train.seed + 1 + ctx.rank)  # dropout differs between ranks
        if train.resume and saved is None:
            job.log.warning("no checkpoint in %s: starting from step 0", checkpoints)
        start = resume(engine, checkpoints, saved, job.log)
        job.log.info("%s: %d train / %d valid windows, %d features; %d steps (%.2f epochs) of %d = %d rank(s) x "
                     "micro-batch %d x %d accumulation; pos_weight %g; validation on %s; %s on %s", task, num_train,
                     num_valid, len(labeled.feature_names), steps, details["epochs"], train.global_batch_size,
                     ctx.world_size, train.micro_batch_size, plan.accumulation, pos_weight,
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
                 "data": str(data_path), "max_length": data.max_length, "tokenizer": str(tokenizer_path),
                 "pretrained": str(pretrained_path) if pretrained_path else None, "pos_weight": pos_weight}

        def write_best(state_dict, directory, step, valid):
            best_model = build_classifier(model_config, len(labeled.feature_names))
            best_model.load_state_dict(state_dict)
            save_weights(directory, best_model, model_config=model_config.to_dict(), task=task,
                         tokenizer_sha256=tokenizer.sha256, extra={**extra, "step": step, "valid": valid})

        def evaluate():
            return validate(engine, labeled, tokenizer, task, batch_size=train.eval_batch_size, device=ctx.device,
                            max_length=data.max_length, block_size=model_config.block_size,
                            rc_ensemble=train.eval_rc_ensemble)

        def export_best(step, valid):
            ds.export_weights(engine, best_dir, partial(write_best, step=step, valid=valid))

        record, kept = train_loop(engine, batches, evaluate, export_best, train=train, steps=steps, ctx=ctx,
                                  start=start, job=job, out_dir=out_dir, pos_weight=pos_weight, task=task)
        if math.isnan(kept.valid_auroc):
            job.log.warning("the valid split has no positive (or no negative) examples: no AUROC; best/ holds "
                            "the model of the first evaluation")
        job.outputs.update({"best": str(best_dir), "best_step": kept.step, "best_valid_auroc": kept.valid_auroc,
                            "metrics": str(out_dir / "metrics.jsonl"), "checkpoints": str(checkpoints),
                            "steps": steps, "last": record})
    if dist.is_initialized():
        dist.barrier()
    return dict(job.outputs)

