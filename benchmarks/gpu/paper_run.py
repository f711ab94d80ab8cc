"""The paper's 120-epoch run on a GPU machine without TensorFlow (Keras on JAX or PyTorch).

Trains the paper's configuration (``ArchConfig()`` defaults: base 64, depth 4, 256x256x3,
negative Dice, Adam 1e-3, batch 16, 120 epochs) on the unpacked training pool with bf16 mixed
precision, under a time budget that ends training cleanly (with the best-validation model kept)
so a slower-than-planned machine still returns Table 1 and says how many epochs ran. Then:

* Table 1 of the run's own split (train/val/test blocks of the pool), per-image, pooled and
  per-patient, at the slices' resolution (256);
* the held-out test set (``--test``, e.g. the 300 full-size ``figshare-png`` slices) scored at
  its native resolution (512), per-image, pooled, median, misses and Dice by tumour size;
* the weights as bfloat16 shards (:mod:`benchmarks.gpu.weights`), if they fit what comes back.

Everything goes into ``--out``: ``run/`` (the run directory: ``history.csv``, ``curves.png``,
``metrics.json``, ``table1.md``, ...), ``test-native/`` and ``weights/``, plus ``summary.md``.
It is the same code path as ``python train.py --epochs 120 --mixed-precision on`` and
``python evaluate.py``: only the flags differ. ``--tiny`` is the CPU rehearsal (a tiny network,
a few steps) of exactly this script.

    KERAS_BACKEND=jax python benchmarks/gpu/paper_run.py --data /tmp/data/pool \
        --test /tmp/data/test --out /tmp/out --minutes 6
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

#: H200 bf16 dense matrix peak as measured here (8192^3 bf16 products through PyTorch).
H200_BF16_TFLOPS = 790.0

TINY = ["--base-filters", "4", "--depth", "2", "--image-size", "64", "--batch-size", "4",
        "--epochs", "2"]


def train_argv(args: argparse.Namespace, run_dir: Path) -> list[str]:
    """The ``train.py`` flags of the paper's run (or its tiny rehearsal)."""
    argv = ["--data", args.data, "--output", str(run_dir), "--epochs", str(args.epochs),
            "--mixed-precision", "on" if args.bf16 else "off", "--seed", str(args.seed),
            "--time-budget", str(args.minutes), "--split-by", "block"]
    return argv + (TINY if args.tiny else []) + args.train_flag


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="training pool (folder dataset)")
    parser.add_argument("--test", help="held-out test set scored at native resolution")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--minutes", type=float, default=6.0,
                        help="training time budget (minutes, compilation included)")
    parser.add_argument("--epochs", type=int, default=120)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--no-bf16", dest="bf16", action="store_false",
                        help="train in float32 (default: mixed_bfloat16)")
    parser.add_argument("--peak-tflops", type=float, default=H200_BF16_TFLOPS,
                        help="the device's peak, for the throughput line's share")
    parser.add_argument("--tiny", action="store_true", help="CPU rehearsal: tiny net, 2 epochs")
    parser.add_argument("--no-weights", dest="weights", action="store_false",
                        help="do not write the bf16 weight shards")
    parser.add_argument("--train-flag", action="append", default=[],
                        help="one more train.py flag (repeatable), e.g. --train-flag=--quiet")
    args = parser.parse_args(argv)

    import keras

    from unet_keras.cli.train import resolve_config
    from unet_keras.evaluation import evaluate
    from unet_keras.inference import load_model
    from unet_keras.throughput import Throughput
    from unet_keras.training import train

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    run_dir = out / "run"
    started = time.time()
    print(f"backend {keras.backend.backend()}, keras {keras.__version__}", flush=True)
    cfg = resolve_config(train_argv(args, run_dir))
    side = cfg.patch_size or cfg.image_size
    meter = Throughput(cfg.arch, cfg.batch_size, side,
                       args.peak_tflops if cfg.mixed_precision == "on" else None,
                       log=lambda line: print(line, flush=True))
    result = train(cfg, callbacks=[meter])
    train_minutes = (time.time() - started) / 60
    epochs = len(result.history)
    print(f"trained {epochs} of {args.epochs} epochs in {train_minutes:.1f} min", flush=True)

    tables = {"run": evaluate(run_dir=run_dir, resolution="native")}
    if args.test:
        tables["test-native"] = evaluate(model_path=run_dir / "model.keras", data=args.test,
                                         output=out / "test-native", resolution="native")
    if args.weights:
        from benchmarks.gpu.weights import save_shards

        save_shards(load_model(run_dir / "model.keras"), cfg.arch, out / "weights")
    summary = {"backend": keras.backend.backend(),
               "tensorflow_imported": sys.modules.get("tensorflow") is not None,
               "epochs_done": epochs,
               "epochs_planned": args.epochs, "train_minutes": round(train_minutes, 2),
               "total_minutes": round((time.time() - started) / 60, 2),
               "throughput": meter.result, "tables": tables}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "tables"}), flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    os.environ.setdefault("KERAS_BACKEND", "jax")
    sys.exit(main())
