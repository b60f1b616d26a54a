"""`gbb pretrain`: MLM + NSP pretraining of the encoder under DeepSpeed (BigBird appendix F.1).

    gbb pretrain --config configs/pretrain/tiny.yaml [train.steps=200 ...] [--resume]

One process on CPU as is; many under `torchrun --nproc_per_node N` or the `deepspeed` launcher.
Outputs in `out_dir`: config.yaml (resolved), metrics.jsonl, tensorboard/, checkpoints/ (DeepSpeed,
for resuming with the same world size), final/ (our checkpoint format: any world size, CPU or GPU,
for fine-tuning), pretrain.log and manifest.json.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from genomics_bigbird.errors import InputError
from pipelines.config import find_config, from_dict, load_config, read_yaml_mapping, save_config, to_dict
from pipelines.job import Job, MetricsWriter, RankLog
from pipelines.training import (
    finished_outputs, launcher_rank, log_finished, plan_deepspeed, resume, save_checkpoint, saved_checkpoint,
    start_deepspeed)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
NAN_HINT = ("lower train.lr, raise train.warmup_steps, keep train.gradient_clipping at 1.0, or use "
            "train.precision=fp32; resume from the last checkpoint with --resume")


@dataclass
class PretrainData:
    """Token shards from `gbb shards` and the tokenizer that made them."""

    shards: str = "out/shards"
    tokenizer: str = "out/tokenizer/dna_bpe.model"
    max_length: int = 4096  # tokens per [CLS] A [SEP] B [SEP] instance
    seed: int = 0  # data order and masking
    num_workers: int = 0


@dataclass
class PretrainTrain:
    """Optimization (BigBird Table 21: Adam, lr 1e-4, 10k warmup, linear decay, batch 256)."""

    steps: int = 1_000_000  # optimizer steps
    global_batch_size: int = 256  # instances per optimizer step, all ranks together
    micro_batch_size: int = 8  # instances per forward pass on one rank
    lr: float = 1e-4
    warmup_steps: int = 10_000
    weight_decay: float = 0.01
    adam_eps: float = 1e-6
    gradient_clipping: float = 1.0
    zero_stage: int = 2
    precision: str = "auto"  # auto = bf16 on GPU, fp32 on CPU
    deepspeed_json: str | None = None  # None: configs/deepspeed/zero<stage>.json
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3  # older DeepSpeed checkpoints are deleted (final/ is always written)
    log_every: int = 10
    resume: bool = False
    seed: int = 0  # weight initialization and dropout


@dataclass
class PretrainConfig:
    """`model` is a path to configs/model/*.yaml, or a mapping of EncoderConfig fields that may
    name such a file under `config:` and override some of its values."""

    model: str | dict = "configs/model/tiny.yaml"
    data: PretrainData = field(default_factory=PretrainData)
    train: PretrainTrain = field(default_factory=PretrainTrain)
    out_dir: str = "out/pretrain"


def add_arguments(parser: argparse.ArgumentParser, command: tuple[str, ...]) -> None:
    parser.add_argument("--config", required=True, help="YAML, e.g. configs/pretrain/tiny.yaml")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value",
                        help="config overrides, e.g. train.steps=100 data.seed=1")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the last checkpoint in out_dir (same as train.resume=true)")
    parser.add_argument("--quiet", action="store_true", help="no console log or progress bar")


def run(args: argparse.Namespace) -> int:
    config = load_config(PretrainConfig, args.config, args.overrides)
    if args.resume:
        config.train.resume = True
    main(config, quiet=args.quiet)
    return 0


def resolve_path(path: str | Path) -> Path:
    """A relative data path as given, or else relative to the project root (config files: `find_config`)."""
    path = Path(path)
    if path.is_absolute() or path.exists() or not (PROJECT_ROOT / path).exists():
        return path
    return PROJECT_ROOT / path


def resolve_model_config(model: str | dict):
    """EncoderConfig from a YAML path or a mapping (optionally `config: <yaml>` + overrides)."""
    from genomics_bigbird.model import EncoderConfig

    spec = {"config": model} if isinstance(model, str) else dict(model)
    tree = read_yaml_mapping(find_config(spec.pop("config"))) if "config" in spec else {}
    tree.update(spec)
    try:
        return from_dict(EncoderConfig, tree, "model")
    except ValueError as err:
        raise InputError(str(err)) from None


def check_compatible(model_config, tokenizer, data: PretrainData, tokenizer_path: Path) -> None:
    """Refuse a tokenizer or instance length the model cannot take (ids would index wrong rows)."""
    if len(tokenizer) != model_config.vocab_size:
        raise InputError(f"the tokenizer has {len(tokenizer)} tokens but model.vocab_size is "
                         f"{model_config.vocab_size}; set model.vocab_size={len(tokenizer)} or use the "
                         f"tokenizer the model config was made for", tokenizer_path)
    if tokenizer.pad_id != model_config.pad_id:
        raise InputError(f"the tokenizer's [PAD] id is {tokenizer.pad_id} but model.pad_id is "
                         f"{model_config.pad_id}; set model.pad_id={tokenizer.pad_id}", tokenizer_path)
    if data.max_length > model_config.max_position:
        raise InputError(f"data.max_length={data.max_length} is longer than model.max_position="
                         f"{model_config.max_position}; lower data.max_length or use a larger model")


def check_train(train: PretrainTrain) -> None:
    """Refuse schedule values that cannot describe a run."""
    for name in ("steps", "log_every", "checkpoint_every", "keep_checkpoints", "global_batch_size",
                 "micro_batch_size"):
        if getattr(train, name) < 1:
            raise InputError(f"train.{name} must be at least 1, got {getattr(train, name)}")
    if not 0 <= train.warmup_steps <= train.steps:
        raise InputError(f"train.warmup_steps={train.warmup_steps} must lie between 0 and train.steps={train.steps}")
    if train.lr <= 0:
        raise InputError(f"train.lr must be positive, got {train.lr}")


def summarize(totals: dict[str, float], lr: float, seconds: float, step: int, epoch: int) -> dict:
    """One metrics record from summed micro-batch values (all ranks)."""
    batches = max(totals.get("micro_batches", 0.0), 1.0)
    return {
        "step": step,
        "epoch": epoch,
        "loss": totals["loss"] / batches,
        "mlm_loss": totals["mlm_loss"] / batches,
        "nsp_loss": totals["nsp_loss"] / batches,
        "mlm_accuracy": totals["mlm_correct"] / max(totals["mlm_predicted"], 1.0),
        "nsp_accuracy": totals["nsp_correct"] / max(totals["nsp_total"], 1.0),
        "lr": lr,
        "tokens_per_s": totals["tokens"] / max(seconds, 1e-9),
    }


def train_step(engine, batches, accumulation: int, sums, step: int, device) -> Any:
    """One optimizer step: `accumulation` micro-batches forward/backward, then DeepSpeed steps.

    Returns the data position after the last micro-batch.
    """
    from genomics_bigbird.train.losses import mlm_accuracy, nsp_accuracy, pretraining_loss
    from genomics_bigbird.train.loop import check_finite

    position = None
    for _ in range(accumulation):
        position, batch = next(batches)
        batch = {name: value.to(device, non_blocking=True) for name, value in batch.items()}
        predicted = batch["mlm_labels"] != -100  # (batch, length) bool
        mlm_logits, nsp_logits = engine(batch["input_ids"], batch["attention_mask"], batch["segment_ids"],
                                        predicted)
        targets = batch["mlm_labels"][predicted]
        loss = pretraining_loss(mlm_logits, targets, nsp_logits, batch["is_next"])
        check_finite(loss.total.detach(), step, NAN_HINT)
        engine.backward(loss.total)
        engine.step()
        mlm_correct, mlm_predicted = mlm_accuracy(mlm_logits.detach(), targets)
        nsp_correct, nsp_total = nsp_accuracy(nsp_logits.detach(), batch["is_next"])
        sums.add(loss=loss.total.item(), mlm_loss=loss.mlm.item(), nsp_loss=loss.nsp.item(), micro_batches=1,
                 mlm_correct=mlm_correct, mlm_predicted=mlm_predicted, nsp_correct=nsp_correct,
                 nsp_total=nsp_total, tokens=int(batch["attention_mask"].sum()))
    return position


def train_loop(engine, batches, train: PretrainTrain, ctx, start, job, out_dir: Path, data_seed: int) -> dict:
    """Optimizer steps from `start` (a training.Resumed) to `train.steps`: metrics every log_every,
    checkpoints every checkpoint_every (and at the end). Returns the last metrics record (of the
    earlier run when a finished checkpoint left nothing to train)."""
    from genomics_bigbird.train import engine as ds
    from genomics_bigbird.train.loop import MetricSums

    checkpoints = out_dir / "checkpoints"
    accumulation = engine.gradient_accumulation_steps()
    step = start.step
    metrics = MetricsWriter(out_dir, step, enabled=ctx.is_main, prefix="pretrain")
    sums, record = MetricSums(dict(start.pending_sums)), metrics.last_record()
    bar = job.progress(total=train.steps, desc="pretrain", unit="step")
    bar.n = bar.last_print_n = step  # a resumed run starts its bar where it left off
    tick = time.perf_counter()
    try:
        while step < train.steps:
            lr = ds.current_lr(engine)
            position = train_step(engine, batches, accumulation, sums, step + 1, ctx.device)
            step += 1
            last = step == train.steps
            if step % train.log_every == 0 or last:
                now = time.perf_counter()
                record = summarize(sums.reduce(ctx.device), lr, now - tick, step, position.epoch)
                tick = now
                metrics.write(record)
                bar.set_postfix(loss=f"{record['loss']:.3f}", tok_s=f"{record['tokens_per_s']:.0f}")
            if step % train.checkpoint_every == 0 or last:
                paused = time.perf_counter()
                save_checkpoint(engine, checkpoints, step, position, sums, train.keep_checkpoints,
                                world_size=ctx.world_size, data_seed=data_seed)
                tick += time.perf_counter() - paused  # writing a checkpoint is not training throughput
            bar.update(1)
    finally:
        bar.close()
        metrics.close()
    return record


def main(config: PretrainConfig, quiet: bool = False) -> dict[str, Any]:
    """Pretrain; return the outputs (paths, last metrics). Every rank calls this.

    With train.resume, a run continues from its last checkpoint exactly (same losses and weights
    as without the interruption); a run that already reached train.steps is left as it is.
    The settings and the output directory are checked before torch is imported and the log
    opens; the tokenizer, shards and model config right after, before anything is written.
    """
    train = config.train
    check_train(train)
    plan_deepspeed(train, "cpu")  # batch sizes, ZeRO stage and DeepSpeed JSON
    out_dir = Path(config.out_dir)
    checkpoints = out_dir / "checkpoints"
    saved = saved_checkpoint(out_dir, checkpoints, train.resume)
    is_main = launcher_rank() == 0
    finished = finished_outputs(out_dir, saved, train.steps)
    if finished is not None:
        with Job("pretrain", out_dir, quiet=quiet) if is_main else RankLog(launcher_rank(), "pretrain") as job:
            log_finished(job, train.steps, "final/")
        return finished
    tokenizer_path, shards = resolve_path(config.data.tokenizer), resolve_path(config.data.shards)
    job = (Job("pretrain", out_dir, inputs=[tokenizer_path, shards / "shards.json"], config=to_dict(config),
               seed=config.data.seed, quiet=quiet) if is_main else RankLog(launcher_rank(), "pretrain"))
    with job:
        _pretrain(config, job, saved, tokenizer_path, shards)
    _wait_for_all_ranks()
    return dict(job.outputs)


def _wait_for_all_ranks() -> None:
    """Every rank leaves together, after rank 0 wrote the manifest."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()


def _pretrain(config: PretrainConfig, job, saved: dict | None, tokenizer_path: Path, shards: Path) -> None:
    """The run itself, inside its job: inputs, DeepSpeed, the training loop, final/ (outputs in job.outputs)."""
    from genomics_bigbird.tokenizer import DNATokenizer

    tokenizer = DNATokenizer.load(tokenizer_path)  # before torch: a wrong path is reported at once
    import torch

    from genomics_bigbird.data.pretraining import PretrainingDataset, collate_pretraining
    from genomics_bigbird.model import build_pretraining_model, save_checkpoint as save_weights
    from genomics_bigbird.train import engine as ds
    from genomics_bigbird.train.loop import DataPosition, micro_batches

    train, out_dir = config.train, Path(config.out_dir)
    checkpoints = out_dir / "checkpoints"
    model_config = resolve_model_config(config.model)
    check_compatible(model_config, tokenizer, config.data, tokenizer_path)
    dataset = PretrainingDataset(shards, tokenizer, max_length=config.data.max_length, seed=config.data.seed)
    plan = plan_deepspeed(train, "cuda" if torch.cuda.is_available() else "cpu")
    resolved = {**to_dict(config), "model": model_config.to_dict()}
    job.config = {**resolved, "resolved": plan.describe()}
    if launcher_rank() == 0:
        save_config(from_dict(PretrainConfig, resolved), out_dir / "config.yaml")
    ctx = start_deepspeed(plan)
    torch.manual_seed(train.seed)  # identical initial weights on every rank
    model = build_pretraining_model(model_config)
    engine = ds.build_engine(model, plan.config, lr=train.lr, weight_decay=train.weight_decay,
                             warmup_steps=train.warmup_steps, total_steps=train.steps, eps=train.adam_eps)
    torch.manual_seed(train.seed + 1 + ctx.rank)  # dropout differs between ranks
    if train.resume and saved is None:
        job.log.warning("no checkpoint in %s: starting from step 0", checkpoints)
    start = resume(engine, checkpoints, saved, job.log)
    job.log.info("%d instances; %d rank(s) x micro-batch %d x %d accumulation = global batch %d; %s on %s",
                 len(dataset), ctx.world_size, train.micro_batch_size, plan.accumulation,
                 train.global_batch_size, plan.precision, ctx.device)

    collate = partial(collate_pretraining, pad_id=tokenizer.pad_id, pad_to_multiple_of=model_config.block_size)
    batches = micro_batches(dataset, collate, train.micro_batch_size, seed=config.data.seed, rank=ctx.rank,
                            world_size=ctx.world_size, start=DataPosition(start.epoch, start.batches_done),
                            num_workers=config.data.num_workers)
    record = train_loop(engine, batches, train, ctx, start, job, out_dir, config.data.seed)
    step = train.steps

    def write_final(state_dict, directory):
        final_model = build_pretraining_model(model_config)
        final_model.load_state_dict(state_dict)
        save_weights(directory, final_model, model_config=model_config.to_dict(), task="pretraining",
                     tokenizer_sha256=tokenizer.sha256,
                     extra={"steps": step, "metrics": record, "tokenizer": str(tokenizer_path)})

    ds.export_weights(engine, out_dir / "final", write_final)
    job.outputs.update({"final": str(out_dir / "final"), "checkpoints": str(checkpoints),
                        "metrics": str(out_dir / "metrics.jsonl"), "steps": step, "last": record})
    job.log.info("step %d: loss %.4f, MLM accuracy %.3f, NSP accuracy %.3f; weights in %s", step,
                 record.get("loss", float("nan")), record.get("mlm_accuracy", float("nan")),
                 record.get("nsp_accuracy", float("nan")), out_dir / "final")

