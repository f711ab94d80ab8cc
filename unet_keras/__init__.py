"""unet-keras: the reference Keras U-Net for brain tumor segmentation in MRI slices.

Importing the package registers the custom losses and metrics with Keras, so saved ``.keras``
models reload with ``keras.models.load_model(path)`` (``safe_mode=True``) and no
``custom_objects``. It never imports torch.
"""

from unet_keras.config import ArchConfig
from unet_keras.inference import predict_any_size
from unet_keras.losses import BCEDiceLoss, DiceLoss, get_loss
from unet_keras.metrics import (
    DiceCoefficient,
    IoUCoefficient,
    accuracy_per_image,
    dice_coef,
    dice_per_image,
    iou_coef,
    iou_per_image,
)
from unet_keras.model import build_unet

__version__ = "0.1.0"

__all__ = [
    "ArchConfig",
    "BCEDiceLoss",
    "DiceCoefficient",
    "DiceLoss",
    "IoUCoefficient",
    "accuracy_per_image",
    "build_unet",
    "dice_coef",
    "dice_per_image",
    "get_loss",
    "iou_coef",
    "iou_per_image",
    "predict_any_size",
]
