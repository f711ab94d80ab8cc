"""Training budgets and the learning-rate schedule over them; weight EMA around validation.

:class:`Budget` ends training cleanly once a step budget (``steps``) or a wall-clock budget
(``minutes``) is spent (the epoch in progress stops, is validated and checkpointed as usual),
and, with ``peak_lr``, sets the learning rate from the progress ``p`` in [0, 1] through the
budget (:func:`warmup_cosine`): linear warm-up over the first ``warmup`` of the budget, then
cosine decay to 0 at its end. With both budgets, whichever is spent first ends the run.
Each epoch's ``minutes`` and ``steps`` (cumulative, across ``--resume`` too) and ``lr`` are
added to the logs, so ``history.csv`` records them.

:class:`EMAWeights` + :class:`EMAWeightsBack` make validation and the best-epoch checkpoint
use the exponential moving average of the weights (``Adam(use_ema=True)``), while the
BackupAndRestore state that follows them holds the raw weights.
"""

from __future__ import annotations

import math
import time

import keras

#: Learning-rate schedules (``--schedule``) and what each does; training sets them up
#: (``plateau``: Keras' ReduceLROnPlateau; ``cosine``: :class:`Budget` with ``peak_lr``).
SCHEDULES: dict[str, str] = {
    "plateau": "ReduceLROnPlateau on val Dice",
    "cosine": "linear warm-up, then cosine decay to 0 over --steps / --time-budget",
}


def warmup_cosine(progress: float, peak: float, warmup: float) -> float:
    """Learning rate at ``progress`` in [0, 1]: ``peak * progress / warmup`` during the
    warm-up, then ``peak * (1 + cos(pi * (progress - warmup) / (1 - warmup))) / 2``."""
    progress = min(max(progress, 0.0), 1.0)
    if warmup > 0 and progress < warmup:
        return peak * progress / warmup
    rest = (progress - warmup) / (1.0 - warmup) if warmup < 1 else 1.0
    return peak * 0.5 * (1.0 + math.cos(math.pi * rest))


class Budget(keras.callbacks.Callback):
    """Stop after ``steps`` optimizer steps or ``minutes`` of training (0 = no such limit);
    with ``peak_lr``, follow :func:`warmup_cosine` over the budget.

    Args:
        steps, minutes: the budget (at least one > 0 when ``peak_lr`` is set).
        peak_lr: the learning rate after the warm-up; ``None`` leaves the rate alone.
        warmup: share of the budget spent warming up.
        done_steps, done_minutes: what earlier sittings of this run already spent (resume).
    """

    def __init__(self, steps: int = 0, minutes: float = 0.0, peak_lr: float | None = None,
                 warmup: float = 0.05, done_steps: int = 0, done_minutes: float = 0.0):
        super().__init__()
        if peak_lr is not None and not (steps or minutes):
            raise ValueError("a scheduled learning rate needs a step or time budget")
        self.total_steps, self.total_minutes = int(steps), float(minutes)
        self.peak_lr, self.warmup = peak_lr, float(warmup)
        self.step, self.done_minutes = int(done_steps), float(done_minutes)
        self._start = time.monotonic()

    def minutes(self) -> float:
        """Minutes spent by this run so far (all sittings)."""
        return self.done_minutes + (time.monotonic() - self._start) / 60.0

    def progress(self) -> float:
        """The spent share of the budget, in [0, 1] (0 without a budget)."""
        shares = [0.0]
        if self.total_steps:
            shares.append(self.step / self.total_steps)
        if self.total_minutes:
            shares.append(self.minutes() / self.total_minutes)
        return min(max(shares), 1.0)

    def on_train_begin(self, logs=None):
        self._start = time.monotonic()
        self._set_lr()

    def _set_lr(self) -> None:
        if self.peak_lr is not None:
            lr = warmup_cosine(self.progress(), self.peak_lr, self.warmup)
            self.model.optimizer.learning_rate.assign(lr)

    def on_train_batch_begin(self, batch, logs=None):
        self._set_lr()

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if (self.total_steps or self.total_minutes) and self.progress() >= 1.0:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["minutes"] = self.minutes()
            logs["steps"] = float(self.step)
            logs["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


class EMAWeights(keras.callbacks.SwapEMAWeights):
    """Keras' ``SwapEMAWeights(swap_on_epoch=True)``: the EMA weights are in the model during
    validation and at the end of each epoch (for the best-epoch checkpoint after it)."""

    def __init__(self):
        super().__init__(swap_on_epoch=True)


class EMAWeightsBack(keras.callbacks.Callback):
    """Put the raw weights back at the end of an epoch (before BackupAndRestore saves them)."""

    def __init__(self, ema: EMAWeights):
        super().__init__()
        self.ema = ema

    def on_epoch_end(self, epoch, logs=None):
        self.ema.on_epoch_begin(epoch)  # swaps back when the EMA weights are in the model
