"""Train the brain-tumor U-Net: ``python train.py --help``. Thin wrapper over unet_keras."""

import sys

from unet_keras.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
