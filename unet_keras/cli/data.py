"""``python -m unet_keras.data inspect PATH`` / ``preview PATH -o grid.png`` /
``export-tfrecord DATA OUT [options]``: look at a segmentation dataset, or export it as sharded
TFRecords (:mod:`unet_keras.data.tfrecord`) for multi-worker training.

``python -m unet_keras.data.tfrecord export DATA OUT [options]`` is the same export under its
older name (:func:`tfrecord_main`).

Bad input (missing folder, unreadable file...) ends with one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from unet_keras.cli.common import HelpFormatter, cli_errors
from unet_keras.config import TrainConfig
from unet_keras.data.preview import pick_evenly, save_preview
from unet_keras.data.readers import FORMATS, list_files, read_slice
from unet_keras.data.splits import SPLIT_BY
from unet_keras.data.summary import summarize_dataset
from unet_keras.data.tfrecord import MANIFEST, export_dataset

EXPORT_HELP = "split a dataset and write it as sharded TFRecords"


def _add_export_options(q: argparse.ArgumentParser) -> None:
    """The export's arguments; its split options and defaults are ``train.py``'s."""
    defaults = TrainConfig()
    q.add_argument("data", help="dataset folder (Figshare .mat, LGG kaggle_3m, images/+masks/)")
    q.add_argument("output", help="export directory (new or empty)")
    q.add_argument("--image-size", type=int, default=defaults.image_size,
                   help="slices are stored preprocessed at this size (train with the same)")
    q.add_argument("--shards", type=int, default=8,
                   help="shards per split; at least the number of workers that will read them")
    q.add_argument("--format", choices=FORMATS, default="auto")
    q.add_argument("--skip-bad", action="store_true", help="skip unreadable files with a warning")
    q.add_argument("--split-by", choices=SPLIT_BY, default=defaults.split_by,
                   help="groups kept together (default: patient when ids exist, else block)")
    q.add_argument("--val-fraction", type=float, default=defaults.val_fraction)
    q.add_argument("--test-fraction", type=float, default=defaults.test_fraction)
    q.add_argument("--seed", type=int, default=defaults.seed)
    q.add_argument("--fold", help="K/N: export fold K of N-fold cross-validation")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m unet_keras.data", formatter_class=HelpFormatter,
                                description="Inspect, preview or export a segmentation dataset.")
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_text in (("inspect", "counts, patients, labels, sizes, intensity ranges"),
                            ("preview", "a PNG grid of slices with mask outlines")):
        q = sub.add_parser(name, help=help_text, formatter_class=HelpFormatter)
        q.add_argument("path", help="dataset folder (Figshare .mat, LGG kaggle_3m, images/+masks/)")
        q.add_argument("--format", choices=FORMATS, default="auto")
        if name == "inspect":
            q.add_argument("--skip-bad", action="store_true",
                           help="count unreadable files instead of stopping at the first")
        else:
            q.add_argument("-o", "--output", required=True, help="PNG file to write")
            q.add_argument("-n", type=int, default=16, help="slices to draw (spread evenly)")
    q = sub.add_parser("export-tfrecord", formatter_class=HelpFormatter,
                       help="sharded TFRecords + split manifest for multi-worker training",
                       description=EXPORT_HELP)
    _add_export_options(q)
    return p


def _export(args: argparse.Namespace) -> int:
    export = export_dataset(args.data, args.output, args.image_size, format=args.format,
                            skip_bad=args.skip_bad, split_by=args.split_by,
                            val_fraction=args.val_fraction, test_fraction=args.test_fraction,
                            seed=args.seed, fold=args.fold, shards=args.shards)
    for name, count in export.counts.items():
        print(f"{name}: {count} slices in {len(export.shards[name])} shard(s)")
    print(f"wrote {export.root / MANIFEST} ({export.image_size}x{export.image_size}); train "
          f"with: python train.py --data {export.root} --image-size {export.image_size}")
    return 0


@cli_errors
def main(argv: list[str] | None = None) -> int:
    """``python -m unet_keras.data inspect|preview|export-tfrecord ...``; the exit code."""
    args = _parser().parse_args(argv)
    if args.command == "export-tfrecord":
        return _export(args)
    if args.command == "inspect":
        summary = summarize_dataset(args.path, args.format, skip_bad=args.skip_bad)
        print("\n".join(summary.lines()))
    else:
        if args.n < 1:
            raise ValueError(f"-n must be >= 1, got {args.n}")
        fmt, files = list_files(args.path, args.format)
        chosen = [read_slice(files[i], fmt) for i in pick_evenly(len(files), args.n)]
        print(f"wrote {save_preview(chosen, args.output)} ({len(chosen)} slices)")
    return 0


@cli_errors
def tfrecord_main(argv: list[str] | None = None) -> int:
    """``python -m unet_keras.data.tfrecord export DATA OUT [options]``: the older name of
    ``export-tfrecord``; the exit code."""
    p = argparse.ArgumentParser(prog="python -m unet_keras.data.tfrecord",
                                formatter_class=HelpFormatter,
                                description="Sharded TFRecord exports for multi-worker training.")
    sub = p.add_subparsers(dest="command", required=True)
    _add_export_options(sub.add_parser("export", help=EXPORT_HELP, description=EXPORT_HELP,
                                       formatter_class=HelpFormatter))
    return _export(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
