"""Training losses: the paper's negative Dice, and BCE + Dice (pooled, per image, or per image
over the images that show tumour).

``dice_loss = -dice_coef`` (pooled over the batch, smooth ``s``), so a perfect model logs -1.0,
as in the paper's logs ("Loss: -0.9047"). The losses are Keras-serializable classes, so a
saved ``.keras`` model reloads with ``safe_mode=True`` and no ``custom_objects`` once
``unet_keras`` is imported.

:data:`LOSSES` is the registry ``--loss``, the config check and ``--help`` read: a new loss is
a registered class here (with a ``description``) and one line in it.
"""

from __future__ import annotations

import keras
from keras import ops

from unet_keras.metrics import PACKAGE, dice_coef, dice_coef_per_image


@keras.saving.register_keras_serializable(package=PACKAGE)
class DiceLoss(keras.losses.Loss):
    """``-dice_coef(y_true, y_pred, smooth)`` over the whole batch; range ``[-1, 0)``."""

    description = "the paper's negative Dice"

    def __init__(self, smooth: float = 1.0, name: str = "dice_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.smooth = float(smooth)

    def call(self, y_true, y_pred):
        return -dice_coef(y_true, y_pred, self.smooth)

    def get_config(self):
        return {**super().get_config(), "smooth": self.smooth}


@keras.saving.register_keras_serializable(package=PACKAGE)
class BCEDiceLoss(keras.losses.Loss):
    """Binary cross-entropy (mean over pixels) minus pooled Dice: ``BCE - Dice``."""

    description = "binary cross-entropy minus Dice"

    def __init__(self, smooth: float = 1.0, name: str = "bce_dice_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.smooth = float(smooth)

    def dice(self, y_true, y_pred):
        """The Dice term: pooled over the batch."""
        return dice_coef(y_true, y_pred, self.smooth)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        bce = ops.mean(keras.losses.binary_crossentropy(y_true, y_pred))
        return bce - self.dice(y_true, y_pred)

    def get_config(self):
        return {**super().get_config(), "smooth": self.smooth}


@keras.saving.register_keras_serializable(package=PACKAGE)
class BCEImageDiceLoss(BCEDiceLoss):
    """Binary cross-entropy (mean over pixels) minus the batch mean of each image's soft Dice
    (:func:`~unet_keras.metrics.dice_coef_per_image`): every image's tumour weighs the same,
    however small, as in the per-image Dice users judge the model by."""

    description = "binary cross-entropy minus the mean per-image Dice"

    def __init__(self, smooth: float = 1.0, name: str = "bce_dice_per_image_loss", **kwargs):
        super().__init__(smooth=smooth, name=name, **kwargs)

    def dice(self, y_true, y_pred):
        """The Dice term: each image's, averaged over the batch."""
        return ops.mean(dice_coef_per_image(y_true, y_pred, self.smooth))


@keras.saving.register_keras_serializable(package=PACKAGE)
class BCETumourDiceLoss(BCEDiceLoss):
    """Binary cross-entropy (mean over pixels) minus the mean soft Dice of the images whose
    truth shows tumour; images without tumour are left to the cross-entropy.

    For patch training (``--patch-size``) with foreground oversampling: like
    :class:`BCEImageDiceLoss` every tumour weighs the same, however small, but a patch without
    tumour does not add ``s / (|B| + s)``, which drives any faint probability towards zero and
    the model towards missing small tumours. A batch without tumour has a Dice term of 0.
    On whole slices that all show tumour it equals :class:`BCEImageDiceLoss`.
    """

    description = "binary cross-entropy minus the mean Dice of the images that show tumour"

    def __init__(self, smooth: float = 1.0, name: str = "bce_dice_tumour_images_loss",
                 **kwargs):
        super().__init__(smooth=smooth, name=name, **kwargs)

    def dice(self, y_true, y_pred):
        """The Dice term: each tumour-showing image's, averaged over those images."""
        per_image = dice_coef_per_image(y_true, y_pred, self.smooth)
        shows = ops.cast(ops.max(ops.reshape(y_true, (ops.shape(y_true)[0], -1)), axis=1) > 0,
                         "float32")
        return ops.sum(per_image * shows) / ops.maximum(ops.sum(shows), 1.0)


#: The losses by name (``--loss``): ``dice`` is the paper's negative Dice. Each class takes
#: ``smooth`` and says what it is in ``description``.
LOSSES: dict[str, type[keras.losses.Loss]] = {"dice": DiceLoss, "bce_dice": BCEDiceLoss,
                                              "bce_dice_per_image": BCEImageDiceLoss,
                                              "bce_dice_tumour_images": BCETumourDiceLoss}


def get_loss(name: str, smooth: float = 1.0) -> keras.losses.Loss:
    """The loss named ``name`` in :data:`LOSSES` (e.g. ``"dice"``, the paper's)."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}")
    return LOSSES[name](smooth=smooth)
