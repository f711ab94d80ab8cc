"""Input-pipeline throughput: images/s from Figshare-layout ``.mat`` files, with/without cache.

Writes ``--n`` MATLAB v7.3 files from the real 512x512 PNG slices (``$UNET_KERAS_DATA``,
default ``../shared/data``), then times full passes of ``make_file_dataset`` (parallel h5py
decode + preprocessing to ``--size``) with no cache, an in-memory cache and an on-disk cache,
and ``make_dataset`` over preloaded arrays with and without augmentation. Epoch 1 of a cached
pipeline decodes the files; epoch 2+ reads the cache only.

    python benchmarks/bench_pipeline.py [--n 200] [--size 256] [--epochs 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from unet_keras.data import (  # noqa: E402
    list_files,
    load_arrays,
    make_dataset,
    make_file_dataset,
    preprocess_image,
    preprocess_mask,
    read_dataset,
    read_slice,
)
from unet_keras.data.figshare import write_figshare_mat  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def write_mats(src: Path, dst: Path, n: int) -> list[str]:
    """``n`` v7.3 ``.mat`` files from the PNG pairs in ``src`` (int16 images, uint8 masks)."""
    stems = sorted((p.stem for p in (src / "images").glob("*.png")), key=int)[:n]
    for i, stem in enumerate(stems):
        image = cv2.imread(str(src / "images" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        mask = cv2.imread(str(src / "masks" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        write_figshare_mat(dst / f"{stem}.mat", image.astype(np.int16) * 8, mask,
                           label=1 + i % 3, pid=str(100000 + i // 10))
    return list_files(dst)[1]


def epochs_per_second(ds, n_images: int, epochs: int) -> list[float]:
    """Images/s of each full pass over ``ds``."""
    rates = []
    for _ in range(epochs):
        start = time.perf_counter()
        for _batch in ds:
            pass
        rates.append(n_images / (time.perf_counter() - start))
    return rates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help=".mat files to write and read")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    data = Path(os.environ.get("UNET_KERAS_DATA", REPO.parent / "shared" / "data"))
    print(f"cpu cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}; {args.n} .mat "
          f"files (512x512 int16, v7.3) -> {args.size}x{args.size}x3, batch {args.batch}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "mat").mkdir()
        files = write_mats(data / "figshare-png", tmp / "mat", args.n)
        n = len(files)
        start = time.perf_counter()
        for f in files:
            read_slice(f, "figshare")
        print(f"read_slice, 1 thread (h5py decode):      {n / (time.perf_counter() - start):7.1f}"
              " images/s")
        start = time.perf_counter()
        for f in files:
            s = read_slice(f, "figshare")
            preprocess_image(s.image, args.size, 3), preprocess_mask(s.mask, args.size)
        print(f"read_slice + preprocess, 1 thread:       {n / (time.perf_counter() - start):7.1f}"
              " images/s")
        rows = []
        for name, cache in (("no cache", None), ("memory cache", ""),
                            ("disk cache", str(tmp / "cache"))):
            ds = make_file_dataset(files, args.size, 3, args.batch, format="figshare",
                                   cache=cache, shuffle=True, augment=False)
            rows.append((f"files, {name}", epochs_per_second(ds, n, args.epochs)))
        images, masks = load_arrays(read_dataset(tmp / "mat"), args.size, 3)
        for augment in (False, True):
            ds = make_dataset(images, masks, args.batch, shuffle=True, augment=augment)
            rows.append((f"arrays, augment={augment}", epochs_per_second(ds, n, args.epochs)))
    print(f"{'pipeline':28s}" + "".join(f"{f'epoch {e + 1}':>12s}" for e in range(args.epochs)))
    for name, rates in rows:
        print(f"{name:28s}" + "".join(f"{r:12.1f}" for r in rates) + "  images/s")


if __name__ == "__main__":
    main()
