"""Results of `gbb experiment context`: gathered from each arm's fine-tuning and evaluation outputs.

results.json (everything), results.tsv (one row per arm), per_feature.tsv (arm x feature),
gaps.tsv (arm x long-range feature) and report.html (the tables and one plot).
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np

ENSEMBLE = "ensemble"  # the RC ensemble: mean of forward and reverse-complement probabilities


def _read(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def read_test_split(predictions_h5: Path, model: str) -> tuple[list[str], np.ndarray, np.ndarray, list[str]]:
    """(bins as 'chrom:center', labels, RC-ensembled probabilities of `model`, feature names) of a test split.

    `predictions_h5` is `gbb evaluate`'s; `model` is one of its models, usually metrics.json's "final".
    """
    import h5py

    with h5py.File(predictions_h5, "r") as f:
        centers = (f["start"][:] + f["end"][:]) // 2
        bins = [f"{c}:{m}" for c, m in zip(f["chrom"].asstr()[:], centers)]
        return (bins, f["labels"][:], f[f"predictions/{model}/{ENSEMBLE}"][:],
                f["features/name"].asstr()[:].tolist())


def arm_result(config, arm, out: Path, timings: dict) -> tuple[dict, list[dict], list[dict]]:
    """(summary row, per-feature rows, gap rows) of one arm."""
    from genomics_bigbird.evaluate.context import local_summary, long_range_gaps, mean_gap_closed

    run_dir = out / "arms" / arm.name
    trained = _read(run_dir / "finetune" / "manifest.json")["outputs"]
    evaluation = _read(run_dir / "evaluate" / "metrics.json")
    per_feature = [_nan(r) for r in evaluation["models"][evaluation["final"]][ENSEMBLE]["per_feature"]]
    bins, labels, probabilities, names = read_test_split(run_dir / "evaluate" / "predictions.h5", evaluation["final"])
    long_range = list(config.long_range)
    gaps = long_range_gaps(labels, probabilities, names, config.long_range)
    local = local_summary(per_feature, long_range)
    far = [r for r in per_feature if r["feature"] in long_range]
    seconds = timings.get(f"finetune {arm.name}", math.nan) + timings.get(f"evaluate {arm.name}", math.nan)
    row = {"arm": arm.name, "width": arm.width, "attention": arm.attention, "steps": trained["steps"],
           "batch": config.batch_size, "examples_seen": trained.get("examples_seen"),
           "tokens_seen": trained.get("tokens_seen"), "train_seconds": trained.get("train_seconds"),
           "tokens_per_s": trained["tokens_seen"] / trained["train_seconds"] if trained.get("train_seconds") else None,
           "wall_s": round(seconds, 1), "best_step": trained.get("best_step"),
           "local_mean_auroc": local["mean_auroc"], "local_mean_auprc": local["mean_auprc"],
           "long_range_mean_auroc": _mean(r["auroc"] for r in far),
           "long_range_mean_auprc": _mean(r["auprc"] for r in far),
           "mean_gap_closed": mean_gap_closed(gaps),
           "test_bins": len(bins), "test_bins_sha256": hashlib.sha256("\n".join(bins).encode()).hexdigest()}
    features = [{"arm": arm.name, "width": arm.width, "attention": arm.attention,
                 "long_range": r["feature"] in long_range, **r} for r in per_feature]
    return row, features, [{"arm": arm.name, "width": arm.width, "attention": arm.attention, **g} for g in gaps]


def _nan(row: dict) -> dict:
    """evaluate's metrics.json writes NaN as null; back to NaN for arithmetic."""
    return {k: (math.nan if v is None and k in ("auroc", "auprc") else v) for k, v in row.items()}


def _mean(values) -> float:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(values)) if values else math.nan


def acceptance(config, rows: list[dict], pretrained_attention: str) -> dict:
    """The issue's test: the widest arm closes >= 70% of the gap, the narrowest does not, local AUROC holds."""
    same_kind = [r for r in rows if r["attention"] == pretrained_attention]
    widest = max(same_kind, key=lambda r: r["width"])
    narrowest = min(same_kind, key=lambda r: r["width"])
    drop = narrowest["local_mean_auroc"] - widest["local_mean_auroc"]
    checks = {"widest_closes_gap": widest["mean_gap_closed"] >= config.acceptance_gap_closed,
              "narrowest_does_not": not narrowest["mean_gap_closed"] >= config.acceptance_gap_closed,
              "local_auroc_holds": drop <= config.acceptance_local_drop}
    return {"widest": widest["arm"], "narrowest": narrowest["arm"],
            "widest_mean_gap_closed": widest["mean_gap_closed"], "narrowest_mean_gap_closed": narrowest["mean_gap_closed"],
            "local_mean_auroc_drop": drop, "threshold_gap_closed": config.acceptance_gap_closed,
            "threshold_local_drop": config.acceptance_local_drop, **checks, "passed": all(checks.values())}


def collect_results(config, arms, skipped: list[dict], out: Path, timings: dict, bp_per_token: float,
                    device: str) -> dict:
    rows, features, gaps = [], [], []
    for arm in arms:
        row, arm_features, arm_gaps = arm_result(config, arm, out, timings)
        rows.append(row)
        features += arm_features
        gaps += arm_gaps
    kind = arms[0].attention
    return {"device": device, "bp_per_token": bp_per_token, "pretrained_attention": kind,
            "budget": {"steps": config.steps, "batch": config.batch_size, "lr": config.lr},
            "model": config.model, "long_range": config.long_range, "arms": rows, "skipped_arms": skipped,
            "same_test_bins": len({r["test_bins_sha256"] for r in rows}) == 1,
            "gaps": gaps, "per_feature": features, "seconds": timings,
            "acceptance": acceptance(config, rows, kind)}


def write_outputs(results: dict, out: Path) -> None:
    """results.json, the three TSVs and report.html (written atomically)."""
    import pandas as pd

    from genomics_bigbird.atomic import atomic_path, atomic_write
    from genomics_bigbird.evaluate.report import write_html_report
    from pipelines.evaluate import json_safe

    with atomic_write(out / "results.json") as handle:
        json.dump(json_safe(results), handle, indent=2)
        handle.write("\n")
    for name, rows in (("results", results["arms"]), ("per_feature", results["per_feature"]), ("gaps", results["gaps"])):
        with atomic_path(out / f"{name}.tsv") as tmp:
            pd.DataFrame(rows).to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    figure = plot_context(results, out / "context.png")
    accept = results["acceptance"]
    sections = [("arms (equal steps and batch; RC ensemble on the same test bins)", results["arms"], [figure]),
                ("long-range features: gap to the bin-motif feature", results["gaps"], []),
                ("acceptance", [accept], []),
                ("skipped arms", results["skipped_arms"], [])]
    write_html_report(out / "report.html", "gbb experiment context: window width x attention", sections)


def plot_context(results: dict, path: Path) -> Path:
    """One figure: gap closed per long-range feature and arm; local vs long-range mean AUROC per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genomics_bigbird.atomic import atomic_path

    arms = [r["arm"] for r in results["arms"]]
    features = list(results["long_range"])
    fig, (gap_ax, auc_ax) = plt.subplots(1, 2, figsize=(12, 4.2))
    width = 0.8 / max(len(arms), 1)
    for i, arm in enumerate(arms):
        closed = [next((g["gap_closed"] for g in results["gaps"] if g["arm"] == arm and g["feature"] == f), np.nan)
                  for f in features]
        gap_ax.bar(np.arange(len(features)) + i * width, closed, width, label=arm)
    gap_ax.axhline(results["acceptance"]["threshold_gap_closed"], color="grey", linestyle=":", linewidth=1)
    gap_ax.set_xticks(np.arange(len(features)) + width * (len(arms) - 1) / 2,
                      [f"{f} vs {results['long_range'][f]}" for f in features])
    gap_ax.set(ylabel="AUPRC gap closed (0 = bin only, 1 = as the bin motif)", title="long-range features")
    gap_ax.legend(fontsize=7)
    x = np.arange(len(arms))
    auc_ax.bar(x - 0.2, [r["local_mean_auroc"] for r in results["arms"]], 0.4, label="local features")
    auc_ax.bar(x + 0.2, [r["long_range_mean_auroc"] for r in results["arms"]], 0.4, label="long-range features")
    auc_ax.set_xticks(x, arms, rotation=30, ha="right", fontsize=8)
    auc_ax.set(ylabel="mean AUROC (test, RC ensemble)", ylim=(0.4, 1.0), title="local vs long-range")
    auc_ax.legend(fontsize=8)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def format_summary(results: dict) -> str:
    """The table printed at the end of the experiment."""
    header = f"{'arm':<24} {'tokens seen':>12} {'tokens/s':>9} {'wall s':>8} {'local AUROC':>11} " \
             f"{'long AUROC':>10} {'gap closed':>10}"
    lines = ["", "gbb experiment context (test split, RC ensemble)", header, "-" * len(header)]
    for r in results["arms"]:
        lines.append(f"{r['arm']:<24} {r['tokens_seen'] or 0:>12,} {r['tokens_per_s'] or math.nan:>9.0f} "
                     f"{r['wall_s']:>8.1f} {r['local_mean_auroc']:>11.4f} {r['long_range_mean_auroc']:>10.4f} "
                     f"{r['mean_gap_closed']:>10.3f}")
    accept = results["acceptance"]
    lines.append(f"acceptance: {'passed' if accept['passed'] else 'not met'} ({accept['widest']} closes "
                 f"{accept['widest_mean_gap_closed']:.3f}, {accept['narrowest']} {accept['narrowest_mean_gap_closed']:.3f}; "
                 f"local AUROC drop {accept['local_mean_auroc_drop']:+.4f})")
    return "\n".join(lines)
