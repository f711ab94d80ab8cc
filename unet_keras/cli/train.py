"""``python train.py`` / ``unet-train``: train the U-Net (see ``--help``).

Every flag can also come from a JSON file (``--config run.json``, keys = flag names with
underscores); flags given on the command line win. The resolved configuration is saved in
the run directory as ``config.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import fields

from unet_keras.cli.common import cli_errors, quiet_tensorflow
from unet_keras.config import TrainConfig

HELP = {
    "data": "dataset folder or file (default: the bundled sample in data/sample)",
    "format": "dataset format: figshare (.mat), lgg (kaggle_3m TIFFs), folder (images/+masks/)",
    "skip_bad": "skip unreadable files with a warning instead of stopping",
    "epochs": "training epochs (the paper: 120)",
    "batch_size": "images per batch (global batch under a distribution strategy)",
    "image_size": "model input size in pixels (256 as in the algorithm section; 512 for the "
                  "paper's fixed size)",
    "channels": "input channels (grayscale replicated; 3 as in the paper)",
    "base_filters": "filters of the first DownConv block (the paper: 64)",
    "depth": "number of DownConv/UpConv blocks (the paper: 4)",
    "dropout": "dropout rate after the bottleneck and each decoder concatenation (0 = off)",
    "attention": "additive attention gates on the skip connections (Attention U-Net)",
    "loss": "dice = the paper's negative Dice; bce_dice = binary cross-entropy minus Dice",
    "smooth": "Dice/IoU smoothing constant s",
    "optimizer": "adam, or sgd with --momentum",
    "lr": "initial learning rate",
    "momentum": "SGD momentum",
    "lr_patience": "epochs without val Dice gain before the learning rate is reduced",
    "lr_factor": "learning-rate reduction factor on plateau",
    "min_lr": "lower bound of the learning rate",
    "early_stopping": "stop after this many epochs without val Dice gain (0 = off)",
    "augment": "random rotation, flips and intensity jitter on training batches",
    "split_by": "patient (default when ids exist), block (consecutive file numbers; default "
                "for plain folders) or image (leaks slices of a patient across splits)",
    "val_fraction": "fraction of patients/blocks for validation",
    "test_fraction": "fraction of patients/blocks held out for testing",
    "fold": "K/N: train on fold K of N-fold cross-validation by patient",
    "seed": "random seed (weights, split, shuffling, augmentation)",
    "deterministic": "also enable TensorFlow op determinism (slower)",
    "mixed_precision": "train in mixed_bfloat16 (about 2x faster on CPUs with AVX512_BF16)",
    "jit_compile": "compile the training step with XLA",
    "strategy": "auto, one, mirrored (local devices) or multiworker (TF_CONFIG)",
    "output": "run directory (default: saved_models/run-<date>-<time>)",
    "resume": "continue the run in --output from its last finished epoch",
}


def build_parser(defaults: TrainConfig) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train.py", description="Train the brain-tumor U-Net (Keras).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config", help="JSON file with any of the options below")
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default,
                                help=HELP[f.name])
            continue
        kind = {"epochs": int, "batch_size": int, "image_size": int, "channels": int,
                "base_filters": int, "depth": int, "lr_patience": int, "early_stopping": int,
                "seed": int, "dropout": float, "smooth": float, "lr": float, "momentum": float,
                "lr_factor": float, "min_lr": float, "val_fraction": float,
                "test_fraction": float}.get(f.name, str)
        parser.add_argument(flag, type=kind, default=default, help=HELP[f.name])
    return parser


def resolve_config(argv: list[str] | None) -> TrainConfig:
    """Defaults <- ``--config`` JSON <- command-line flags."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    base = TrainConfig()
    if known.config:
        try:
            overrides = json.loads(open(known.config).read())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{known.config}: not a readable JSON config ({exc})") from None
        base = TrainConfig.from_dict({**base.to_dict(), **overrides})
    args = vars(build_parser(base).parse_args(argv))
    args.pop("config")
    if args["output"] is None:
        if args["resume"]:
            raise ValueError("--resume needs --output (the run directory to continue)")
        args["output"] = time.strftime("saved_models/run-%Y%m%d-%H%M%S")
    return TrainConfig.from_dict(args)


@cli_errors
def main(argv: list[str] | None = None) -> int:
    cfg = resolve_config(sys.argv[1:] if argv is None else argv)
    quiet_tensorflow()
    from unet_keras.training import train

    result = train(cfg)
    print(f"done: {result.run_dir} (best val Dice {result.best_val_dice:.4f} at epoch "
          f"{result.best_epoch + 1}); evaluate with: python evaluate.py {result.run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
