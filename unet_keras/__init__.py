"""unet-keras: the reference Keras U-Net for brain tumor segmentation in MRI slices.

Importing the package registers the custom losses and metrics with Keras, so saved ``.keras``
models reload with ``keras.models.load_model(path)`` (``safe_mode=True``) and no
``custom_objects``. It never imports torch.

TensorFlow 2.21 prints absl start-up lines ("oneDNN custom operations are on", "Could not find
cuda drivers") on stderr that no environment variable silences; they are hidden while the
package imports TensorFlow (``UNET_KERAS_TF_LOGS=1`` shows them), so a CLI's stderr carries
only what it means to say. Under ``KERAS_BACKEND=torch`` TensorFlow is not imported at all, so
a PyTorch-only process can load a converted ``model.pt`` (:mod:`unet_keras.torch_mirror`).
"""

import os

from unet_keras._quiet import quiet_stderr

if os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
    quiet_stderr(lambda: __import__("tensorflow"))

from unet_keras.config import ArchConfig  # noqa: E402
from unet_keras.inference import predict_any_size  # noqa: E402
from unet_keras.losses import BCEDiceLoss, DiceLoss, get_loss  # noqa: E402
from unet_keras.metrics import (  # noqa: E402
    DiceCoefficient,
    IoUCoefficient,
    accuracy_per_image,
    dice_coef,
    dice_per_image,
    iou_coef,
    iou_per_image,
)
from unet_keras.model import arch_config_of, build_unet  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "ArchConfig",
    "BCEDiceLoss",
    "DiceCoefficient",
    "DiceLoss",
    "IoUCoefficient",
    "accuracy_per_image",
    "arch_config_of",
    "build_unet",
    "dice_coef",
    "dice_per_image",
    "get_loss",
    "iou_coef",
    "iou_per_image",
    "predict_any_size",
]
