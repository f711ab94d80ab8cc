"""``python -m unet_keras.data ...``: the data CLI lives in :mod:`unet_keras.cli.data`."""

import sys

from unet_keras.cli.data import main

if __name__ == "__main__":
    sys.exit(main())
