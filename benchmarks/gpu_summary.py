"""The GPU suite's figures: our numbers beside the in-run baselines, the H100 anchors and the issue's targets.

Reads the JSON files the suite's parts wrote (and the pretraining/fine-tuning runs' metrics) and
turns them into rows for suite.json and summary.md. A target is judged on CUDA only; a judged
target whose figure is missing fails.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

from benchmarks.harness import is_finite

# Targets on one H100, base 12 x 768, bf16 (GB = 1e9 bytes), and the anchors measured there with
# stand-alone scripts: plain PyTorch + FlexAttention BigBird, dense SDPA, HF BigBird (block_sparse).
TRAIN_TARGETS = {(4096, 8): 600_000, (65536, 1): 420_000}
TRAIN_ANCHORS = {(4096, 8): "512k ours, 383k dense, 65.7k HF BigBird, 222k HF BERT",
                 (16384, 2): "411k ours, 162k dense", (65536, 1): "376k ours, 50k dense"}
PEAK_MEMORY_TARGET_GB = 12.0
ATTENTION_TARGET_MS = {(4096, 4): 0.9}
ATTENTION_ANCHORS = {(4096, 4): "1.09 ms flex-128, 1.80 ms dense, 15.0 ms HF",
                     (16384, 1): "1.52 ms flex-128, 6.1 ms dense", (65536, 1): "5.9 ms flex-128, 95 ms dense"}
VARIANTS_TARGET = 300.0
BASELINE_MODELS = ("dense-sdpa", "hf-bigbird", "hf-bert")   # train_step rows that are not ours


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _metrics(path: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except OSError:
        return []


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def pretrain_result(work: Path, steps: tuple[int, int]) -> dict:
    """Did the loss fall over the first run, and did the resumed run continue at the next step?"""
    first, total = steps
    losses = {r["step"]: r["loss"] for r in _metrics(work / "pretrain" / "metrics.jsonl") if "loss" in r}
    window = max(first // 6, 1)
    start = _mean([losses[s] for s in range(1, window + 1) if s in losses])
    end = _mean([losses[s] for s in range(first - window + 1, first + 1) if s in losses])
    resumed = _mean([losses[s] for s in range(first + 1, total + 1) if s in losses])
    result = {"steps_logged": sorted(losses), "expected_steps": list(range(1, total + 1)),
              "loss_first_steps": start, "loss_before_checkpoint": end, "loss_after_resume": resumed,
              "final_weights": (work / "pretrain" / "final").is_dir()}
    result["steps_continue"] = result["steps_logged"] == result["expected_steps"]
    result["loss_falls"] = end < start and resumed < start
    return result


def finetune_result(work: Path) -> dict:
    records = _metrics(work / "finetune" / "metrics.jsonl")
    losses = [r["loss"] for r in records if "loss" in r]
    valid = [r for r in records if "valid_auroc" in r]
    result = {"steps": len(losses), "loss_first": losses[0] if losses else None,
              "loss_last": losses[-1] if losses else None, "valid_auroc": valid[-1]["valid_auroc"] if valid else None,
              "best": (work / "finetune" / "best").is_dir()}
    result["ok"] = bool(losses) and all(math.isfinite(x) for x in losses) and bool(valid) and result["best"]
    return result


def derive_outputs(out: Path, work: Path, pretrain_steps: tuple[int, int]) -> None:
    """pretrain.json and finetune.json in `out`, from the runs' metrics in the scratch folder."""
    (out / "pretrain.json").write_text(json.dumps(pretrain_result(work, pretrain_steps), indent=2) + "\n")
    (out / "finetune.json").write_text(json.dumps(finetune_result(work), indent=2) + "\n")


def _row(figure, ours, baseline="", anchor="", target="", result="") -> dict:
    return {"figure": figure, "ours": ours, "baseline": baseline, "anchor": anchor, "target": target, "result": result}


def _verdict(passed: bool | None, judged: bool) -> str:
    if not judged:
        return "not judged (CPU)"
    return "PASS" if passed else "FAIL"


def _figure(row: dict | None, key: str, fmt: str) -> str:
    if row is None:
        return "not run"
    if is_finite(row.get(key)):
        return format(row[key], fmt)
    return "out of memory" if row.get("out_of_memory") else row.get("error", row.get("skipped", "no figure"))[:80]


def _by(results: list[dict], name_key: str, name: str, **shape) -> dict | None:
    return next((r for r in results if r.get(name_key) == name and all(r.get(k) == v for k, v in shape.items())), None)


def gpu_check_rows(report: dict, judged: bool) -> list[dict]:
    rows = [_row(f"kernels == float64 reference ({len(report['lengths'])} lengths, fp32 + bf16, flex + gather)",
                 f"{report['passed']} passed, {report['failed']} failed",
                 result="PASS" if report["failed"] == 0 and report["passed"] > 0 else "FAIL")]
    for case in report["results"]:
        if case.get("check") == "compiled flex graphs":
            rows.append(_row(f"compiled flex graphs for {case['lengths']} lengths", str(case["graphs"]),
                             target=f"<= {case['allowed']}", result="PASS" if case["ok"] else "FAIL"))
        if case.get("check") == "flex sparse speed":
            ratio = case.get("speedup_vs_dense_sdpa")
            rows.append(_row(f"flex forward, {case['length']} tokens x {case['heads']} heads",
                             f"{case.get('flex_ms', float('nan')):.3f} ms ({ratio or float('nan'):.1f}x faster)",
                             f"dense SDPA {case.get('dense_sdpa_ms', float('nan')):.3f} ms; flex over a full layout "
                             f"{case.get('flex_full_layout_ms', float('nan')):.3f} ms",
                             target=f">= {case['target_vs_dense_sdpa']:.0f}x faster than dense",
                             result=_verdict(case["ok"] and "error" not in case, judged and case["judged"])))
    return rows


def attention_rows(report: dict, judged: bool) -> list[dict]:
    results, rows = report["results"], []
    for tokens, batch in dict.fromkeys((r["tokens"], r["batch"]) for r in results):
        dense = _by(results, "method", "dense-sdpa", tokens=tokens, batch=batch)
        hf = _by(results, "method", "hf-bigbird", tokens=tokens, batch=batch)
        baseline = (f"dense SDPA {_figure(dense, 'median_ms', '.3f')} ms; "
                    f"HF BigBird {_figure(hf, 'median_ms', '.3f')} ms")
        for row in results:
            if row["method"] in ("dense-sdpa", "hf-bigbird") or (row["tokens"], row["batch"]) != (tokens, batch):
                continue
            target = ATTENTION_TARGET_MS.get((tokens, batch)) if row["method"] == "bigbird-flex-128" else None
            rows.append(_row(f"attention {row.get('pass', 'fwd+bwd')}, {tokens} x {batch}, {row['method']}",
                             f"{_figure(row, 'median_ms', '.3f')} ms", baseline,
                             ATTENTION_ANCHORS.get((tokens, batch), "") if row["method"] == "bigbird-flex-128" else "",
                             f"<= {target} ms" if target else "",
                             _verdict(is_finite(row.get("median_ms")) and row["median_ms"] <= target, judged)
                             if target else ""))
    return rows


def train_step_rows(report: dict, judged: bool) -> list[dict]:
    results, rows = report["results"], []
    for tokens, batch in dict.fromkeys((r["tokens"], r["batch"]) for r in results):
        others = [_by(results, "model", name, tokens=tokens, batch=batch) for name in BASELINE_MODELS]
        baseline = "; ".join(f"{r['model']} {_figure(r, 'tokens_per_s', ',.0f')}" for r in others if r)
        for row in results:
            if row["model"] in BASELINE_MODELS or (row["tokens"], row["batch"]) != (tokens, batch):
                continue
            target = TRAIN_TARGETS.get((tokens, batch)) if row["model"] == "bigbird-128" else None
            rows.append(_row(f"MLM+NSP step, {tokens} x {batch}, {row['model']} (tokens/s)",
                             _figure(row, "tokens_per_s", ",.0f"), baseline,
                             TRAIN_ANCHORS.get((tokens, batch), "") if row["model"] == "bigbird-128" else "",
                             f">= {target:,}" if target else "",
                             _verdict(is_finite(row.get("tokens_per_s")) and row["tokens_per_s"] >= target, judged)
                             if target else ""))
            if row["model"] == "bigbird-128" and (tokens, batch) == (4096, 8):
                gb = row["peak_memory_gib"] * 2**30 / 1e9 if is_finite(row.get("peak_memory_gib")) else None
                rows.append(_row("peak memory, 4096 x 8, bigbird-128", f"{gb:.1f} GB" if gb else "no figure",
                                 anchor="12.2 GB", target=f"<= {PEAK_MEMORY_TARGET_GB:.0f} GB",
                                 result=_verdict(gb is not None and gb <= PEAK_MEMORY_TARGET_GB, judged)))
    return rows


def _ran(row: dict) -> str:
    """HF's attention as read back after the run, when it is HF's."""
    if not (row["model"].startswith("hf") and row.get("attention_ran")):
        return ""
    return f" (ran {', '.join(row['attention_ran'])})"


def score_variant_rows(report: dict, judged: bool) -> list[dict]:
    results = report["results"]
    ours = _by(results, "model", "bigbird")
    others = [r for r in results if r["model"] != "bigbird"]
    baseline = "; ".join(f"{r['model']} {_figure(r, 'variants_per_s', ',.1f')}" + _ran(r) for r in others)
    return [_row(f"variant scoring, {report['width_bp']} bp, RC-ensembled (variants/s)",
                 _figure(ours, "variants_per_s", ",.1f"), baseline, target=f">= {VARIANTS_TARGET:.0f}",
                 result=_verdict(ours is not None and is_finite(ours.get("variants_per_s"))
                                 and ours["variants_per_s"] >= VARIANTS_TARGET, judged))]


def run_rows(out: Path, judged: bool) -> list[dict]:
    rows = []
    pre = _load(out / "pretrain.json")
    if pre is not None:
        # A few tiny CPU steps are too noisy to judge the loss by; the step numbering always counts.
        rows.append(_row("gbb pretrain: loss at the first steps, before the checkpoint, after --resume",
                         " -> ".join(f"{pre[k]:.3f}" for k in ("loss_first_steps", "loss_before_checkpoint",
                                                                "loss_after_resume")),
                         target="falls; steps continue after resume; final/ written",
                         result="PASS" if pre["steps_continue"] and pre["final_weights"]
                         and (pre["loss_falls"] or not judged) else "FAIL"))
    fine = _load(out / "finetune.json")
    if fine is not None:
        auroc = fine["valid_auroc"]
        rows.append(_row("gbb finetune chromatin: loss first -> last; valid mean AUROC",
                         f"{fine['loss_first']} -> {fine['loss_last']}; "
                         f"{'n/a' if auroc is None or not math.isfinite(auroc) else format(auroc, '.3f')}",
                         target="runs, validates, writes best/", result="PASS" if fine["ok"] else "FAIL"))
    return rows


def summary_rows(out: Path, judged: bool) -> list[dict]:
    """Every figure of the suite as rows: figure, ours, baseline, anchor, target, result."""
    rows = []
    for name, make in (("gpu_check", gpu_check_rows), ("attention", attention_rows),
                       ("train_step_4096", train_step_rows), ("train_step_16384", train_step_rows),
                       ("train_step_65536", train_step_rows), ("score_variants", score_variant_rows)):
        report = _load(out / f"{name}.json")
        if report is not None:
            rows += make(report, judged)
    return rows + run_rows(out, judged)


def write_summary(path: Path, suite: dict) -> None:
    """summary.md: the figures table, then each part's status and time."""
    lines = [f"# GPU suite, {time.strftime('%Y-%m-%d')}", "",
             "Encoder " + ("compiled whole" if suite["encoder_compiled"] else "eager around the compiled flex kernel")
             + ("; --quick (CPU): targets are not judged" if suite["quick"] else "") + ".", "",
             "| figure | ours | in-run baseline | H100 anchor | target | result |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['figure']} | {r['ours']} | {r['baseline']} | {r['anchor']} | {r['target']} | {r['result']} |"
              for r in suite["figures"]]
    lines += ["", "| part | status | seconds | budget | log |", "|---|---|---|---|---|"]
    lines += [f"| {p['part']} | {p['status']}{': ' + p['error'] if 'error' in p else ''} | {p['seconds']} | "
              f"{p['budget_s']:.0f} | {p['log']} |" for p in suite["parts"]]
    path.write_text("\n".join(lines) + "\n")
