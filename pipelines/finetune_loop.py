"""The fine-tuning loop of `gbb finetune`: optimizer steps, validation, the best model, checkpoints.

Validation scores the valid split (by default the forward/reverse-complement ensemble, with
`gbb evaluate`'s own prediction code) every `eval_every` steps; the best model so far is exported
to best/. A checkpoint carries the best score so far, so a resumed run decides exactly as an
uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

from pipelines.job import MetricsWriter
from pipelines.training import same_on_all_ranks, save_checkpoint

NAN_HINT = ("lower train.lr, raise train.warmup_steps, lower train.pos_weight, keep train.gradient_clipping "
            "at 1.0, or use train.precision=fp32")


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


def train_loop(engine, batches, evaluate, export_best, *, train, steps: int, ctx, start, job,
               out_dir: Path, pos_weight: float, task: str) -> tuple[dict, Best, dict]:
    """Optimizer steps from `start` (a training.Resumed) to `steps`, with validation every eval_every and
    checkpoints every checkpoint_every (both always at the last step). Returns the last training
    record, the best/ actually kept and what training has seen: tokens, examples and seconds
    (validation time left out; checkpointed, so a resumed run counts the whole run).

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
    seen = dict(start.state.get("seen", {"tokens": 0.0, "examples": 0.0, "seconds": 0.0}))
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
                totals = sums.reduce(ctx.device)
                record = summarize(totals, lr, now - tick, step, position.epoch)
                seen = {"tokens": seen["tokens"] + totals["tokens"], "examples": seen["examples"] + totals["examples"],
                        "seconds": seen["seconds"] + now - tick}
                tick = now
                metrics.write(record)
                bar.set_postfix(loss=f"{record['loss']:.4f}")
            paused = time.perf_counter()  # validation and checkpoint writes are not training throughput
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
            if step % train.checkpoint_every == 0 or last:
                save_checkpoint(engine, out_dir / "checkpoints", step, position, sums, train.keep_checkpoints,
                                world_size=ctx.world_size, best=dataclasses.asdict(best), seen=seen)
            tick += time.perf_counter() - paused  # steps since the last log keep their time
            bar.update(1)
    finally:
        bar.close()
        metrics.close()
    return record, kept, seen
