"""`gbb experiment context`: does long context pay? Window width x attention kind, at equal budget.

    gbb experiment context --out context_out                 # CPU preset on the simulated genome
    gbb experiment context --quick --out /tmp/ctx            # seconds: checks the chain (the test suite's)
    gbb experiment context --preset gpu --out context_gpu    # 8 kbp with a small model, enough steps

One command, composed of the `gbb` commands a user would type (logged to OUT/commands.sh):
1. the simulated genome, its corpus, tokenizer and shards, and the encoder pretrained at the
   widest window's length (skipped when `pretrained` and `tokenizer` are given);
2. `gbb chromatin prepare` at every width, from the same bins, so every arm has the same
   train/valid/test bins and labels;
3. per arm, `gbb finetune chromatin` from the same pretrained encoder with the same steps and
   batch (tokens seen differ by width and are reported), then `gbb evaluate` on the test split
   with the reverse-complement ensemble. Arms: one per width (the pretrained attention kind),
   plus every other attention kind at the widest width (full attention only up to
   `full_attention_max_tokens`);
4. results.json, results.tsv (one row per arm), per_feature.tsv and report.html with one plot:
   local features apart from the long-range ones, and each long-range feature's gap to its
   bin-motif feature (genomics_bigbird.evaluate.context).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

from genomics_bigbird.errors import InputError
from pipelines.chain import CommandChain, chain_device, simulated_valid_region, training_device
from pipelines.config import find_config, load_config, save_config, to_dict
from pipelines.job import Job

# Shipped configs, found from any directory by `find_config` (also the paths inside these presets).
PRESETS = {"cpu": Path("configs/experiment/context.yaml"), "gpu": Path("configs/experiment/context_gpu.yaml"),
           "quick": Path("configs/experiment/context_quick.yaml")}
ATTENTIONS = ("bigbird", "combiner-fixed", "combiner-axial", "full")


@dataclass
class ContextExperimentConfig:
    """The arms, their shared budget and where the data come from (presets: configs/experiment/)."""

    out_dir: str = "context_out"
    device: str = "auto"                    # auto | cpu | cuda
    seed: int = 0
    # the simulated genome (built here) unless `fasta`, `bins`, `labels` and `features` are all given
    scale: float = 1.0
    fasta: str | None = None
    bins: str | None = None
    labels: str | None = None
    features: str | None = None
    valid_region: str | None = None         # None: the middle half of chr7 (simulated genome at `scale`)
    bin_stride: int = 1                     # keep every n-th bin (the quick preset's small test split)
    # the encoder: pretrained here unless `pretrained` and `tokenizer` are given
    pretrained: str | None = None
    tokenizer: str | None = None
    corpus_passes: int = 2
    vocab_size: int = 4096
    pretrain_config: str = "configs/pretrain/tiny_8k.yaml"
    pretrain_steps: int = 400
    pretrain_max_length: int = 2048
    pretrain_overrides: list[str] = field(default_factory=list)  # extra key=value for `gbb pretrain`
    # the arms
    widths: list[int] = field(default_factory=lambda: [400, 2000, 8000])
    attentions: list[str] = field(default_factory=lambda: list(ATTENTIONS))  # compared at the widest width
    full_attention_max_tokens: int = 4096
    # the budget every arm gets
    finetune_config: str = "configs/finetune/tiny_chromatin.yaml"
    steps: int = 600
    batch_size: int = 16
    lr: float = 1e-3
    warmup_steps: int = 30
    eval_every: int = 100
    model: dict = field(default_factory=dict)  # encoder fields for every arm, e.g. {bin_bp: 200, bin_pooling: true}
    finetune_overrides: list[str] = field(default_factory=list)
    # long-range feature -> the bin-motif feature it builds on (the simulated genome's TF21-TF24)
    long_range: dict = field(default_factory=lambda: {"TF21": "TF01", "TF22": "TF02", "TF23": "TF03",
                                                      "TF24": "TF04"})
    acceptance_gap_closed: float = 0.7      # the widest arm must close this much of the gap on average
    acceptance_local_drop: float = 0.02     # ... losing at most this much local mean AUROC vs the narrowest
    workers: int = 1                        # arms run at once (own processes; --threads shared between them)


def add_arguments(parser: argparse.ArgumentParser, command: tuple[str, ...]) -> None:
    parser.add_argument("--out", default=None, help="output directory (default context_out)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="cpu (default): the simulated genome on CPU; gpu: a small model with enough steps; "
                             "quick: seconds, for tests")
    parser.add_argument("--quick", action="store_true", help="same as --preset quick")
    parser.add_argument("--config", default=None, help="YAML with ContextExperimentConfig fields (instead of a preset)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None, help="where models run")
    parser.add_argument("--workers", type=int, default=None,
                        help="arms run at once, each in its own process with --threads / workers threads (default 1)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. steps=300")


def run(args: argparse.Namespace) -> int:
    if args.quick and args.preset not in (None, "quick"):
        raise InputError(f"--quick and --preset {args.preset} disagree; give one")
    if args.config and (args.quick or args.preset):
        raise InputError("give --config or a preset, not both")
    path = args.config or PRESETS["quick" if args.quick else args.preset or "cpu"]
    overrides = list(args.overrides)
    for key, value in (("out_dir", args.out), ("device", args.device), ("workers", args.workers)):
        if value is not None:
            overrides.append(f"{key}={value}")
    config = load_config(ContextExperimentConfig, path, overrides)
    from pipelines.experiment_report import format_summary

    print(format_summary(main(config, threads=args.threads)))
    return 0


@dataclass(frozen=True)
class Arm:
    """One fine-tuning run: a window width and an attention kind."""

    width: int
    attention: str

    @property
    def name(self) -> str:
        return f"w{self.width}-{self.attention}"


def plan_arms(config: ContextExperimentConfig, bp_per_token: float,
              pretrained_attention: str) -> tuple[list[Arm], list[dict]]:
    """(arms, skipped): every width with the pretrained attention kind, then the other kinds at the widest width.

    Full attention is skipped where it does not fit; `skipped` says so, for the results.
    """
    widest = max(config.widths)
    arms, skipped = [Arm(w, pretrained_attention) for w in sorted(config.widths)], []
    for kind in config.attentions:
        if kind == pretrained_attention:
            continue
        if kind == "full" and widest / bp_per_token > config.full_attention_max_tokens:
            skipped.append({"width": widest, "attention": kind, "reason": "full attention does not fit: more than "
                            f"{config.full_attention_max_tokens} tokens"})
            continue
        arms.append(Arm(widest, kind))
    return arms, skipped


def check_config(config: ContextExperimentConfig) -> None:
    given = [config.fasta, config.bins, config.labels, config.features]
    if any(given) and not all(given):
        raise InputError("give all of fasta, bins, labels and features (or none: the simulated genome)")
    if (config.pretrained is None) != (config.tokenizer is None):
        raise InputError("give pretrained and tokenizer together (or neither: pretrain here)")
    if config.pretrained is not None and not (Path(config.pretrained) / "checkpoint.json").is_file():
        raise InputError("pretrained is not a checkpoint directory (no checkpoint.json): give a pretraining run's "
                         "final/", config.pretrained)
    if config.tokenizer is not None and not Path(config.tokenizer).is_file():
        raise InputError("tokenizer not found", config.tokenizer)
    if not config.widths or min(config.widths) < 1:
        raise InputError(f"widths must be positive window widths in bp, got {config.widths}")
    unknown = sorted(set(config.attentions) - set(ATTENTIONS))
    if unknown:
        raise InputError(f"attentions {unknown} are not among {', '.join(ATTENTIONS)}")
    if min(config.bin_stride, config.steps, config.batch_size, config.workers) < 1:
        raise InputError("bin_stride, steps, batch_size and workers must be at least 1")


def main(config: ContextExperimentConfig, threads: int = 1) -> dict:
    """Run every arm into `config.out_dir`; return the results written to results.json.

    With `config.workers` > 1, that many arms run at once in their own processes, sharing
    `threads` CPU threads (the data and the pretrained encoder are made first, in this process).
    """
    from pipelines.experiment_report import collect_results, write_outputs

    check_config(config)
    out = Path(config.out_dir).resolve()
    device = chain_device(config.device)
    with Job("experiment_context", out, config=to_dict(config), seed=config.seed) as job, \
            training_device(device) as preamble:
        save_config(config, out / "config.yaml")
        gbb = CommandChain(job, out / "commands.sh", preamble, title="gbb experiment context")
        tokenizer, pretrained, data = prepare_inputs(gbb, config, out)
        meta = json.loads((Path(pretrained) / "checkpoint.json").read_text())
        bp_per_token = tokenizer_bp_per_token(tokenizer)
        arms, skipped = plan_arms(config, bp_per_token, meta["model_config"]["attention"])
        positions = meta["model_config"]["max_position"]
        if max(config.widths) / bp_per_token + 2 > positions:
            job.log.warning("%d bp windows are ~%d tokens but the encoder holds %d positions: their middle is kept "
                            "(pretrain a longer encoder, e.g. configs/pretrain/tiny_8k.yaml)", max(config.widths),
                            max(config.widths) / bp_per_token, positions)
        job.log.info("%d arms at equal budget (%d steps of %d windows): %s", len(arms), config.steps,
                     config.batch_size, ", ".join(a.name for a in arms))
        for width in sorted(set(config.widths)):
            prepare_width(gbb, config, data, width, out / "data" / f"w{width}")
        commands = [arm_commands(config, arm, tokenizer, pretrained, out, device) for arm in arms]
        if config.workers > 1:
            gbb.parallel(commands, config.workers, threads)
        else:
            for step, argv in (pair for group in commands for pair in group):
                gbb(step, *argv)
        results = collect_results(config, arms, skipped, out, gbb.timings, bp_per_token, device)
        write_outputs(results, out)
        job.outputs.update({"results": str(out / "results.json"), "report": str(out / "report.html"),
                            "acceptance": results["acceptance"]})
    return results


def tokenizer_bp_per_token(tokenizer: Path) -> float:
    """bp/token of the tokenizer as `gbb tokenizer train` measured it (held out), else 5.0."""
    summary = Path(tokenizer).with_suffix(".json")
    if summary.is_file():
        return float(json.loads(summary.read_text()).get("bp_per_token") or 5.0)
    return 5.0


def prepare_inputs(gbb: CommandChain, config: ContextExperimentConfig, out: Path) -> tuple[Path, Path, dict]:
    """(tokenizer, pretrained checkpoint, data files): the user's, or the simulated genome's made here."""
    seed = config.seed
    if config.fasta:
        data = {k: Path(getattr(config, k)) for k in ("fasta", "bins", "labels", "features")}
        data["valid_region"] = config.valid_region
    else:
        sim = out / "simulated"
        gbb("simulate", "simulate", "--out", sim, "--seed", seed, "--scale", config.scale, "--quiet")
        data = {"fasta": sim / "genome.fa", "bins": sim / "chromatin_bins.bed",
                "labels": sim / "chromatin_labels.npy", "features": sim / "chromatin_features.tsv",
                "valid_region": config.valid_region or simulated_valid_region(config.scale)}
    if config.bin_stride > 1:
        data.update(subsample_bins(data["bins"], data["labels"], config.bin_stride, out / "bins"))
    if config.pretrained:
        return Path(config.tokenizer), Path(config.pretrained), data
    corpus, tok = out / "corpus", out / "tokenizer" / "dna_bpe"
    gbb("corpus", "corpus", "--fasta", data["fasta"], "--out", corpus, "--passes", config.corpus_passes,
        "--seed", seed, "--quiet")
    gbb("tokenizer", "tokenizer", "train", "--corpus", corpus, "--out", tok, "--vocab-size", config.vocab_size,
        "--holdout-fraction", 0.05, "--seed", seed, "--quiet")
    gbb("shards", "shards", "--corpus", corpus, "--tokenizer", f"{tok}.model", "--out", out / "shards", "--quiet")
    gbb("pretrain", "pretrain", "--config", _project_path(config.pretrain_config), "--quiet",
        f"model.vocab_size={config.vocab_size}", f"data.shards={out / 'shards'}", f"data.tokenizer={tok}.model",
        f"data.max_length={config.pretrain_max_length}", f"data.seed={seed}", f"train.seed={seed}",
        f"train.steps={config.pretrain_steps}", f"train.warmup_steps={max(1, config.pretrain_steps // 20)}",
        f"out_dir={out / 'pretrain'}", *config.pretrain_overrides)
    return Path(f"{tok}.model"), out / "pretrain" / "final", data


def _project_path(path: str) -> Path:
    return find_config(path).resolve()


def subsample_bins(bins: Path, labels: Path, stride: int, out: Path) -> dict:
    """Every `stride`-th bin and its label row, written as a new BED + .npy pair (same format)."""
    import numpy as np

    from genomics_bigbird.atomic import atomic_path, atomic_write

    lines = Path(bins).read_text().splitlines(keepends=True)
    matrix = np.load(labels)
    if len(matrix) != len(lines):
        raise InputError(f"{len(lines)} bins but {len(matrix)} label rows", labels)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "bins.bed") as handle:
        handle.writelines(lines[::stride])
    with atomic_path(out / "labels.npy") as tmp, open(tmp, "wb") as handle:
        np.save(handle, matrix[::stride])
    return {"bins": out / "bins.bed", "labels": out / "labels.npy"}


def prepare_width(gbb: CommandChain, config: ContextExperimentConfig, data: dict, width: int, out: Path) -> None:
    gbb(f"chromatin data w{width}", "chromatin", "prepare", "--bins", data["bins"], "--labels", data["labels"],
        "--features", data["features"], "--fasta", data["fasta"], "--width", width,
        "--valid-region", data["valid_region"], "--out", out, "--quiet")


def arm_commands(config: ContextExperimentConfig, arm: Arm, tokenizer: Path, pretrained: Path, out: Path,
                 device: str) -> list[tuple[str, list]]:
    """`gbb finetune chromatin` then `gbb evaluate` (test split, RC ensemble) for one arm: (step, argv) pairs."""
    data = out / "data" / f"w{arm.width}" / "chromatin.h5"
    model = {"attention": arm.attention, **config.model}
    run_dir = out / "arms" / arm.name
    finetune = ["finetune", "chromatin", "--data", data, "--tokenizer", tokenizer, "--pretrained", pretrained,
                "--config", _project_path(config.finetune_config), "--out", run_dir / "finetune", "--quiet",
                f"train.seed={config.seed}", f"data.seed={config.seed}", f"train.steps={config.steps}",
                "train.epochs=null", f"train.global_batch_size={config.batch_size}",
                f"train.micro_batch_size={config.batch_size}", f"train.lr={config.lr}",
                f"train.warmup_steps={config.warmup_steps}", f"train.eval_every={config.eval_every}",
                f"train.log_every={max(1, min(10, config.steps))}", f"model={json.dumps(model)}",
                "data.max_length=null",  # the encoder's positions: the finetune config's own cap would cut the window
                *config.finetune_overrides]
    evaluate = ["evaluate", "--checkpoint", run_dir / "finetune" / "best", "--data", data, "--tokenizer", tokenizer,
                "--split", "test", "--device", device, "--out", run_dir / "evaluate", "--quiet"]
    return [(f"finetune {arm.name}", finetune), (f"evaluate {arm.name}", evaluate)]
