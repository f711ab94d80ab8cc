"""Load check of the web API: N ``/api/segment`` requests, K concurrent, on loopback.

    python benchmarks/load_web.py                      # bundled model, in-process server
    python benchmarks/load_web.py --model saved_models/<run> --requests 200 --concurrency 8
    python benchmarks/load_web.py --url http://127.0.0.1:8000   # a running unet-serve

Slices come from ``--data`` (an ``images/`` folder of real slices; default: the bundled
sample). Prints p50/p95 latency and throughput; exits 1 if any request failed.
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import nullcontext
from pathlib import Path

if __package__ in (None, ""):  # run as a file (python benchmarks/load_web.py): import its
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # helpers from benchmarks


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="a .keras file or run directory (default: bundled model)")
    p.add_argument("--url", help="load a running server instead of starting one here")
    p.add_argument("--data", help="folder with images/*.png (default: the bundled sample)")
    p.add_argument("--files", type=int, default=16, help="distinct slices to send in turn")
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=8)
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from benchmarks.loadcheck import run_load
    from unet_keras.data import SAMPLE_DIR

    folder = Path(args.data or SAMPLE_DIR) / "images"
    paths = sorted(folder.glob("*.png"))[: args.files]
    if not paths:
        print(f"error: no PNG slices in {folder}", file=sys.stderr)
        return 2
    files = [(f.name, f.read_bytes()) for f in paths]
    if args.url:
        server = nullcontext(args.url.rstrip("/"))
    else:
        from benchmarks.loopback import serve_in_thread
        from unet_keras.web.app import create_app

        server = serve_in_thread(create_app(args.model))
    with server as url:
        run_load(url, files[:1], requests=1, concurrency=1)  # warm-up: model trace
        report = run_load(url, files, requests=args.requests, concurrency=args.concurrency)
    print(f"{url}: {len(files)} slices from {folder}")
    print(report)
    for error in report.errors[:5]:
        print(f"  failed: {error}")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
