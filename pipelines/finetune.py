"""`gbb finetune promoter|chromatin`: fine-tune a classification head (and the encoder) under DeepSpeed.

    gbb finetune promoter --data promoter.h5 --tokenizer dna_bpe.model --pretrained pretrain/final \
        --out out/promoter-ft [train.steps=711 ...]

BigBird F.2/F.3 and Table 21: [CLS] window [SEP] -> encoder -> linear head on [CLS]; BCE with the
positives up-weighted (chromatin: 8); Adam(W), lr 1e-4. Every `eval_every` steps the valid split is
scored (AUROC; chromatin: mean per-feature AUROC) and the best model so far is exported.
Outputs in `out_dir`: config.yaml (resolved), metrics.jsonl, tensorboard/, best/ (our checkpoint
format, for `gbb evaluate` and `gbb score-variants`), finetune.log and manifest.json.
"""
from __future__ import annotations

import argparse
import dataclasses
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
from pipelines.pretrain import check_compatible, resolve_model_config, resolve_path, start_deepspeed

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
    log_every: int = 10
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
    parser.add_argument("--tokenizer", help="the sentencepiece model the encoder was pretrained with (data.tokenizer)")
    parser.add_argument("--pretrained", help="pretrained checkpoint directory, e.g. out/pretrain/final")
    parser.add_argument("--config", help=f"YAML (default: configs/finetune/{task}.yaml)")
    parser.add_argument("--out", help="output directory (out_dir)")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value",
                        help="config overrides, e.g. train.steps=100 train.pos_weight=4")
    parser.add_argument("--quiet", action="store_true", help="no console log or progress bar")


def run(args: argparse.Namespace) -> int:
    task = args.command[-1]
    config_path = resolve_path(args.config) if args.config else None
    if config_path is None and resolve_path(f"configs/finetune/{task}.yaml").is_file():
        config_path = resolve_path(f"configs/finetune/{task}.yaml")
    config = load_config(FinetuneConfig, config_path, args.overrides)
    if config_path is not None and config.task != task:
        raise InputError(f"the config is for task {config.task!r}, not {task!r}; use configs/finetune/{task}.yaml",
                         config_path)
    config.task = task
    for value, apply in ((args.data, lambda v: setattr(config.data, "path", v)),
                         (args.tokenizer, lambda v: setattr(config.data, "tokenizer", v)),
                         (args.pretrained, lambda v: setattr(config, "pretrained", v)),
                         (args.out, lambda v: setattr(config, "out_dir", v))):
        if value is not None:
            apply(value)
    main(config, quiet=args.quiet)
    return 0


def check_train(train: FinetuneTrain) -> None:
    """Refuse schedule values that cannot describe a run."""
    if (train.steps is None) == (train.epochs is None):
        raise InputError(f"give exactly one of train.steps and train.epochs (got steps={train.steps}, "
                         f"epochs={train.epochs})")
    for name in ("log_every", "eval_every", "eval_batch_size", "global_batch_size", "micro_batch_size"):
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
             block_size: int) -> dict:
    """Forward-strand metrics of the valid split (the RC ensemble is `gbb evaluate`'s job)."""
    from genomics_bigbird.evaluate.classifier import predict_split, task_metrics

    predictions = predict_split(engine.module, labeled, tokenizer, "valid", batch_size=batch_size, device=device,
                                max_length=max_length, pad_to_multiple_of=block_size, strands=("forward",))
    labels = labeled.labels(labeled.indices("valid"))
    return task_metrics(task, labels, predictions.forward, labeled.feature_names, labeled.feature_groups)


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


def main(config: FinetuneConfig, quiet: bool = False) -> dict[str, Any]:
    """Fine-tune; return the outputs (paths, best step and valid AUROC). Every rank calls this."""
    import torch
    import torch.distributed as dist

    from genomics_bigbird.data.labeled import LabeledWindows, TokenizedWindows, collate_windows, token_bp
    from genomics_bigbird.evaluate.classifier import load_trained
    from genomics_bigbird.model import build_classifier, load_encoder_weights, save_checkpoint
    from genomics_bigbird.tokenizer import DNATokenizer
    from genomics_bigbird.train import engine as ds
    from genomics_bigbird.train.finetune import DEFAULT_POS_WEIGHT, StrandAugmented, classification_step
    from genomics_bigbird.train.loop import MetricSums, micro_batches

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
    out_dir = Path(config.out_dir)
    if (out_dir / "best").exists():
        raise InputError("holds the best/ checkpoint of an earlier fine-tuning run; choose another out_dir "
                         "(or delete it)", out_dir)

    ctx, precision, ds_config = start_deepspeed(train)
    accumulation = ds_config["gradient_accumulation_steps"]
    resolved = to_dict(config)
    resolved["model"] = model_config.to_dict()
    resolved["data"]["max_length"] = data.max_length
    resolved["train"].update(steps=steps, epochs=None, pos_weight=pos_weight)
    details = {"world_size": ctx.world_size, "gradient_accumulation_steps": accumulation, "precision": precision,
               "deepspeed": ds_config, "epochs": steps * train.global_batch_size / num_train}
    inputs = [data_path, tokenizer_path] + ([pretrained_path / "model.safetensors"] if pretrained_path else [])
    job = (Job("finetune", out_dir, inputs=inputs, config={**resolved, "resolved": details}, seed=train.seed,
               quiet=quiet) if ctx.is_main else RankLog(ctx.rank, "finetune"))
    with job:
        if ctx.is_main:
            save_config(from_dict(FinetuneConfig, resolved), out_dir / "config.yaml")
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
        if model_config.bin_bp is not None:
            model.set_token_bp(token_bp(tokenizer))
            job.log.info("the central %d bp of each window are the labeled bin: %s", model_config.bin_bp,
                         ", ".join(part for part, on in (("segment 1", model_config.bin_segment),
                                                         ("pooled beside [CLS]", model_config.bin_pooling)) if on)
                         or "marked but unused")
        engine = ds.build_engine(model, ds_config, lr=train.lr, weight_decay=train.weight_decay,
                                 warmup_steps=train.warmup_steps, total_steps=steps, eps=train.adam_eps)
        torch.manual_seed(train.seed + 1 + ctx.rank)  # dropout differs between ranks
        job.log.info("%s: %d train / %d valid windows, %d features; %d steps (%.2f epochs) of %d = %d rank(s) x "
                     "micro-batch %d x %d accumulation; pos_weight %g; %s on %s", task, num_train, num_valid,
                     len(labeled.feature_names), steps, details["epochs"], train.global_batch_size, ctx.world_size,
                     train.micro_batch_size, accumulation, pos_weight, precision, ctx.device)

        windows = TokenizedWindows(labeled, tokenizer, "train", max_length=data.max_length)
        if data.reverse_complement:
            windows = StrandAugmented(windows, TokenizedWindows(labeled, tokenizer, "train", reverse_complement=True,
                                                                max_length=data.max_length), seed=data.seed)
        collate = partial(collate_windows, pad_id=tokenizer.pad_id, pad_to_multiple_of=model_config.block_size)
        batches = micro_batches(windows, collate, train.micro_batch_size, seed=data.seed, rank=ctx.rank,
                                world_size=ctx.world_size, num_workers=data.num_workers)
        best_dir = out_dir / "best"
        extra = {"feature_names": labeled.feature_names, "feature_groups": labeled.feature_groups,
                 "scheme": labeled.scheme, "source": labeled.source, "window": labeled.window,
                 "data": str(data_path), "max_length": data.max_length, "tokenizer": str(tokenizer_path),
                 "pretrained": str(pretrained_path) if pretrained_path else None, "pos_weight": pos_weight}

        def write_best(state_dict, directory, step, valid):
            best_model = build_classifier(model_config, len(labeled.feature_names))
            best_model.load_state_dict(state_dict)
            save_checkpoint(directory, best_model, model_config=model_config.to_dict(), task=task,
                            tokenizer_sha256=tokenizer.sha256, extra={**extra, "step": step, "valid": valid})

        metrics = MetricsWriter(out_dir, 0, enabled=ctx.is_main, prefix="finetune")
        sums, record, best = MetricSums(), {}, {"step": None, "valid_auroc": -math.inf}
        bar = job.progress(total=steps, desc=f"finetune {task}", unit="step")
        tick, step, position = time.perf_counter(), 0, None
        seen = {"tokens": 0.0, "examples": 0.0, "seconds": 0.0}  # training only: validation time is left out
        try:
            while step < steps:
                lr = ds.current_lr(engine)
                position = classification_step(engine, batches, accumulation, sums, step + 1, ctx.device,
                                               pos_weight, NAN_HINT)
                step += 1
                last = step == steps
                if step % train.log_every == 0 or last:
                    now = time.perf_counter()
                    totals = sums.reduce(ctx.device)
                    record = summarize(totals, lr, now - tick, step, position.epoch)
                    seen.update(tokens=seen["tokens"] + totals["tokens"], examples=seen["examples"] + totals["examples"],
                                seconds=seen["seconds"] + now - tick)
                    tick = now
                    metrics.write(record)
                    bar.set_postfix(loss=f"{record['loss']:.4f}")
                if step % train.eval_every == 0 or last:
                    valid = validate(engine, labeled, tokenizer, task, batch_size=train.eval_batch_size,
                                     device=ctx.device, max_length=data.max_length,
                                     block_size=model_config.block_size)
                    scored = valid_record(task, valid, step, position.epoch)
                    score = _same_on_all_ranks(scored["valid_auroc"], ctx.device)
                    if best["step"] is None or score > best["valid_auroc"]:
                        best = {"step": step, "valid_auroc": score}
                        ds.export_weights(engine, best_dir, partial(write_best, step=step, valid=scored))
                    metrics.write({**scored, "best_step": best["step"], "best_valid_auroc": best["valid_auroc"]})
                    job.log.info("step %d: valid AUROC %.4f (best %.4f at step %d)", step, score,
                                 best["valid_auroc"], best["step"])
                    tick = time.perf_counter()  # validation time is not training throughput
                bar.update(1)
        finally:
            bar.close()
            metrics.close()
        if math.isnan(best["valid_auroc"]):
            job.log.warning("the valid split has no positive (or no negative) examples: no AUROC; best/ holds "
                            "the model of the first evaluation")
        job.outputs.update({"best": str(best_dir), "best_step": best["step"], "best_valid_auroc": best["valid_auroc"],
                            "metrics": str(out_dir / "metrics.jsonl"), "steps": step, "last": record,
                            "tokens_seen": int(seen["tokens"]), "examples_seen": int(seen["examples"]),
                            "train_seconds": round(seen["seconds"], 3)})
    if dist.is_initialized():
        dist.barrier()
    return dict(job.outputs)


def _same_on_all_ranks(value: float, device) -> float:
    """Rank 0's value everywhere, so every rank takes the same best-checkpoint decision."""
    import torch
    import torch.distributed as dist

    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(tensor, src=0)
    return float(tensor.item())
