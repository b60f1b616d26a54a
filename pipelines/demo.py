"""`gbb demo`: the whole chain on the simulated genome, as the `gbb` commands a user would type.

simulate -> corpus -> tokenizer -> shards -> pretrain (MLM+NSP, DeepSpeed) -> promoter and
chromatin data -> fine-tuning -> evaluation with reverse-complement ensembling -> variant scoring,
then a summary table, `OUT/report.json` and `OUT/report.html`. Every step is logged with its
command line (`OUT/commands.sh`), so the same chain can be rerun by hand or on real data
(see workflows/ for the Snakemake version). Sizes are chosen to finish in minutes on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from genomics_bigbird.atomic import atomic_write
from pipelines.chain import CommandChain, chain_device, simulated_valid_region, training_device
from pipelines.config import load_config, to_dict
from pipelines.job import Job

CONFIGS = Path("configs")  # the shipped configs: `gbb` finds configs/... from any directory (find_config)


@dataclass
class DemoConfig:
    """Knobs of the demo; the defaults are the README's run (about 6 minutes on 2 CPU cores)."""

    out_dir: str = "demo_out"
    device: str = "auto"                 # auto | cpu | cuda
    seed: int = 0
    scale: float = 1.0                   # simulated genome size (1.0 = ~2.4 Mbp)
    corpus_passes: int = 2               # F.1 uses 10 passes; 2 keep the demo short
    vocab_size: int = 4096               # the paper's 32k needs a real genome
    attention: str = "bigbird"           # full | bigbird | combiner-fixed | combiner-axial | combiner-mixture
    pretrain_steps: int = 400
    pretrain_max_length: int = 512
    promoter_epochs: int = 10
    promoter_lr: float = 3e-4            # 1e-3 (the tiny config's) swings on 280 training windows
    promoter_warmup_steps: int = 20
    promoter_max_length: int = 1024      # ~5.3 kbp of the -5000/+3000 window; 512 tokens saw too little to learn reliably
    chromatin_steps: int = 2500
    chromatin_batch_size: int = 16
    # 400 bp around each 200 bp bin keeps the CPU demo in minutes. The long-range features need
    # kilobases: `gbb experiment context` (context=true) compares 400 bp with 8 kbp windows.
    chromatin_width: int = 400
    # chromatin validation bins (BigBird holds out a window of chr7); None: the middle half of the
    # simulated chr7 at this scale
    valid_region: str | None = None
    # also run `gbb experiment context` (its CPU preset, into OUT/context: over an hour on 2 cores, so
    # off by default) and put its acceptance line in the summary
    context: bool = False


def add_arguments(parser: argparse.ArgumentParser, command: tuple[str, ...]) -> None:
    parser.add_argument("--out", default=None, help="output directory (default demo_out)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None, help="where models run")
    parser.add_argument("--seed", type=int, default=None, help="seed of every random step (default 0)")
    parser.add_argument("--config", default=None, help="YAML with DemoConfig fields")
    knobs = ", ".join(f"{f.name}={f.default}" for f in fields(DemoConfig)
                      if f.name not in ("out_dir", "device", "seed"))
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help=f"settings to change, e.g. scale=0.5; with their defaults: {knobs}")


def run(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    for key, value in (("out_dir", args.out), ("device", args.device), ("seed", args.seed)):
        if value is not None:
            overrides.append(f"{key}={value}")
    config = load_config(DemoConfig, args.config, overrides)
    summary = main(config)
    print(format_summary(summary))
    return 0


def main(config: DemoConfig) -> dict:
    """Run the chain into `config.out_dir`; return the summary written to report.json."""
    out = Path(config.out_dir).resolve()
    device = chain_device(config.device)
    seed = config.seed
    with Job("demo", out, config=to_dict(config), seed=seed) as job, training_device(device) as preamble:
        gbb = CommandChain(job, out / "commands.sh", preamble)
        sim, corpus, tok = out / "simulated", out / "corpus", out / "tokenizer" / "dna_bpe"
        gbb("simulate", "simulate", "--out", sim, "--seed", seed, "--scale", config.scale, "--quiet")
        gbb("corpus", "corpus", "--fasta", sim / "genome.fa", "--out", corpus, "--passes", config.corpus_passes,
            "--seed", seed, "--quiet")
        gbb("tokenizer", "tokenizer", "train", "--corpus", corpus, "--out", tok, "--vocab-size", config.vocab_size,
            "--holdout-fraction", 0.05, "--seed", seed, "--quiet")
        gbb("shards", "shards", "--corpus", corpus, "--tokenizer", f"{tok}.model", "--out", out / "shards", "--quiet")
        gbb("pretrain", "pretrain", "--config", CONFIGS / "pretrain" / "tiny.yaml", "--quiet",
            f"model.vocab_size={config.vocab_size}", f"model.attention={config.attention}",
            f"data.shards={out / 'shards'}", f"data.tokenizer={tok}.model",
            f"data.max_length={config.pretrain_max_length}", f"data.seed={seed}", f"train.seed={seed}",
            f"train.steps={config.pretrain_steps}", f"train.warmup_steps={config.pretrain_steps // 20}",
            f"out_dir={out / 'pretrain'}")
        gbb("promoter data", "promoter", "prepare", "--bed", sim / "promoters.other.bed",
            "--chain", sim / "other_to_sim.chain", "--fasta", sim / "genome.fa", "--out", out / "promoter_data",
            "--seed", seed, "--quiet")
        gbb("chromatin data", "chromatin", "prepare", "--bins", sim / "chromatin_bins.bed",
            "--labels", sim / "chromatin_labels.npy", "--features", sim / "chromatin_features.tsv",
            "--fasta", sim / "genome.fa", "--width", config.chromatin_width,
            "--valid-region", config.valid_region or simulated_valid_region(config.scale),
            "--out", out / "chromatin_data", "--quiet")
        schedules = {"promoter": [f"train.epochs={config.promoter_epochs}", f"train.lr={config.promoter_lr}",
                                  f"train.warmup_steps={config.promoter_warmup_steps}", "train.eval_every=50",
                                  f"data.max_length={config.promoter_max_length}"],
                     "chromatin": [f"train.steps={config.chromatin_steps}", "train.epochs=null",
                                   f"train.global_batch_size={config.chromatin_batch_size}",
                                   f"train.micro_batch_size={config.chromatin_batch_size}",
                                   f"train.eval_every={max(config.chromatin_steps // 5, 1)}"]}
        for task in ("promoter", "chromatin"):
            gbb(f"finetune {task}", "finetune", task, "--data", out / f"{task}_data" / f"{task}.h5",
                "--tokenizer", f"{tok}.model", "--pretrained", out / "pretrain" / "final",
                "--config", CONFIGS / "finetune" / f"tiny_{task}.yaml", "--out", out / f"finetune_{task}", "--quiet",
                f"train.seed={seed}", f"data.seed={seed}", *schedules[task])
            gbb(f"evaluate {task}", "evaluate", "--checkpoint", out / f"finetune_{task}" / "best",
                "--data", out / f"{task}_data" / f"{task}.h5", "--tokenizer", f"{tok}.model", "--split", "test",
                "--device", device, "--out", out / f"evaluate_{task}", "--quiet")
        gbb("score variants", "score-variants", "--vcf", sim / "variants.vcf.gz", "--fasta", sim / "genome.fa",
            "--checkpoint", out / "finetune_chromatin" / "best", "--tokenizer", f"{tok}.model",
            "--width", config.chromatin_width, "--device", device, "--out", out / "variants" / "scores.tsv",
            "--h5", out / "variants" / "matrices.h5", "--quiet")
        if config.context:
            gbb("context experiment", "experiment", "context", "--out", out / "context", "--device", device)
        summary = collect_summary(out, gbb.timings, device)
        with atomic_write(out / "report.json") as handle:
            json.dump(summary, handle, indent=2)
            handle.write("\n")
        write_demo_html(out, summary)
        job.outputs.update({"report": str(out / "report.json"), "html": str(out / "report.html")})
    return summary


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def _final_metrics(evaluation: dict) -> dict:
    """The RC-ensembled metrics of the model `gbb evaluate` reports as final."""
    return evaluation["models"][evaluation["final"]]["ensemble"]


def collect_summary(out: Path, timings: dict, device: str) -> dict:
    """Gather the headline figures of every step into one dictionary."""
    tokenizer = _read_json(out / "tokenizer" / "dna_bpe.json")
    pretrain_rows = [json.loads(line) for line in (out / "pretrain" / "metrics.jsonl").read_text().splitlines()
                     if line.strip()]
    promoter = _final_metrics(_read_json(out / "evaluate_promoter" / "metrics.json"))
    chromatin_evaluation = _read_json(out / "evaluate_chromatin" / "metrics.json")
    chromatin = _final_metrics(chromatin_evaluation)
    variants = _read_json(out / "variants" / "scores.tsv.manifest.json").get("outputs", {})
    return {
        "device": device,
        "seconds": timings,
        "total_seconds": round(sum(timings.values()), 1),
        "tokenizer": {k: tokenizer.get(k) for k in ("vocab_size", "bp_per_token")},
        "pretrain": {"first_loss": pretrain_rows[0]["loss"] if pretrain_rows else None,
                     "last_loss": pretrain_rows[-1]["loss"] if pretrain_rows else None,
                     "last_mlm_accuracy": pretrain_rows[-1].get("mlm_accuracy") if pretrain_rows else None},
        "promoter": {k: promoter.get(k) for k in ("n", "auroc", "auprc", "accuracy", "precision", "recall", "f1",
                                                   "mcc")},
        "chromatin": {"summary": chromatin.get("summary", {}), "n": chromatin.get("n"),
                      "features_without_positives": chromatin.get("n_excluded")},
        "variants": variants,
        "long_range": long_range_summary(out, chromatin_evaluation["final"]),
    }


def long_range_summary(out: Path, model: str) -> dict:
    """The demo's long-range features against their bin motifs, and `gbb experiment context`'s verdict if it ran."""
    from genomics_bigbird.evaluate.context import long_range_gaps, mean_gap_closed
    from pipelines.experiment import ContextExperimentConfig
    from pipelines.experiment_report import read_test_split

    _, labels, probabilities, names = read_test_split(out / "evaluate_chromatin" / "predictions.h5", model)
    anchors = ContextExperimentConfig().long_range
    if not set(anchors) | set(anchors.values()) <= set(names):
        return {}
    gaps = long_range_gaps(labels, probabilities, names, anchors)
    context = out / "context" / "results.json"
    return {"auprc": float(np.nanmean([g["auprc"] for g in gaps])),
            "anchor_auprc": float(np.nanmean([g["anchor_auprc"] for g in gaps])),
            "gap_closed": mean_gap_closed(gaps),
            "context_experiment": _read_json(context)["acceptance"] if context.is_file() else None}


def _number(value) -> float:
    return float("nan") if value is None else float(value)


def _headline(summary: dict) -> list[dict]:
    promoter = summary["promoter"]
    chromatin = summary["chromatin"]["summary"].get("all", {})
    return [
        {"figure": "tokenizer bp/token (held out)", "value": summary["tokenizer"].get("bp_per_token")},
        {"figure": "pretraining loss first -> last",
         "value": f"{summary['pretrain']['first_loss']:.3f} -> {summary['pretrain']['last_loss']:.3f}"
         if summary["pretrain"]["first_loss"] is not None else None},
        {"figure": "promoter AUROC (test, RC ensemble)", "value": promoter.get("auroc")},
        {"figure": "promoter F1 / MCC (threshold 0.5)", "value": f"{_number(promoter.get('f1')):.3f} / "
                                                               f"{_number(promoter.get('mcc')):.3f}"},
        {"figure": "chromatin mean AUROC (test, RC ensemble)", "value": chromatin.get("mean_auroc")},
        {"figure": "chromatin median AUROC", "value": chromatin.get("median_auroc")},
        *_long_range_rows(summary.get("long_range") or {}),
        {"figure": "variants scored", "value": summary["variants"].get("status_counts")},
        {"figure": "wall time (s)", "value": summary["total_seconds"]},
    ]


def _long_range_rows(long_range: dict) -> list[dict]:
    if not long_range:
        return []
    rows = [{"figure": "long-range TF21-24 vs their bin motifs TF01-04 (test AUPRC)",
             "value": f"{long_range['auprc']:.3f} vs {long_range['anchor_auprc']:.3f}, gap closed "
                      f"{long_range['gap_closed']:.2f}"}]
    verdict = long_range.get("context_experiment")
    rows.append({"figure": "long context (gbb experiment context)",
                 "value": "not run (context=true, or gbb experiment context)" if verdict is None else
                 f"{verdict['widest']} closes {verdict['widest_mean_gap_closed']:.2f} of the gap, "
                 f"{verdict['narrowest']} {verdict['narrowest_mean_gap_closed']:.2f}; local AUROC "
                 f"{-verdict['local_mean_auroc_drop']:+.3f}; {'passed' if verdict['passed'] else 'not met'}"})
    return rows


def format_summary(summary: dict) -> str:
    """The table printed at the end of the demo."""
    rows = _headline(summary)
    width = max(len(r["figure"]) for r in rows)

    def show(value):
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    lines = ["", "genomics-bigbird demo summary", "-" * (width + 30)]
    lines += [f"{r['figure']:<{width}}  {show(r['value'])}" for r in rows]
    return "\n".join(lines)


def write_demo_html(out: Path, summary: dict) -> Path:
    """report.html: the headline table, step timings and the evaluation figures."""
    from genomics_bigbird.evaluate.report import write_html_report  # matplotlib and sklearn: only here

    figures = sorted((out / "evaluate_promoter").glob("*.png")) + sorted((out / "evaluate_chromatin").glob("*.png"))
    timings = [{"step": k, "seconds": v} for k, v in summary["seconds"].items()]
    return write_html_report(out / "report.html", "genomics-bigbird demo",
                             [("summary", _headline(summary), []), ("steps", timings, []),
                              ("evaluation", [], figures)])
