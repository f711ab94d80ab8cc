"""How fast training runs: images per second and FLOP/s, measured over the first epoch.

:class:`Throughput` is a Keras callback that times the training steps of epoch 1 after the
first (which holds tracing and compilation) and logs one line::

    throughput: 812.4 images/s, 161.2 TFLOP/s (20.4% of the 790 TFLOP/s peak)

FLOPs are the analytic training count of :func:`unet_keras.flops.train_flops` (convolutions
only, 2 per multiply-add, backward = 2 forwards), so the percentage is a lower bound of how
busy the matrix units were. ``peak_tflops`` is the device's peak at the precision trained in
(e.g. about 790 TFLOP/s measured bf16 on an H200); without it the percentage is left out.
"""

from __future__ import annotations

import time

import keras

from unet_keras.config import ArchConfig
from unet_keras.flops import train_flops


class Throughput(keras.callbacks.Callback):
    """Log images/s and TFLOP/s of the first epoch's steps after the first.

    Args:
        arch: the network trained (its FLOPs per image are counted at ``side`` x ``side``).
        batch_size: images per step (global batch).
        side: the side of the training inputs (the patch size, or the image size).
        peak_tflops: the device's peak FLOP/s in TFLOP/s, or ``None``.
        log: where the line goes.
    """

    def __init__(self, arch: ArchConfig, batch_size: int, side: int,
                 peak_tflops: float | None = None, log=print) -> None:
        super().__init__()
        self.flops_per_image = train_flops(arch, side, side)
        self.batch_size, self.peak_tflops, self.log = batch_size, peak_tflops, log
        self.result: dict[str, float] | None = None
        self._start: float | None = None
        self._steps = 0
        self._last = 0.0

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        if self.result is not None:
            return
        now = time.perf_counter()
        if self._start is None:  # the first step compiles: time from its end
            self._start = now
        else:
            self._steps += 1
        self._last = now  # validation, which follows, is not timed

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        if self.result is not None or self._start is None or self._steps == 0:
            return
        seconds = self._last - self._start
        images = self._steps * self.batch_size / seconds
        tflops = images * self.flops_per_image / 1e12
        self.result = {"images_per_s": images, "tflops": tflops, "steps_timed": self._steps}
        line = f"throughput: {images:.1f} images/s, {tflops:.2f} TFLOP/s"
        if self.peak_tflops:
            self.result["peak_share"] = tflops / self.peak_tflops
            line += f" ({100 * tflops / self.peak_tflops:.1f}% of the {self.peak_tflops:g} " \
                    "TFLOP/s peak)"
        self.log(line + f" over {self._steps} steps of epoch 1 after the first")
