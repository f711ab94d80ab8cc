"""What the benchmark reports: per-mode summaries with achieved GFLOP/s against the matmul
peak (:func:`summarize`), the Markdown table (:func:`markdown`), the ratios Keras / PyTorch and
the issue's targets (:func:`targets`), all gathered into the ``--json`` report
(:func:`build_report`) and printed or written by :func:`print_report`.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.runners import BF16_MODES, KERAS_MODES, TORCH_FP32_MODES, TORCH_MODES, ModeResult
from benchmarks.timing import Timing, peak_rss_mib

if TYPE_CHECKING:
    from unet_keras.config import ArchConfig


def _ms(t: Timing | None) -> str:
    return f"{1000 * t.median_s:.0f} ({1000 * min(t.seconds):.0f}-{1000 * max(t.seconds):.0f})" \
        if t else "-"


def _rate(t: Timing | None) -> str:
    if t is None:
        return "-"
    return f"{t.rate:.2f} ({t.images / max(t.seconds):.2f}-{t.images / min(t.seconds):.2f})"


def summarize(results: list[ModeResult], peaks: dict[str, float], train_flops_per_image: int,
              ) -> dict[str, dict[str, Any]]:
    """Per mode: the timings as dicts, achieved training GFLOP/s and its fraction of the peak
    of the mode's precision."""
    out = {}
    for r in results:
        d: dict[str, Any] = {}
        if r.error:
            d["error"] = r.error
        if r.train:
            d["train"] = r.train.to_dict()
            gflops = train_flops_per_image * r.train.rate / 1e9
            peak = peaks["bfloat16" if r.name in BF16_MODES else "float32"]
            d["train_gflops"] = round(gflops, 1)
            d["train_fraction_of_peak"] = round(gflops / peak, 3) if peak else None
        if r.infer:
            d["infer"] = r.infer.to_dict()
        d["latency"] = {str(s): t.to_dict() for s, t in r.latency.items()}
        if r.resized:
            d["latency_512_via_resize"] = r.resized.to_dict()
        out[r.name] = d
    return out


def markdown(results: list[ModeResult], modes: dict[str, dict[str, Any]],
             pipeline: dict[str, Any] | None, sizes: list[int]) -> str:
    """The results as Markdown tables (medians, spread min-max in parentheses)."""
    head = ["mode", "train img/s", "train GFLOP/s (% peak)", "infer img/s"] + \
        [f"latency {s}² ms" for s in sizes] + ["512² via resize ms"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        m = modes[r.name]
        if r.error:
            lines.append(f"| {r.name} | error: {r.error} |")
            continue
        frac = m.get("train_fraction_of_peak")
        gf = f"{m['train_gflops']:.0f} ({100 * frac:.0f}%)" if frac is not None else "-"
        cells = [r.name, _rate(r.train), gf, _rate(r.infer)] + \
            [_ms(r.latency.get(s)) for s in sizes] + [_ms(r.resized)]
        lines.append("| " + " | ".join(cells) + " |")
    if pipeline:
        lines += ["", f"| tf.data pipeline ({pipeline['files']} real slices -> "
                  f"{pipeline['size']}², augment) | images/s per epoch | steady |",
                  "|---|---|---|"]
        for label in ("files, no cache", "files, memory cache", "arrays"):
            p = pipeline[label]
            lines.append(f"| {label} | {', '.join(map(str, p['epochs_images_per_s']))} "
                         f"| {p['images_per_s']} |")
    return "\n".join(lines)


def best(results: list[ModeResult], names: set[str], what: str) -> ModeResult | None:
    """The mode among ``names`` with the highest median ``what`` ("train"/"infer") rate."""
    cands = [r for r in results if r.name in names and getattr(r, what) is not None]
    return max(cands, key=lambda r: getattr(r, what).rate, default=None)


def ratio(a: ModeResult | None, b: ModeResult | None, what: str) -> float | None:
    if a is None or b is None:
        return None
    return round(getattr(a, what).rate / getattr(b, what).rate, 3)


def targets(results: list[ModeResult], modes: dict[str, dict[str, Any]],
            pipeline_over_train: float | None, is_paper: bool) -> list[dict[str, Any]]:
    """The issue's targets with the measured values (``met`` is None when not measured)."""
    keras_names, torch_names = set(KERAS_MODES), set(TORCH_MODES)
    rows = []

    def add(name: str, value: float | None, goal: str, ok: Callable[[float], bool]) -> None:
        rows.append({"target": name, "value": value, "goal": goal,
                     "met": None if value is None else bool(ok(value))})

    kf = [r for r in results if r.name == "keras-fp32" and r.train]
    for what in ("train", "infer"):
        add(f"keras-fp32 / best torch fp32 layout, {what}",
            ratio(kf[0] if kf else None, best(results, TORCH_FP32_MODES, what), what), ">= 1.0",
            lambda v: v >= 1.0)
        add(f"fastest keras / fastest torch, {what}",
            ratio(best(results, keras_names, what), best(results, torch_names, what), what),
            ">= 1.0", lambda v: v >= 1.0)
    add("pipeline (memory cache, steady) / fastest keras training", pipeline_over_train,
        ">= 10", lambda v: v >= 10)
    for name in ("keras-fp32", "keras-bf16"):
        frac = modes.get(name, {}).get("train_fraction_of_peak")
        add(f"{name} training, fraction of its precision's matmul peak", frac, ">= 0.65",
            lambda v: v >= 0.65)
    lat = [(r.latency[512].median_s, r.name) for r in results
           if r.name in keras_names and 512 in r.latency]
    for seconds, name in sorted(lat)[:1]:
        add(f"512² slice at full resolution, fastest keras mode ({name}), s", round(seconds, 3),
            "< 0.5", lambda v: v < 0.5)
    lat = [(r.resized.median_s, r.name) for r in results if r.resized]
    for seconds, name in sorted(lat)[:1]:
        add(f"512² slice via predict_any_size (resized to the model input), fastest keras mode "
            f"({name}), s", round(seconds, 3), "< 0.5", lambda v: v < 0.5)
    if not is_paper:
        for row in rows:
            row["note"] = "not the paper config: indicative only"
    return rows


def build_report(args: argparse.Namespace, env: dict[str, Any], config: ArchConfig,
                 is_paper: bool, results: list[ModeResult], matmul: dict[str, Any],
                 pipeline: dict[str, Any] | None, torch_rss_mib: float | None,
                 started: float) -> tuple[dict[str, Any], str]:
    """The ``--json`` report (every number) and the Markdown table of a finished run.

    Args:
        args: the parsed command line (batch, warm-up, reps, latency sizes...).
        env: the machine and the libraries (``set_threads_and_describe`` in ``bench.py``).
        results: every mode's timings (:func:`benchmarks.runners.run_modes`).
        matmul: :func:`benchmarks.timing.matmul_summary` of the matmul calls.
        pipeline: :func:`benchmarks.runners.run_pipeline`'s result, or None when skipped.
        torch_rss_mib: the PyTorch worker's peak RSS, or None (no worker, or it died).
        started: ``time.perf_counter()`` at the start of the run.
    """
    from unet_keras.flops import forward_flops, train_flops

    peaks = matmul["peak_gflops"]
    flops = train_flops(config)
    modes_out = summarize(results, peaks, flops)
    fastest_keras = best(results, set(KERAS_MODES), "train")
    pipeline_over_train = pipeline_over_train_nocache = None
    if pipeline and fastest_keras:
        pipeline_over_train = round(
            pipeline["files, memory cache"]["images_per_s"] / fastest_keras.train.rate, 1)
        pipeline_over_train_nocache = round(
            pipeline["files, no cache"]["images_per_s"] / fastest_keras.train.rate, 1)
    ratios = {what: ratio(best(results, set(KERAS_MODES), what),
                          best(results, set(TORCH_MODES), what), what)
              for what in ("train", "infer")}
    fp32 = [r for r in results if r.name == "keras-fp32" and r.train]
    ratios_fp32 = {what: ratio(fp32[0] if fp32 else None,
                               best(results, TORCH_FP32_MODES, what), what)
                   for what in ("train", "infer")}
    table = markdown(results, modes_out, pipeline, args.latency_sizes)
    target_rows = targets(results, modes_out, pipeline_over_train, is_paper)
    report = {
        "config": config.to_dict(), "paper_config": is_paper, "batch": args.batch,
        "warmup": args.warmup, "reps": args.reps, "quick": args.quick, "env": env,
        "flops": {"train_per_image": flops, "forward_per_image": forward_flops(config)},
        "matmul": matmul, "modes": modes_out, "pipeline": pipeline,
        "pipeline_over_train": pipeline_over_train,
        "pipeline_over_train_nocache": pipeline_over_train_nocache,
        "ratios": ratios, "ratios_fp32": ratios_fp32, "targets": target_rows,
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "peak_rss_mib_torch_process": torch_rss_mib,
        "load_avg_end": os.getloadavg(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    return report, table


def print_report(report: dict[str, Any], table: str, args: argparse.Namespace) -> None:
    """Print the table, the matmul peaks, the targets and, last, the ratios fastest Keras /
    fastest PyTorch; write ``--markdown`` and ``--json`` when asked for."""
    matmul, peaks = report["matmul"], report["matmul"]["peak_gflops"]
    flops = report["flops"]["train_per_image"]
    print()
    print(table)
    print()
    print(f"matmul {args.matmul_n}² timed in the training rounds (median of the best framework):"
          f" float32 {peaks['float32']}, bfloat16 {peaks['bfloat16']} GFLOP/s (best single call "
          f"{matmul['best_gflops']['float32']}, {matmul['best_gflops']['bfloat16']})")
    print(f"training: {flops / 1e9:.1f} GFLOP per image (analytic); peak RSS "
          f"{report['peak_rss_mib']:.0f} MiB (Keras process), "
          f"{report['peak_rss_mib_torch_process']} MiB (PyTorch process); load average at end "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())} on {report['env']['cores']} cores "
          "(a loaded machine makes every number pessimistic)")
    for row in report["targets"]:
        verdict = {True: "met", False: "NOT met", None: "not measured"}[row["met"]]
        print(f"target {row['target']}: {row['value']} (goal {row['goal']}) -> {verdict}")
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    ratios, ratios_fp32 = report["ratios"], report["ratios_fp32"]
    print(f"pipeline_over_train {report['pipeline_over_train']} "
          f"(no cache: {report['pipeline_over_train_nocache']})")
    print(f"ratios keras-fp32 / best torch fp32: train {ratios_fp32['train']}, "
          f"infer {ratios_fp32['infer']}")
    print(f"ratios fastest keras / fastest torch: train {ratios['train']}, "
          f"infer {ratios['infer']}")
