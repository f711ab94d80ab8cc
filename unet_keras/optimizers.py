"""The optimizers training can use (``--optimizer``), one registry entry each.

:data:`OPTIMIZERS` maps a name to a builder ``build(lr, momentum, **ema)`` and a
``description`` (its ``--help`` text); the config check, ``--optimizer`` choices and the help
read it, so a new optimizer is one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras


@dataclass(frozen=True)
class OptimizerChoice:
    """``build(lr, momentum, **ema)`` -> a Keras optimizer; ``ema`` are Keras' ``use_ema`` and
    ``ema_momentum`` keywords, passed through."""

    build: Callable[..., keras.optimizers.Optimizer]
    description: str


def _adam(lr: float, momentum: float, **ema: Any) -> keras.optimizers.Optimizer:
    return keras.optimizers.Adam(learning_rate=lr, **ema)


def _sgd(lr: float, momentum: float, **ema: Any) -> keras.optimizers.Optimizer:
    return keras.optimizers.SGD(learning_rate=lr, momentum=momentum, **ema)


#: The optimizers by name (``--optimizer``).
OPTIMIZERS: dict[str, OptimizerChoice] = {
    "adam": OptimizerChoice(_adam, "Adam"),
    "sgd": OptimizerChoice(_sgd, "SGD with --momentum (no Nesterov)"),
}


def build_optimizer(name: str, lr: float, momentum: float = 0.9, ema: float = 0.0
                    ) -> keras.optimizers.Optimizer:
    """The optimizer ``name`` of :data:`OPTIMIZERS` at learning rate ``lr``; with ``ema`` > 0 it
    also keeps an exponential moving average of the weights (momentum ``ema``).

    Raises:
        ValueError: unknown name.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {tuple(OPTIMIZERS)}")
    extra = {"use_ema": True, "ema_momentum": ema} if ema else {}
    return OPTIMIZERS[name].build(lr, momentum, **extra)
