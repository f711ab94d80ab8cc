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

from unet_keras.cli.common import HelpFormatter, cli_errors, description, quiet_tensorflow
from unet_keras.config import PRECISION_MODES, PRESETS, SCHEDULES, TrainConfig, resume_config

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
    "augment_scale": "patch training: zoom in/out by up to 1 + this (0 = off)",
    "augment_gamma": "patch training: image ** exp(U(-g, g)) (0 = off)",
    "augment_noise": "patch training: Gaussian noise of std up to this (0 = off)",
    "patch_size": "train on random square patches of this size cut from the --image-size "
                  "slices (0 = whole slices); the model is then size-free and validates and "
                  "predicts on whole slices",
    "steps_per_epoch": "patch training: optimizer steps between validations (0 = as many "
                       "patches as training slices)",
    "foreground_fraction": "share of patches placed on a tumour pixel (foreground oversampling)",
    "steps": "stop after this many optimizer steps (0 = no step budget)",
    "time_budget": "stop after this many minutes of training (0 = no time budget)",
    "schedule": "plateau = ReduceLROnPlateau on val Dice; cosine = linear warm-up, then cosine "
                "decay to 0 over --steps / --time-budget",
    "warmup": "cosine schedule: share of the budget spent warming up",
    "ema": "keep an exponential moving average of the weights with this momentum (e.g. 0.999) "
           "and validate/save it (0 = off)",
    "init_from": "start from the weights of this .keras model (same network; new optimizer "
                 "and schedule), recorded in config.json's lineage",
    "split_by": "patient (default when ids exist), block (consecutive file numbers; default "
                "for plain folders) or image (leaks slices of a patient across splits)",
    "val_fraction": "fraction of patients/blocks for validation",
    "test_fraction": "fraction of patients/blocks held out for testing",
    "fold": "K/N: train on fold K of N-fold cross-validation by patient",
    "seed": "random seed (weights, split, shuffling, augmentation)",
    "deterministic": "also enable TensorFlow op determinism (slower)",
    "mixed_precision": "on = mixed_bfloat16, off = float32, auto = time both on a few steps "
                       "and train in the faster",
    "jit_compile": "compile the training step with XLA",
    "strategy": "auto = multiworker when TF_CONFIG describes a cluster, else mirrored when "
                "several GPUs are visible, else one; mirrored = one replica per local device; "
                "multiworker = the cluster in TF_CONFIG",
    "output": "run directory (default: saved_models/run-<date>-<time>)",
    "resume": "continue the run in --output from its last finished epoch",
}


#: argparse ``type`` of each TrainConfig field, from its annotation.
KINDS = {"int": int, "float": float, "str": str, "str | None": str}


def choices() -> dict[str, tuple[str, ...]]:
    """The allowed values of the choice flags, from the modules that implement them."""
    from unet_keras.data import FORMATS
    from unet_keras.distribute import STRATEGIES
    from unet_keras.losses import LOSSES
    from unet_keras.training import OPTIMIZERS

    return {"format": FORMATS, "loss": tuple(LOSSES), "optimizer": OPTIMIZERS,
            "strategy": STRATEGIES, "mixed_precision": PRECISION_MODES, "schedule": SCHEDULES}


def build_parser(defaults: TrainConfig) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train.py", formatter_class=HelpFormatter,
        description="Train the brain-tumor U-Net (Keras). "
                    + description(__doc__).split("\n\n", 1)[1])
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="a named recipe applied before --config and the flags: paper "
                             "(the defaults), cpu (the bundled model's recipe) or quickstart "
                             "(90 seconds on the bundled sample)")
    parser.add_argument("--config", help="JSON file with any of the options below")
    allowed_values = choices()
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default,
                                help=HELP[f.name])
            continue
        allowed = allowed_values.get(f.name)
        parser.add_argument(flag, type=KINDS[str(f.type)], default=default, choices=allowed,
                            help=HELP[f.name])
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar (by default: Keras' bar with ETA on a terminal, "
                             "one line per epoch when the output goes to a file or pipe)")
    return parser


def resolve_config(argv: list[str] | None) -> TrainConfig:
    """The run's configuration from the command line (see :func:`resolve`)."""
    return resolve(argv)[0]


def resolve(argv: list[str] | None) -> tuple[TrainConfig, bool]:
    """``(config, quiet)``: the configuration from defaults <- ``--preset`` <- ``--config``
    JSON <- command-line flags, and whether ``--quiet`` was given. With ``--resume`` the run's
    own ``config.json`` takes the place of the defaults and the preset, so only the
    flags given explicitly change it (e.g. ``--epochs`` to train longer)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    pre.add_argument("--preset", choices=sorted(PRESETS))
    pre.add_argument("--resume", action=argparse.BooleanOptionalAction, default=False)
    pre.add_argument("--output")
    known, _ = pre.parse_known_args(argv)
    base = TrainConfig()
    if known.resume:
        if known.output is None:
            raise ValueError("--resume needs --output (the run directory to continue)")
        if known.preset:
            raise ValueError("--preset starts a new run; --resume continues one with its own "
                             "settings (give only the flags to change)")
        base = resume_config(known.output)
    elif known.preset:
        base = TrainConfig.from_dict({**base.to_dict(), **PRESETS[known.preset]})
    if known.config:
        try:
            overrides = json.loads(open(known.config).read())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{known.config}: not a readable JSON config ({exc})") from None
        base = TrainConfig.from_dict({**base.to_dict(), **overrides})
    args = vars(build_parser(base).parse_args(argv))
    args.pop("config")
    args.pop("preset")
    quiet = args.pop("quiet")
    if args["output"] is None:
        if args["resume"]:
            raise ValueError("--resume needs --output (the run directory to continue)")
        args["output"] = time.strftime("saved_models/run-%Y%m%d-%H%M%S")
    return TrainConfig.from_dict(args), quiet


@cli_errors
def main(argv: list[str] | None = None) -> int:
    cfg, quiet = resolve(sys.argv[1:] if argv is None else argv)
    quiet_tensorflow()
    from unet_keras.training import train

    result = train(cfg, quiet=quiet)
    print(f"done: {result.run_dir} (best val Dice {result.best_val_dice:.4f} at epoch "
          f"{result.best_epoch + 1}); evaluate with: python evaluate.py {result.run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
