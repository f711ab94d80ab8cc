"""What the benchmark runs: the modes (:data:`KERAS_MODES`, :data:`TORCH_MODES`), one runner
per framework that builds a mode's model and exposes its timed calls (:class:`KerasRunner`
here, :class:`TorchRunner` in the PyTorch worker process), :func:`run_modes` timing them all
round-robin, and :func:`run_pipeline` timing the ``tf.data`` input pipeline alone.

TensorFlow, Keras, PyTorch and ``unet_keras`` are imported inside the functions that use them,
so the PyTorch worker (:mod:`benchmarks.torch_worker`) can import this module without loading
TensorFlow.
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmarks.timing import Timing, describe_error, interleaved, peak_rss_mib, timed

if TYPE_CHECKING:
    import torch

    from benchmarks.torch_worker import TorchWorker
    from unet_keras.config import ArchConfig

#: name -> (dtype policy, jit_compile, the project's batch norm: fused for training, folded for
#: prediction). The ``-kerasbn`` modes keep Keras' own layer for both, for comparison.
KERAS_MODES = {
    "keras-fp32": ("float32", False, True),
    "keras-bf16": ("mixed_bfloat16", False, True),
    "keras-xla": ("float32", True, True),
    "keras-bf16-xla": ("mixed_bfloat16", True, True),
    "keras-fp32-kerasbn": ("float32", False, False),
    "keras-bf16-kerasbn": ("mixed_bfloat16", False, False),
}
#: name -> (channels_last, autocast to bfloat16, threads: 0 = PyTorch's default). The ``-1t``
#: modes exist for shared machines: OpenMP's barrier-synchronised regions stall when another
#: process holds one of the cores, and one thread can then beat two.
TORCH_MODES = {
    "torch-fp32": (False, False, 0),
    "torch-fp32-cl": (True, False, 0),
    "torch-bf16-cl": (True, True, 0),
    "torch-bf16": (False, True, 0),
    "torch-fp32-cl-1t": (True, False, 1),
    "torch-bf16-cl-1t": (True, True, 1),
}
BF16_MODES = {"keras-bf16", "keras-bf16-xla", "keras-bf16-kerasbn", "torch-bf16-cl", "torch-bf16",
              "torch-bf16-cl-1t"}
TORCH_FP32_MODES = {"torch-fp32", "torch-fp32-cl", "torch-fp32-cl-1t"}
DEFAULT_MODES = ["keras-fp32", "keras-bf16", "keras-xla", "torch-fp32", "torch-fp32-cl",
                 "torch-bf16-cl", "torch-fp32-cl-1t", "torch-bf16-cl-1t"]
PAPER = {"input_shape": (256, 256, 3), "base_filters": 64, "depth": 4}


# --- the two frameworks --------------------------------------------------------------------------

@dataclass
class ModeResult:
    """One framework/precision/layout mode: training, inference and latency timings."""

    name: str
    train: Timing | None = None
    infer: Timing | None = None
    latency: dict[int, Timing] = field(default_factory=dict)
    resized: Timing | None = None  # Keras: a 512² slice via predict_any_size (resize to input)
    error: str | None = None


def synthetic_batch(batch: int, h: int, w: int, c: int, seed: int = 0
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Images uniform in [0, 1] ``(B, H, W, C)`` and blob masks of 0/1 ``(B, H, W, 1)``,
    float32 (speed does not depend on the values)."""
    rng = np.random.default_rng(seed)
    x = rng.random((batch, h, w, c), dtype=np.float32)
    yy, xx = np.mgrid[:h, :w]
    centres = rng.uniform(0.3, 0.7, size=(batch, 2))
    y = np.stack([((yy / h - cy) ** 2 + (xx / w - cx) ** 2 < 0.01) for cy, cx in centres])
    return x, y[..., None].astype(np.float32)


class KerasRunner:
    """The Keras model under ``KERAS_MODES[name]``, set up as the project runs it: training on
    a compiled (Adam, Dice loss) model with the fused batch norm (as ``unet_keras.training``),
    prediction on :func:`~unet_keras.inference.inference_model` copies (batch norm folded, as
    ``unet-predict`` and ``unet-serve``) at the config's size and size-agnostic (single-slice
    latency). The ``-kerasbn`` modes use Keras' own BatchNormalization for both. Every call
    blocks until its result is in host memory."""

    def __init__(self, name: str, config: ArchConfig, batch: int,
                 latency_sizes: list[int]) -> None:
        import keras
        import tensorflow as tf

        from unet_keras.losses import DiceLoss

        self.name = name
        self.policy, self.jit, project_bn = KERAS_MODES[name]
        h, w, c = config.input_shape
        x, y = synthetic_batch(batch, h, w, c)
        self.x, self.y = tf.constant(x), tf.constant(y)
        self.model = self._build(config, "fused" if project_bn else "keras")
        self.model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=DiceLoss(),
                           jit_compile=self.jit)
        self.predictor = self._predictor(self.model, project_bn)
        any_size = config.replace(input_shape=(None, None, c))
        self.any_size = (self._predictor(self._build(any_size, "keras"), project_bn)
                         if latency_sizes else None)
        self.slices = {s: tf.constant(synthetic_batch(1, s, s, c)[0]) for s in latency_sizes}
        self.slice512 = synthetic_batch(1, 512, 512, c)[0][0]

    def _build(self, config: ArchConfig, batchnorm: str):
        import keras

        from unet_keras.model import build_unet

        previous = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy(self.policy)
        try:
            return build_unet(config, batchnorm=batchnorm)
        finally:
            keras.mixed_precision.set_global_policy(previous)

    def _predictor(self, model, project_bn: bool):
        """What ``unet-predict`` runs (``inference_model``), or ``model`` itself (compiled with
        this mode's ``jit_compile`` unless it is the training model, compiled already)."""
        from unet_keras.inference import inference_model

        if project_bn:
            precision = "bfloat16" if self.policy == "mixed_bfloat16" else "float32"
            return inference_model(model, precision, jit_compile=self.jit)
        if model is not self.model:
            model.compile(jit_compile=self.jit)
        return model

    def train(self) -> None:
        self.model.train_on_batch(self.x, self.y)

    def infer(self) -> None:
        self.predictor.predict_on_batch(self.x)

    def latency(self, size: int) -> None:
        self.any_size.predict_on_batch(self.slices[size])

    def resized(self) -> None:
        """A 512x512 slice through the config-size model as ``unet-predict`` runs it:
        :func:`~unet_keras.inference.predict_any_size` resizes it to the model's input (area),
        predicts and resizes the probabilities back (linear)."""
        from unet_keras.inference import predict_any_size

        predict_any_size(self.predictor, self.slice512)


def torch_dice_loss(y_true: torch.Tensor, y_pred: torch.Tensor, smooth: float = 1.0
                    ) -> torch.Tensor:
    """``-dice`` pooled over the batch, as :class:`unet_keras.losses.DiceLoss`."""
    inter = (y_true * y_pred).sum()
    return -(2.0 * inter + smooth) / (y_true.sum() + y_pred.sum() + smooth)


class TorchRunner:
    """The PyTorch mirror under ``TORCH_MODES[name]`` (memory format, bf16 autocast, threads),
    trained with Adam on the same Dice loss; inference in ``eval()`` under ``inference_mode``."""

    def __init__(self, name: str, config: ArchConfig, batch: int,
                 latency_sizes: list[int]) -> None:
        import torch

        from unet_keras.torch_mirror import build_torch_unet

        self.name = name
        channels_last, self.bf16, threads = TORCH_MODES[name]
        self.threads = threads or torch.get_num_threads()
        self.format = torch.channels_last if channels_last else torch.contiguous_format
        h, w, c = config.input_shape
        x, y = synthetic_batch(batch, h, w, c)
        self.x, self.y = self._nchw(x), self._nchw(y)
        self.net = build_torch_unet(config).to(memory_format=self.format)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=1e-3)
        self.slices = {s: self._nchw(synthetic_batch(1, s, s, c)[0]) for s in latency_sizes}

    def _nchw(self, a: np.ndarray):
        import torch

        return torch.from_numpy(a.transpose(0, 3, 1, 2).copy()).to(memory_format=self.format)

    def _autocast(self):
        import torch

        return torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else nullcontext()

    @contextmanager
    def _threads(self) -> Iterator[None]:
        import torch

        default = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            torch.set_num_threads(default)

    def train(self) -> None:
        self.net.train()
        with self._threads():
            self.optimizer.zero_grad(set_to_none=True)
            with self._autocast():
                pred = self.net(self.x)
            torch_dice_loss(self.y, pred.float()).backward()
            self.optimizer.step()

    def _predict(self, inputs) -> None:
        import torch

        self.net.eval()
        with self._threads(), torch.inference_mode(), self._autocast():
            self.net(inputs).float()

    def infer(self) -> None:
        self._predict(self.x)

    def latency(self, size: int) -> None:
        self._predict(self.slices[size])


def run_modes(modes: list[str], config: ArchConfig, batch: int, latency_sizes: list[int],
              warmup: int, reps: int, extra: dict[str, Callable[[], object]],
              log: Callable[[str], None], worker: TorchWorker | None = None
              ) -> tuple[list[ModeResult], dict[str, Timing]]:
    """Build every Keras mode here (the PyTorch ones live in ``worker``), then time training
    (with the ``extra`` calls and the worker's matmuls in the same rounds), inference and each
    latency size, interleaved. Returns the modes' results and the ``extra`` timings."""
    errors: dict[str, str] = dict(worker.info["errors"]) if worker else {}
    runners = {}
    for name in modes:
        if name not in KERAS_MODES:
            continue
        try:
            runners[name] = KerasRunner(name, config, batch, latency_sizes)
        except Exception as exc:  # noqa: BLE001
            errors[name] = describe_error(exc)
    remote = [n for n in modes if worker and n in worker.info["built"]]
    calls: dict[str, dict[str, Callable[[], float]]] = {
        "train": {n: timed(r.train) for n, r in runners.items()},
        "infer": {n: timed(r.infer) for n, r in runners.items()}}
    for name in remote:
        calls["train"][name] = partial(worker.call, "train", name)
        calls["infer"][name] = partial(worker.call, "infer", name)
    extra_calls = {k: timed(f) for k, f in extra.items()}
    if worker:
        extra_calls.update({k: partial(worker.call, "matmul", k) for k in worker.info["matmul"]})
    order = [n for n in modes if n in calls["train"]]
    train = interleaved({**{n: calls["train"][n] for n in order}, **extra_calls}, batch, warmup,
                        reps, errors)
    extra_timings = {k: train.pop(k) for k in extra_calls if k in train}
    log("training: " + ", ".join(f"{n} {t.rate:.2f}" for n, t in train.items())
        + f" img/s; peak RSS {peak_rss_mib():.0f} MiB (Keras process)")
    order = [n for n in order if n in train]
    if worker and any(n in TORCH_MODES for n in order):
        try:
            worker.free_optimizers()  # free the optimizer state before inference
        except RuntimeError as exc:
            for n in order:
                if n in TORCH_MODES:
                    errors[n] = describe_error(exc)
            order = [n for n in order if n not in TORCH_MODES]
    gc.collect()
    infer = interleaved({n: calls["infer"][n] for n in order}, batch, warmup, reps, errors)
    log("inference: " + ", ".join(f"{n} {t.rate:.2f}" for n, t in infer.items()) + " img/s")
    latency = {}
    for size in latency_sizes:
        latency[size] = interleaved(
            {n: (timed(partial(runners[n].latency, size)) if n in runners
                 else partial(worker.call, "latency", n, size)) for n in order if n in infer},
            1, warmup, reps, errors)
        log(f"latency {size}²: " + ", ".join(f"{n} {1000 * t.median_s:.0f}"
                                             for n, t in latency[size].items()) + " ms")
    resized = interleaved({n: timed(r.resized) for n, r in runners.items() if n in infer}, 1,
                          warmup, reps, errors)
    log("512² slice via predict_any_size (resized to the model's input): "
        + ", ".join(f"{n} {1000 * t.median_s:.0f}" for n, t in resized.items()) + " ms")
    results = [ModeResult(n, train.get(n), infer.get(n),
                          {s: latency[s][n] for s in latency_sizes if n in latency[s]},
                          resized.get(n), errors.get(n)) for n in modes]
    return results, extra_timings


# --- input pipeline ------------------------------------------------------------------------------

def run_pipeline(data: Path, size: int, channels: int, batch: int, n_files: int,
                 epochs: int) -> dict[str, Any]:
    """Images/s of full passes over the real PNG slices in ``data/figshare-png``.

    ``files, no cache`` decodes every epoch; ``files, memory cache`` decodes in epoch 1 and
    reads the cache after; ``arrays`` is ``make_dataset`` over preloaded arrays. All augment.
    ``steady`` is the median of epochs 2+ (epoch 1 alone when ``epochs == 1``).
    """
    from unet_keras.data import (
        list_files,
        load_arrays,
        make_dataset,
        make_file_dataset,
        read_slice,
    )

    fmt, files = list_files(data / "figshare-png")
    files = files[:n_files]
    n = len(files)

    def passes(ds) -> dict[str, Any]:
        load0 = os.getloadavg()[0]
        rates = []
        for _ in range(epochs):
            start = time.perf_counter()
            for _batch in ds:
                pass
            rates.append(n / (time.perf_counter() - start))
        steady = statistics.median(rates[1:] or rates)
        return {"epochs_images_per_s": [round(r, 1) for r in rates],
                "images_per_s": round(steady, 1),
                "load_avg_1min": [round(load0, 2), round(os.getloadavg()[0], 2)]}

    out: dict[str, Any] = {"files": n, "source": str(data / "figshare-png"), "size": size,
                           "batch": batch, "augment": True}
    for label, cache in (("files, no cache", None), ("files, memory cache", "")):
        ds = make_file_dataset(files, size, channels, batch, format=fmt, cache=cache,
                               shuffle=True, augment=True)
        out[label] = passes(ds)
    images, masks = load_arrays([read_slice(f, fmt) for f in files], size, channels)
    out["arrays"] = passes(make_dataset(images, masks, batch, shuffle=True, augment=True))
    return out
