"""Evaluate runs (Table 1, figures): ``python evaluate.py --help``. Thin wrapper over unet_keras."""

import sys

from unet_keras.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
