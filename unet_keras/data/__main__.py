"""``python -m unet_keras.data inspect PATH`` / ``preview PATH -o grid.png`` /
``export-tfrecord DATA OUT [options]`` (the last is :mod:`unet_keras.data.tfrecord`'s ``export``).

Bad input (missing folder, unreadable file...) ends with one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from unet_keras.cli.common import cli_errors
from unet_keras.data.preview import pick_evenly, save_preview
from unet_keras.data.readers import FORMATS, list_files, read_slice
from unet_keras.data.summary import summarize_dataset


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m unet_keras.data",
                                description="Inspect or preview a segmentation dataset.")
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_text in (("inspect", "counts, patients, labels, sizes, intensity ranges"),
                            ("preview", "a PNG grid of slices with mask outlines")):
        q = sub.add_parser(name, help=help_text)
        q.add_argument("path", help="dataset folder (Figshare .mat, LGG kaggle_3m, images/+masks/)")
        q.add_argument("--format", choices=FORMATS, default="auto")
        if name == "inspect":
            q.add_argument("--skip-bad", action="store_true",
                           help="count unreadable files instead of stopping at the first")
        else:
            q.add_argument("-o", "--output", required=True, help="PNG file to write")
            q.add_argument("-n", type=int, default=16, help="slices to draw (spread evenly)")
    sub.add_parser("export-tfrecord", add_help=False,
                   help="sharded TFRecords + split manifest for multi-worker training "
                        "(options: export-tfrecord --help)")
    return p


@cli_errors
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["export-tfrecord"]:
        from unet_keras.data import tfrecord

        return tfrecord.main(["export", *argv[1:]])
    args = _parser().parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
