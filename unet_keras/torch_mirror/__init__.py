"""PyTorch mirror of the Keras U-Net and conversion of weights both ways (needs ``torch``).

Importing :mod:`unet_keras` never imports torch; this subpackage does.

* :func:`build_torch_unet` -- the same network from an :class:`~unet_keras.config.ArchConfig`,
  NCHW in, ``(B, 1, H, W)`` probabilities out (:mod:`.network`).
* :func:`keras_to_torch` / :func:`torch_to_keras` -- weights copied layer by layer by name,
  the network the Keras model carries (:func:`unet_keras.model.arch_config_of`) (:mod:`.convert`).
* :func:`save_pt` / :func:`load_pt` -- the ``model.pt`` file (:mod:`.pt_file`).
* :func:`parity_report` -- both models on the same inputs (:mod:`.parity`).
"""

from unet_keras.torch_mirror.convert import (
    ConversionError,
    keras_to_torch,
    torch_to_keras,
)
from unet_keras.torch_mirror.network import ConvTranspose2dSame, TorchUNet, build_torch_unet
from unet_keras.torch_mirror.parity import (
    ParityReport,
    compare_probabilities,
    parity_report,
    predict_both,
)
from unet_keras.torch_mirror.pt_file import PtFileError, load_pt, save_pt

__all__ = [
    "ConversionError",
    "ConvTranspose2dSame",
    "ParityReport",
    "PtFileError",
    "TorchUNet",
    "build_torch_unet",
    "compare_probabilities",
    "keras_to_torch",
    "load_pt",
    "parity_report",
    "predict_both",
    "save_pt",
    "torch_to_keras",
]
