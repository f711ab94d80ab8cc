"""Keras against the PyTorch mirror, side by side in one process, same ArchConfig and batch.

Measured, warm-up excluded, as the median and the spread (min..max) of several repetitions:

* training images/s (Adam, the paper's Dice loss, one batch per step) and inference images/s
  of Keras float32, Keras ``mixed_bfloat16`` (when the CPU has bf16), Keras with
  ``jit_compile=True`` (XLA), and the PyTorch mirror in float32 NCHW, float32 channels_last and
  bf16 autocast channels_last, each also with one thread (``--modes`` lists the others). Keras
  runs as the project does: training with the fused batch norm, prediction through
  ``inference_model`` (batch norm folded into the convolutions); ``keras-fp32-kerasbn`` and
  ``keras-bf16-kerasbn`` use Keras' own BatchNormalization throughout, for comparison;
* single-slice latency (batch 1) at 256x256 and 512x512 (a size-agnostic copy of the config);
* the ``tf.data`` input pipeline alone: real PNG slices decoded and preprocessed by
  ``make_file_dataset`` without and with an in-memory cache, and preloaded arrays through
  ``make_dataset`` (what ``unet_keras.training`` feeds ``fit``), all with augmentation;
* a float32 and a bfloat16 matmul peak (GFLOP/s, the better of TensorFlow and PyTorch, timed in
  the same rounds as the training steps) and every mode's achieved training GFLOP/s (analytic
  count, :mod:`unet_keras.flops`) as a fraction of its precision's peak; peak resident memory.

All modes are built first and then timed round-robin (one call of each mode per round), so a
machine load that changes during the run weighs on every mode alike.

Each framework runs in its own process: Keras (and the input pipeline) in this one, PyTorch in a
spawned worker that never imports TensorFlow; this process sends it one call at a time and the
worker times it, so the round-robin order is unchanged. With torch 2.14.1 (the CUDA wheel that
pip resolves without the README's pin) loading Triton's native library -- which
``torch.optim.Adam`` does on first use, through ``torch._dynamo`` -- into a process that holds
TensorFlow 2.21 is a segmentation fault; in one process the benchmark died there. A worker that
dies anyway costs only its modes, reported as errors.

Prints a Markdown table, the issue's targets and, last, the ratios fastest Keras mode / fastest
PyTorch mode. ``--json PATH`` writes every number: top-level ``ratios`` (``train``, ``infer``:
fastest Keras / fastest PyTorch), ``ratios_fp32`` (Keras float32 / best PyTorch float32) and
``pipeline_over_train`` (cached file pipeline, epoch 2+, over the fastest Keras training).
The 1-minute load average is recorded with every measurement: on a shared machine the numbers
are pessimistic.

    python benchmarks/bench.py --quick --json bench.json
    python benchmarks/bench.py --base-filters 32 --modes keras-fp32,torch-fp32-cl --no-pipeline
    TF_ENABLE_ONEDNN_OPTS=0 python benchmarks/bench.py --quick --modes keras-fp32
"""

# The parts, one module per concern: runners.py (the modes and what is timed: Keras here, the
# tf.data pipeline), torch_worker.py (the PyTorch process), timing.py (round-robin timing,
# matmul peaks, machine facts), report.py (the table, targets, ratios and --json). They import
# neither TensorFlow nor PyTorch at module level (the PyTorch worker must never load TensorFlow).

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a file (python benchmarks/bench.py): import its parts
    sys.path.insert(0, str(REPO))  # as the package benchmarks

from benchmarks.report import build_report, print_report  # noqa: E402
from benchmarks.runners import (  # noqa: E402
    BF16_MODES,
    DEFAULT_MODES,
    KERAS_MODES,
    PAPER,
    TORCH_MODES,
    run_modes,
    run_pipeline,
)
from benchmarks.timing import (  # noqa: E402
    cpu_has_bf16,
    cpu_model,
    matmul_summary,
    tf_matmul_calls,
)
from benchmarks.torch_worker import TorchWorker  # noqa: E402

if TYPE_CHECKING:
    from unet_keras.config import ArchConfig


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[1:]))
    ap.add_argument("--quick", action="store_true",
                    help="1 warm-up and 3 timed calls, 120 slices for the pipeline (about 7 min "
                         "on an idle 2-core CPU; the default: 2 and 5, 300 slices)")
    ap.add_argument("--json", metavar="PATH", help="write all results as JSON")
    ap.add_argument("--markdown", metavar="PATH", help="write the Markdown table")
    ap.add_argument("--modes", default=",".join(DEFAULT_MODES),
                    help=f"comma-separated, of {', '.join([*KERAS_MODES, *TORCH_MODES])} "
                         "(default: %(default)s)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--size", type=int, default=256, help="training/inference H = W")
    ap.add_argument("--base-filters", type=int, default=64)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--latency-sizes", default="256,512",
                    help="comma-separated single-slice sizes ('' for none)")
    ap.add_argument("--warmup", type=int, help="untimed calls per measurement (default 2, "
                    "--quick 1)")
    ap.add_argument("--reps", type=int, help="timed calls per measurement (default 5, "
                    "--quick 3)")
    ap.add_argument("--matmul-n", type=int, default=2048, help="matmul side (default 2048)")
    ap.add_argument("--no-pipeline", action="store_true", help="skip the tf.data measurement")
    ap.add_argument("--pipeline-files", type=int, help="real slices read (default 300, "
                    "--quick 120)")
    ap.add_argument("--data", type=Path,
                    default=Path(os.environ.get("UNET_KERAS_DATA", REPO.parent / "shared/data")),
                    help="folder holding figshare-png/ (default: $UNET_KERAS_DATA or "
                         "../shared/data)")
    ap.add_argument("--intra-threads", type=int, default=0,
                    help="TensorFlow intra-op threads (0: TensorFlow's default)")
    ap.add_argument("--inter-threads", type=int, default=0,
                    help="TensorFlow inter-op threads (0: TensorFlow's default)")
    ap.add_argument("--torch-threads", type=int, default=0,
                    help="torch.set_num_threads (0: PyTorch's default)")
    args = ap.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in args.modes if m not in KERAS_MODES and m not in TORCH_MODES]
    if unknown:
        ap.error(f"unknown mode(s) {unknown}; choose from {[*KERAS_MODES, *TORCH_MODES]}")
    args.latency_sizes = [int(s) for s in args.latency_sizes.split(",") if s.strip()]
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    args.reps = args.reps if args.reps is not None else (3 if args.quick else 5)
    args.pipeline_files = args.pipeline_files or (120 if args.quick else 300)
    return args


def set_threads_and_describe(intra: int, inter: int) -> dict[str, Any]:
    """Apply TensorFlow's thread settings (0 keeps its default; they must be set before it runs
    anything) and describe the machine and the libraries (PyTorch's side comes from its
    worker)."""
    import keras
    import tensorflow as tf

    if intra:
        tf.config.threading.set_intra_op_parallelism_threads(intra)
    if inter:
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    return {
        "cpu": cpu_model(), "cores": os.cpu_count(), "bf16": cpu_has_bf16(),
        "python": platform.python_version(), "tensorflow": tf.__version__,
        "keras": keras.__version__, "torch": None,
        "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "(unset: on)"),
        "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "tf_inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "torch_threads": None, "load_avg_start": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    from unet_keras.config import ArchConfig  # the package hides TensorFlow's start-up lines

    env = set_threads_and_describe(args.intra_threads, args.inter_threads)
    try:
        config = ArchConfig(input_shape=(args.size, args.size, 3),
                            base_filters=args.base_filters, depth=args.depth)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.no_pipeline and not (args.data / "figshare-png" / "images").is_dir():
        print(f"error: {args.data / 'figshare-png'}: no images/ folder of real slices for the "
              "pipeline measurement (set --data or UNET_KERAS_DATA, or pass --no-pipeline)",
              file=sys.stderr)
        return 2
    bf16 = env["bf16"]
    modes = [m for m in args.modes if bf16 or m not in BF16_MODES]
    is_paper = all(getattr(config, k) == v for k, v in PAPER.items())
    repeat = 4 if args.quick else 8
    worker = None
    torch_modes = [m for m in modes if m in TORCH_MODES]
    if torch_modes:  # a separate process: see the module docstring
        worker = TorchWorker(torch_modes, config, args.batch, args.latency_sizes,
                             args.matmul_n, repeat, bf16, args.torch_threads)
        env["torch"], env["torch_threads"] = worker.info["torch"], worker.info["torch_threads"]
        env["torch_process_imported_tensorflow"] = worker.info["tensorflow_imported"]
    try:
        return _run(args, env, config, modes, is_paper, repeat, worker, started)
    finally:
        if worker:
            worker.close()


def _run(args: argparse.Namespace, env: dict[str, Any], config: ArchConfig, modes: list[str],
         is_paper: bool, repeat: int, worker: TorchWorker | None, started: float) -> int:
    """Everything after start-up: the timed rounds, the pipeline, the report."""
    bf16 = env["bf16"]
    print(f"{env['cpu']}, {env['cores']} cores, bf16 {bf16}; TF {env['tensorflow']}, Keras "
          f"{env['keras']}, torch {env['torch']}; load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"config {config.to_dict()} ({'paper' if is_paper else 'NOT the paper config'}), "
          f"batch {args.batch}, {args.warmup} warm-up + {args.reps} timed calls each",
          flush=True)
    skipped = sorted(set(args.modes) - set(modes))
    if skipped:
        print(f"skipped (no bf16 on this CPU): {skipped}")

    results, mm_timings = run_modes(
        modes, config, args.batch, args.latency_sizes, args.warmup, args.reps,
        tf_matmul_calls(args.matmul_n, repeat, bf16),
        lambda line: print(f"  {line}  [load {os.getloadavg()[0]:.2f}]", flush=True), worker)
    matmul = matmul_summary(mm_timings, args.matmul_n, repeat)

    pipeline = None
    if not args.no_pipeline:
        pipeline = run_pipeline(args.data, args.size, config.channels, args.batch,
                                args.pipeline_files, 2 if args.quick else 3)

    report, table = build_report(args, env, config, is_paper, results, matmul, pipeline,
                                 worker.rss() if worker else None, started)
    print_report(report, table, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
