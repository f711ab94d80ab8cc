"""``python evaluate.py`` / ``unet-evaluate``: Table 1 and figures for a run or a model."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from unet_keras.cli.common import (
    HelpFormatter,
    add_mask_options,
    cli_errors,
    quiet_tensorflow,
)


def build_parser() -> argparse.ArgumentParser:
    quiet_tensorflow()
    from unet_keras.config import DEFAULT_IMAGE_SIZE, choices_of
    from unet_keras.scoring import RESOLUTIONS

    formats = choices_of("format")

    p = argparse.ArgumentParser(
        prog="evaluate.py",
        description="Per-split Dice, IoU and pixel accuracy (per image mean±std, pooled, per "
                    "patient), with and without post-processing; writes metrics.json, "
                    "table1.md, per_image.csv and figures.",
        formatter_class=HelpFormatter)
    p.add_argument("run", nargs="?", help="run directory (uses its config.json and split.json)")
    p.add_argument("--model", help="a .keras model (with --data: evaluate it on a folder)")
    p.add_argument("--data", help="dataset to evaluate on; a plain folder is one split 'all'")
    p.add_argument("--format", default="auto", choices=tuple(formats),
                   help="dataset format: " + "; ".join(f"{name} = {what}"
                                                       for name, what in formats.items()))
    p.add_argument("--output", help="where to write (default: the run dir, or <model dir>/eval)")
    p.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE,
                   help="working size for a size-free model whose file does not store one")
    p.add_argument("--resolution", default="native", choices=RESOLUTIONS,
                   help="native: probabilities resized back to each slice's own size and "
                        "compared with its original mask (what users see); model: at the "
                        "model's working size, against the resized mask")
    p.add_argument("--threshold", type=float,
                   help="decision threshold (default: the one stored with the model, chosen on "
                        "its validation split; 0.5 for older models)")
    p.add_argument("--calibrate", action="store_true",
                   help="first choose the threshold and whether to use flip TTA on the run's "
                        "validation split and store both in its model.keras (training does "
                        "this for new runs)")
    add_mask_options(p)
    p.add_argument("--min-size", type=int, default=64,
                   help="post-processing: drop components smaller than this (pixels)")
    p.add_argument("--save-masks", action="store_true", help="write predicted masks as PNG")
    p.add_argument("--runs", nargs="+", metavar="RUN",
                   help="aggregate evaluated runs (seeds/folds): mean±std across runs")
    p.add_argument("--plot-minutes", metavar="PNG",
                   help="with --runs: plot each run's validation Dice against its training "
                        "minutes into this file")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bars (they are shown on stderr only when it is a terminal)")
    return p


@cli_errors
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from unet_keras import evaluation

    if args.runs:
        if args.plot_minutes:
            from unet_keras import viz
            from unet_keras.run_dir import read_history

            viz.plot_val_dice_vs_minutes(
                {Path(run).name: read_history(Path(run) / "history.csv") for run in args.runs},
                args.plot_minutes)
            print(f"wrote {args.plot_minutes}")
            return 0
        table = evaluation.aggregate_runs(args.runs)
        print(json.dumps(table, indent=2))
        return 0
    if args.run is None and (args.model is None or args.data is None):
        raise ValueError("give a run directory, or both --model and --data")
    if args.calibrate:
        if args.run is None:
            raise ValueError("--calibrate needs a run directory (its validation split)")
        evaluation.calibrate_run(args.run)
    evaluation.evaluate(
        model_path=args.model, run_dir=args.run, data=args.data, format=args.format,
        output=args.output, tta=args.tta, image_size=args.image_size,
        save_masks=args.save_masks, min_size=args.min_size, resolution=args.resolution,
        threshold=args.threshold, postprocess=args.postprocess, progress=not args.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
