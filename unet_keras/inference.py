"""Prediction at any input size: pad (reflect) to the model's size multiple, crop back.

A model built with ``input_shape=(None, None, C)`` accepts any H, W divisible by ``2**depth``;
:func:`predict_any_size` pads a slice of any size up to the next multiple and crops the
probabilities back, so a 512x512, 256x256 or 333x517 slice gets a mask of its own size. A model
with a fixed input size gets the slice resized to that size (area) and the probabilities resized
back (linear).

:func:`inference_model` rebuilds a loaded model for speed (batch norms folded into the
convolutions, optional bfloat16 compute and XLA); :func:`predict_batch` runs it chunk by chunk with
``predict_on_batch``, which skips the per-call set-up of ``Model.predict``.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import cv2
import keras
import numpy as np

from unet_keras.atomic import atomic_path
from unet_keras.batchnorm import fold_batchnorm
from unet_keras.model import arch_config_of, build_unet
from unet_keras.model_meta import DEFAULT_THRESHOLD, ModelMeta, read_model_meta, write_model_meta
from unet_keras.postprocess import PostProcess

#: The bundled trained model (``saved_models/sample``), used when no model is given.
BUNDLED_RUN = Path(__file__).resolve().parent.parent / "saved_models" / "sample"
BUNDLED_MODEL = BUNDLED_RUN / "model.keras"


def check_keras_file(path: str | os.PathLike) -> Path:
    """Make sure ``path`` is a complete ``.keras`` archive before Keras reads it (Keras
    reports a truncated one as "File not found").

    Raises:
        FileNotFoundError: no such file.
        ValueError: truncated or corrupt archive, or not a Keras archive (the path first).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model file not found")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            broken = archive.testzip()
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{path}: truncated or corrupt .keras file (not a complete zip "
                         f"archive: {exc})") from None
    if broken is not None:
        raise ValueError(f"{path}: truncated or corrupt .keras file ({broken} fails its "
                         "checksum)")
    if "config.json" not in names:
        raise ValueError(f"{path}: not a Keras .keras file (no config.json inside)")
    return path


def model_path(path: str | os.PathLike | None = None) -> Path:
    """The ``.keras`` file meant by ``path``: itself, ``model.keras`` of a run directory, or
    the bundled model when ``None``."""
    path = Path(path) if path is not None else BUNDLED_MODEL
    return path / "model.keras" if path.is_dir() else path


def load_model(path: str | os.PathLike | None = None) -> keras.Model:
    """Load a ``.keras`` model, or ``model.keras`` of a run directory; default: the bundled one.

    What the file says about its use (:class:`~unet_keras.model_meta.ModelMeta`: its
    architecture, working size, decision threshold, flip TTA) is attached as ``model.unet_meta``
    (``None`` for older files); read it with :func:`model_meta`. Raises
    ``FileNotFoundError``/``ValueError`` naming the path on a missing or unreadable file.
    """
    path = model_path(path)
    check_keras_file(path)
    try:
        model = keras.models.load_model(path)
    except Exception as exc:  # noqa: BLE001 - any load failure is reported as bad input
        raise ValueError(f"{path}: not a loadable Keras model ({exc})") from None
    model.unet_meta = read_model_meta(path)
    return model


def load_unet(path: str | os.PathLike | None = None) -> keras.Model:
    """:func:`load_model`, refusing a Keras model that is not a unet_keras U-Net; every error
    names the file.

    Raises:
        FileNotFoundError: no model file.
        ValueError: a truncated/corrupt file, or a Keras model that is not a unet_keras U-Net.
    """
    path = model_path(path)
    model = load_model(path)
    try:
        arch_config_of(model)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return model


def save_model(model: keras.Model, path: str | os.PathLike, meta: ModelMeta | None = None
               ) -> None:
    """Save ``model`` as a ``.keras`` file, atomically, with ``meta`` (default: the one it
    carries, :func:`model_meta`) inside, so that :func:`load_model` gives it back."""
    meta = meta if meta is not None else model_meta(model)
    with atomic_path(path) as tmp:
        model.save(tmp)
        if meta is not None:
            write_model_meta(tmp, meta)


def model_meta(model: keras.Model) -> ModelMeta | None:
    """The :class:`~unet_keras.model_meta.ModelMeta` a model was loaded with, if any."""
    return getattr(model, "unet_meta", None)


def decision_threshold(model: keras.Model) -> float:
    """The probability cut-off of ``model``'s masks: the one stored with it (chosen on its
    validation split), else 0.5."""
    meta = model_meta(model)
    return float(meta.threshold) if meta is not None else DEFAULT_THRESHOLD


def default_tta(model: keras.Model) -> bool:
    """Whether ``model``'s masks come from flip TTA (:func:`predict_batch`): the choice stored
    with it (made on its validation split together with the threshold), else no."""
    meta = model_meta(model)
    return bool(meta.tta) if meta is not None else False


def mask_rule(model: keras.Model, threshold: float | None = None,
              postprocess: bool | None = None) -> PostProcess:
    """How ``model``'s probabilities become a mask: its threshold (:func:`decision_threshold`,
    or ``threshold``) and the post-processing stored with it (keep the largest region, a best
    guess where nothing reaches the threshold; chosen on its validation split). ``postprocess``
    ``False``: the threshold alone; ``None`` or ``True``: the stored choice (none for models
    that store none), also with an overriding ``threshold`` (a stored fallback at or above
    it is dropped: it could never act)."""
    meta = model_meta(model)
    threshold = decision_threshold(model) if threshold is None else float(threshold)
    if meta is None or postprocess is False:
        return PostProcess(threshold=threshold)
    # a fallback at or above an overriding threshold could never act: none, so it is not named
    fallback = meta.fallback if meta.fallback < threshold else 0.0
    return PostProcess(threshold=threshold, keep_largest=meta.keep_largest, fallback=fallback)


#: ``precision`` argument -> Keras dtype policy. ``bfloat16`` computes in bfloat16 with float32
#: weights and a float32 sigmoid head; about 2x faster on CPUs with AVX512_BF16 or AMX, and its
#: probabilities differ from float32 by up to about 1e-2.
PRECISIONS = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


def inference_model(model: keras.Model, precision: str = "float32", jit_compile: bool = False
                    ) -> keras.Model:
    """A copy of a trained U-Net set up for fast prediction, with ``model``'s weights.

    The copy is rebuilt from the model's own architecture (:func:`~unet_keras.model.
    arch_config_of`) with every BatchNormalization folded into the convolution before it
    (:func:`~unet_keras.batchnorm.fold_batchnorm`), under the dtype policy of ``precision``
    (see :data:`PRECISIONS`), and compiled with ``jit_compile`` (XLA). Input and output shapes
    are ``model``'s. For prediction only (it has no batch statistics to train): save ``model``,
    not the copy.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}; got {precision!r}")
    arch = arch_config_of(model)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(PRECISIONS[precision])
    try:
        fast = build_unet(arch, batchnorm="folded")
    finally:
        keras.mixed_precision.set_global_policy(previous)
    fold_batchnorm(model, fast)
    fast.compile(jit_compile=jit_compile)
    fast.unet_meta = model_meta(model)
    return fast


def _size_multiple(model: keras.Model) -> int:
    pools = [la for la in model.layers if isinstance(la, keras.layers.MaxPooling2D)]
    return 2 ** len(pools)


def _as_batch(images: np.ndarray, channels: int) -> np.ndarray:
    """``(H, W)``, ``(H, W, C)`` or ``(N, H, W, C)`` -> float32 ``(N, H, W, channels)``."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 2:
        x = np.repeat(x[..., None], channels, axis=-1)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(
            f"expected an image of shape (H, W), (H, W, {channels}) or (N, H, W, {channels}); "
            f"got an array of rank {np.asarray(images).ndim} with shape {np.asarray(images).shape}"
        )
    if x.shape[-1] == 1 and channels > 1:
        x = np.repeat(x, channels, axis=-1)
    if x.shape[-1] != channels:
        raise ValueError(
            f"the model expects {channels} channel(s); got an image with {x.shape[-1]} "
            f"(shape {np.asarray(images).shape})"
        )
    return x


def predict_batch(model: keras.Model, images: np.ndarray, batch_size: int = 8,
                  tta: bool = False) -> np.ndarray:
    """Probabilities ``(N, H, W)`` float32 for a batch ``(N, H, W, C)`` the model accepts as is.

    With ``tta`` the result is the mean over identity, horizontal and vertical flips (each
    flipped back). ``batch_size`` images go through ``predict_on_batch`` at a time.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if len(images) == 0:
        raise ValueError("no images to predict (an empty batch)")

    probs = _forward(model, images, batch_size)
    return mean_over_flips(model, images, probs, batch_size) if tta else probs.astype(np.float32)


def mean_over_flips(model: keras.Model, images: np.ndarray, probs: np.ndarray,
                    batch_size: int = 8) -> np.ndarray:
    """Flip TTA given the plain pass: the mean of ``probs`` (``model``'s probabilities
    ``(N, H, W)`` for ``images``, as :func:`predict_batch` gives them) and those of the
    horizontally and vertically flipped images, each flipped back; float32 ``(N, H, W)``.
    Costs the two flipped passes only."""
    return ((probs + _forward(model, images[:, :, ::-1], batch_size)[:, :, ::-1]
             + _forward(model, images[:, ::-1], batch_size)[:, ::-1]) / 3.0).astype(np.float32)


def _forward(model: keras.Model, x: np.ndarray, batch_size: int) -> np.ndarray:
    """``model``'s probabilities ``(N, H, W)`` for ``x``, ``batch_size`` images at a time."""
    x = np.ascontiguousarray(x)
    chunks = [np.asarray(model.predict_on_batch(x[i:i + batch_size]))
              for i in range(0, len(x), batch_size)]
    return np.concatenate(chunks)[..., 0]


def predict_any_size(model: keras.Model, image: np.ndarray, batch_size: int = 4,
                     tta: bool = False) -> np.ndarray:
    """Tumor probabilities for images of any size.

    Args:
        model: a U-Net from :func:`unet_keras.model.build_unet` (fixed or ``None`` H/W).
        image: ``(H, W)`` grayscale (replicated to the model's channels), ``(H, W, C)`` or a
            batch ``(N, H, W, C)`` of equal-size images, intensities in [0, 1].
        batch_size: images per forward pass.
        tta: average over flips (see :func:`predict_batch`).

    Returns:
        float32 probabilities in [0, 1]: ``(H, W)`` for a single image, ``(N, H, W)`` for a batch.

    A size-free model whose file stores a working size (a model trained on patches of slices
    of that size, see :mod:`unet_keras.model_meta`) gets the slice resized to it, like a
    fixed-size model; other size-free models get it padded.
    """
    _, in_h, in_w, channels = model.input_shape
    meta = model_meta(model)
    if in_h is None and meta is not None and meta.image_size:
        in_h = in_w = int(meta.image_size)
    single = np.asarray(image).ndim in (2, 3)
    x = _as_batch(image, channels)
    n, h, w, _ = x.shape
    if in_h is not None and in_w is not None:
        if (h, w) != (in_h, in_w):
            x = np.stack([_resize(im, in_w, in_h, cv2.INTER_AREA) for im in x])
        probs = predict_batch(model, x, batch_size, tta)
        if (h, w) != (in_h, in_w):
            probs = np.stack([_resize(p, w, h, cv2.INTER_LINEAR) for p in probs])
    else:
        m = _size_multiple(model)
        ph, pw = (-h) % m, (-w) % m
        mode = "reflect" if ph < h and pw < w else "edge"
        x = np.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)), mode=mode)
        probs = predict_batch(model, x, batch_size, tta)[:, :h, :w]
    probs = probs.astype(np.float32)
    return probs[0] if single else probs


def _resize(a: np.ndarray, w: int, h: int, interpolation: int) -> np.ndarray:
    out = cv2.resize(a, (w, h), interpolation=interpolation)
    return out.reshape(h, w, *a.shape[2:]) if a.ndim == 3 else out
