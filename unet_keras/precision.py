"""The numeric mode of training: float32 or ``mixed_bfloat16``, or whichever is faster here.

``mixed_bfloat16`` is about 2.5x faster than float32 on CPUs with AMX and 1.5-2x on AVX512_BF16
ones with the fused batch norm, but can be slower on others, so ``auto``
(:func:`fastest_policy`) times a few training steps of the actual model in both modes on the
machine at hand and picks the faster. The timing is a measurement, so two machines (or one
busy machine) may pick differently; the pick is logged and recorded in ``config.json``.
"""

from __future__ import annotations

import time

import keras
import numpy as np

from unet_keras.config import ArchConfig
from unet_keras.model import build_unet

POLICIES = {"off": "float32", "on": "mixed_bfloat16"}


def time_train_step(arch: ArchConfig, policy: str, batch: int, side: int, steps: int = 3,
                    warmup: int = 2) -> float:
    """Median seconds of one training step (Adam, BCE) of ``arch`` under ``policy`` on a random
    ``(batch, side, side, C)`` batch, after ``warmup`` untimed steps."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = build_unet(arch.replace(input_shape=(side, side, arch.channels)),
                           batchnorm="fused")
        model.compile(optimizer="adam", loss="binary_crossentropy")
        rng = np.random.default_rng(0)
        x = rng.random((batch, side, side, arch.channels), dtype=np.float32)
        y = (rng.random((batch, side, side, 1)) > 0.9).astype(np.float32)
        times = []
        for i in range(warmup + steps):
            start = time.perf_counter()
            model.train_on_batch(x, y)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    return float(np.median(times))


def fastest_policy(arch: ArchConfig, batch: int, side: int, log=print) -> str:
    """``"float32"`` or ``"mixed_bfloat16"``, whichever trains ``arch`` faster here."""
    seconds = {policy: time_train_step(arch, policy, batch, side)
               for policy in POLICIES.values()}
    best = min(seconds, key=seconds.get)
    log("precision auto: " + ", ".join(f"{p} {s:.3f} s/step" for p, s in seconds.items())
        + f" -> {best}")
    return best


def resolve_policy(mode: str, arch: ArchConfig, batch: int, side: int, log=print) -> str:
    """The Keras dtype policy for ``TrainConfig.mixed_precision`` ``mode`` (off/on/auto)."""
    if mode == "auto":
        return fastest_policy(arch, batch, side, log)
    return POLICIES[mode]
