"""Which Keras backend this process runs, and what that changes.

TensorFlow is the default and the reference; JAX and PyTorch run the same model code
(``keras.ops``) for inference, evaluation and training. What exists only under TensorFlow is
chosen only there, each with a portable fallback (:func:`describe` names the path taken):

=====================  ==============================  =======================================
what                   TensorFlow                      JAX / PyTorch
=====================  ==============================  =======================================
batch norm (training)  fused kernel (``batchnorm.py``)  Keras' ``BatchNormalization``
input pipeline         ``tf.data`` (``pipeline.py``)   ``PyDataset`` in numpy/OpenCV
                                                       (``data/loader.py``), same augmentation
distribution           ``tf.distribute`` strategies    one device (``--strategy auto|one``)
TFRecord exports       read and written                refused with a message
TensorBoard logs       written to ``logs/``            not written
=====================  ==============================  =======================================

The backend is Keras' own setting: ``KERAS_BACKEND=jax`` (or ``torch``) in the environment,
before the first ``import keras``.
"""

from __future__ import annotations

import keras


def name() -> str:
    """``"tensorflow"``, ``"jax"`` or ``"torch"``."""
    return keras.backend.backend()


def is_tensorflow() -> bool:
    """True when Keras runs on TensorFlow (fused batch norm, ``tf.data``, ``tf.distribute``)."""
    return name() == "tensorflow"


def describe() -> str:
    """One line naming the backend and the paths a training run takes on it."""
    if is_tensorflow():
        return ("backend tensorflow: fused batch norm, tf.data pipeline, tf.distribute, "
                "TensorBoard logs")
    return (f"backend {name()}: Keras BatchNormalization, numpy/OpenCV PyDataset pipeline, "
            "one device, no TensorBoard logs")
