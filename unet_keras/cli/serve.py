"""``unet-serve``: the web page and JSON API for segmenting slices and scoring them with Dice.

Serves on http://127.0.0.1:8000 by default (this machine only); ``--host 0.0.0.0`` exposes it
to the network. With no ``--model`` it serves the bundled sample model.
"""

from __future__ import annotations

import argparse
import sys

from unet_keras.cli.common import (
    HelpFormatter,
    add_mask_options,
    cli_errors,
    description,
    quiet_tensorflow,
)


@cli_errors
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="unet-serve", description=description(__doc__),
                                formatter_class=HelpFormatter)
    p.add_argument("--model", help="a .keras file or run directory (default: bundled model)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind")
    p.add_argument("--port", type=int, default=8000, help="TCP port")
    p.add_argument("--threshold", type=float,
                   help="probability threshold (default: the model's own, chosen on its "
                        "validation split; 0.5 for older models)")
    add_mask_options(p)
    p.add_argument("--max-upload-mb", type=float, default=20.0,
                   help="largest request body accepted (all files together), MB")
    p.add_argument("--precision", default="float32", choices=["float32", "bfloat16"],
                   help="compute precision; bfloat16 is about 2x faster on CPUs with "
                        "AVX512_BF16 or AMX")
    p.add_argument("--xla", action="store_true", help="compile the forward pass with XLA")
    args = p.parse_args(argv)
    if args.threshold is not None and not 0.0 < args.threshold < 1.0:
        raise ValueError(f"--threshold must be between 0 and 1, got {args.threshold}")
    if args.max_upload_mb <= 0:
        raise ValueError(f"--max-upload-mb must be positive, got {args.max_upload_mb}")
    quiet_tensorflow()
    import uvicorn

    from unet_keras.web import app as web_app

    if args.model is None and not web_app.BUNDLED_MODEL.exists():
        raise FileNotFoundError(f"{web_app.BUNDLED_MODEL}: the bundled model is missing; "
                                "pass --model <run directory or .keras file>")

    app = web_app.create_app(args.model, threshold=args.threshold, tta=args.tta,
                             postprocess=args.postprocess,
                             max_upload_bytes=int(args.max_upload_mb * 2**20),
                             precision=args.precision, jit_compile=args.xla)
    print(f"unet-serve: model {app.state.model_path} (threshold {app.state.threshold:.2f}"
          f"{', flip TTA' if app.state.tta else ''}, {app.state.rule.describe()}); "
          f"open http://{args.host}:{args.port}/",
          file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main())
