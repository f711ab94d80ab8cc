"""``unet-predict``: segment files or folders of slices at their own size.

For each input it writes ``<name>_mask.png`` (0/255) and ``<name>_overlay.png`` into
``--output``, where ``<name>`` is the input's file name with its suffix, below the sub-folder it
was found in (``scans/a/1.png`` -> ``OUT/a/1.png_mask.png``). Existing outputs are kept unless
``--overwrite`` is given. Inputs: PNG, JPEG, TIFF, BMP, or Figshare ``.mat``; folders are
searched for those, skipping masks (``*_mask.*``), this tool's own overlays and the output folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path, PurePath

from unet_keras.cli.common import (
    HelpFormatter,
    add_mask_options,
    cli_errors,
    description,
    quiet_tensorflow,
)

SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".mat"}


def _skipped(f: Path, output: Path | None) -> bool:
    """Masks (``*_mask.*``: ground truth or this tool's), this tool's overlays, and anything
    inside the output folder."""
    from unet_keras.predict_files import is_own_output

    if "_mask" in f.stem or is_own_output(f):
        return True
    return output is not None and f.resolve().is_relative_to(output)


def collect_inputs(paths: list[str], output: str | Path | None = None
                   ) -> list[tuple[Path, PurePath]]:
    """Each input file with its name below the output folder: files given directly keep
    their file name; files found in a given folder keep their path relative to it. Folders
    are searched recursively (sorted), skipping masks, this tool's outputs and ``output``; a
    file reached twice is taken once."""
    out = Path(output).resolve() if output is not None else None
    found: dict[Path, tuple[Path, PurePath]] = {}
    for p in map(Path, paths):
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.suffix.lower() in SUFFIXES and f.is_file() and not _skipped(f, out):
                    found.setdefault(f.resolve(), (f, f.relative_to(p)))
        elif p.exists():
            found.setdefault(p.resolve(), (p, PurePath(p.name)))
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    if not found:
        raise ValueError(f"no image files ({', '.join(sorted(SUFFIXES))}) in {', '.join(paths)}")
    return list(found.values())


@cli_errors
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="unet-predict", description=description(__doc__),
                                formatter_class=HelpFormatter)
    p.add_argument("inputs", nargs="+", help="image files or folders")
    p.add_argument("--model", help="a .keras file or run directory (default: bundled model)")
    p.add_argument("-o", "--output", default="predictions", help="output folder")
    p.add_argument("--overwrite", action="store_true",
                   help="replace output files left by an earlier run (default: refuse)")
    p.add_argument("--threshold", type=float,
                   help="probability threshold (default: the model's own, chosen on its "
                        "validation split; 0.5 for older models)")
    add_mask_options(p)
    p.add_argument("--precision", default="float32", choices=["float32", "bfloat16"],
                   help="compute precision; bfloat16 is about 2x faster on CPUs with "
                        "AVX512_BF16 or AMX")
    p.add_argument("--xla", action="store_true", help="compile the forward pass with XLA")
    p.add_argument("--batch-size", type=int, default=8,
                   help="files read at a time; equal-size slices share forward passes")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar (it is shown on stderr only when that is a terminal)")
    args = p.parse_args(argv)
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    inputs = collect_inputs(args.inputs, args.output)
    quiet_tensorflow()
    from tqdm import tqdm

    from unet_keras.predict_files import segment_files

    for record in segment_files([f for f, _ in inputs], Path(args.output), model_path=args.model,
                                threshold=args.threshold, tta=args.tta,
                                postprocess=args.postprocess,
                                precision=args.precision, jit_compile=args.xla,
                                batch_size=args.batch_size,
                                relative=[rel for _, rel in inputs], overwrite=args.overwrite,
                                progress=not args.quiet):
        # tqdm.write: the line goes above the bar instead of through it
        guess = " (a best guess: no pixel reached the threshold)" if record["best_guess"] else ""
        tqdm.write(f"{record['input']}: {record['area_px']} tumor px "
                   f"({record['area_pct']:.2f}%){guess} -> {record['mask']}", file=sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
