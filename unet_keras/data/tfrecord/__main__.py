"""``python -m unet_keras.data.tfrecord export ...``: kept as an alias of
``python -m unet_keras.data export-tfrecord ...`` (:mod:`unet_keras.cli.data`)."""

import sys

from unet_keras.cli.data import tfrecord_main

if __name__ == "__main__":
    sys.exit(tfrecord_main())
