"""The training budget and its learning-rate schedule (unet_keras.schedule)."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from unet_keras.schedule import Budget, warmup_cosine


def test_warmup_cosine_matches_the_formula():
    peak, warm = 1e-3, 0.1
    assert warmup_cosine(0.0, peak, warm) == 0.0
    assert warmup_cosine(0.05, peak, warm) == pytest.approx(peak * 0.5)
    assert warmup_cosine(0.1, peak, warm) == pytest.approx(peak)
    # halfway through the decay: cos(pi/2) = 0 -> half the peak
    assert warmup_cosine(0.55, peak, warm) == pytest.approx(peak * 0.5)
    p = 0.8
    expected = peak * 0.5 * (1 + math.cos(math.pi * (p - warm) / (1 - warm)))
    assert warmup_cosine(p, peak, warm) == pytest.approx(expected)
    assert warmup_cosine(1.0, peak, warm) == pytest.approx(0.0, abs=1e-12)
    assert warmup_cosine(1.7, peak, warm) == pytest.approx(0.0, abs=1e-12)  # clipped


def _tiny_model() -> keras.Model:
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5), loss="mse")
    return model


def test_step_budget_stops_training_and_follows_the_schedule():
    x, y = np.ones((8, 4), np.float32), np.zeros((8, 1), np.float32)
    budget = Budget(steps=10, peak_lr=0.2, warmup=0.2)
    lrs = []
    record = keras.callbacks.LambdaCallback(on_train_batch_begin=lambda b, logs: lrs.append(
        float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))))
    model = _tiny_model()
    history = model.fit(x, y, batch_size=2, epochs=50, verbose=0, callbacks=[budget, record])
    assert budget.step == 10  # 4 steps per epoch: stopped inside epoch 3
    assert len(history.history["loss"]) == 3
    expected = [warmup_cosine(i / 10, 0.2, 0.2) for i in range(10)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-6, atol=1e-9)
    assert history.history["steps"] == [4.0, 8.0, 10.0]
    assert all(m >= 0 for m in history.history["minutes"])


def test_budget_counts_earlier_sittings_and_time():
    budget = Budget(steps=100, done_steps=40)
    assert budget.progress() == pytest.approx(0.4)
    timed = Budget(minutes=10.0, done_minutes=5.0)
    assert 0.5 <= timed.progress() < 0.51
    both = Budget(steps=100, minutes=10.0, done_steps=10, done_minutes=8.0)
    assert both.progress() >= 0.8  # whichever budget is spent first
    with pytest.raises(ValueError, match="budget"):
        Budget(peak_lr=1e-3)
