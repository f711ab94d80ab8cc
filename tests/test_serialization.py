"""``.keras`` save/load: a compiled model reloads in a fresh process with ``safe_mode=True`` and
no ``custom_objects`` (importing ``unet_keras`` registers the losses and metrics) and predicts
the same; the custom objects serialize with their settings."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from unet_keras.config import ArchConfig
from unet_keras.losses import LOSSES, BCEDiceLoss, DiceLoss
from unet_keras.metrics import (
    METRICS,
    DiceCoefficient,
    IoUCoefficient,
    PixelAccuracy,
    segmentation_metrics,
)
from unet_keras.model import build_unet

_LOAD_AND_PREDICT = textwrap.dedent(
    """
    import json, sys
    import keras, numpy as np
    import unet_keras  # registers the custom objects; nothing else is passed to load_model
    model = keras.models.load_model(sys.argv[1], safe_mode=True)
    x, y = np.load(sys.argv[2]), np.load(sys.argv[3])
    pred = model(x, training=False)
    np.save(sys.argv[4], keras.ops.convert_to_numpy(pred))
    metrics = model.compute_metrics(x, y, pred)
    print(json.dumps({
        "loss": type(model.loss).__name__,
        "smooth": model.loss.smooth,
        "loss_value": float(model.loss(y, pred)),
        "metrics": {k: float(v) for k, v in metrics.items() if k != "loss"},
        "optimizer": type(model.optimizer).__name__,
        "layers": [la.name for la in model.layers],
    }))
    """
)


def _randomize_batchnorm(model: keras.Model, rng: np.random.Generator) -> None:
    """Give every BN layer non-default statistics so the round trip has something to lose."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.1, c),
                               rng.normal(0, 0.1, c), rng.uniform(0.5, 2.0, c)])


def test_keras_file_round_trip_in_a_fresh_process(tmp_path: Path):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    cfg = ArchConfig(input_shape=(None, None, 3), base_filters=4, depth=2, attention=True,
                     dropout=0.2)
    model = build_unet(cfg)
    _randomize_batchnorm(model, rng)
    model.compile(keras.optimizers.Adam(1e-3), DiceLoss(smooth=0.5),
                  metrics=segmentation_metrics(smooth=0.5))
    path = tmp_path / "tiny.keras"
    model.save(path)

    x = rng.uniform(0, 1, (2, 32, 48, 3)).astype(np.float32)
    y = (rng.uniform(size=(2, 32, 48, 1)) < 0.3).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    want_metrics = {k: float(v) for k, v in model.compute_metrics(x, y, expected).items()
                    if k != "loss"}
    assert sorted(want_metrics) == sorted(METRICS)

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, "-c", _LOAD_AND_PREDICT, str(path), str(tmp_path / "x.npy"),
         str(tmp_path / "y.npy"), str(tmp_path / "pred.npy")],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    # the compiled loss and metrics come back with their smooth = 0.5
    assert info["loss"] == "DiceLoss" and info["smooth"] == 0.5
    assert info["loss_value"] == pytest.approx(float(DiceLoss(smooth=0.5)(y, expected)),
                                               rel=1e-6)
    assert info["metrics"] == pytest.approx(want_metrics, rel=1e-6)
    assert info["optimizer"] == "Adam"
    assert info["layers"] == [la.name for la in model.layers]  # stable names survive

    got = np.load(tmp_path / "pred.npy")
    assert got.shape == (2, 32, 48, 1)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def _with_settings(cls: type, index: int):
    """An instance of a registered loss or metric with non-default settings (its smoothing
    or threshold), so the round trip has something to lose."""
    params = inspect.signature(cls).parameters
    if "smooth" in params:
        return cls(smooth=0.25 + index)
    if "threshold" in params:
        return cls(threshold=0.25 + index / 10)
    return cls()


#: Every custom object a compiled model holds: the losses and the training metrics, from the
#: registries that the CLI and the config read.
CUSTOM_OBJECTS = [_with_settings(cls, i) for i, cls in
                  enumerate([*LOSSES.values(), *METRICS.values()])]


def test_the_registries_hold_every_registered_loss_and_metric():
    registered = {obj for name, obj in keras.saving.get_custom_objects().items()
                  if name.startswith("unet_keras>") and isinstance(obj, type)
                  and issubclass(obj, keras.losses.Loss | keras.metrics.Metric)}
    assert registered == {type(obj) for obj in CUSTOM_OBJECTS}
    assert {DiceLoss, BCEDiceLoss, DiceCoefficient, IoUCoefficient, PixelAccuracy} <= registered


@pytest.mark.parametrize("obj", CUSTOM_OBJECTS, ids=lambda o: type(o).__name__)
def test_custom_objects_serialize_with_their_settings(obj):
    config = keras.saving.serialize_keras_object(obj)
    assert config["registered_name"] == f"unet_keras>{type(obj).__name__}"
    restored = keras.saving.deserialize_keras_object(json.loads(json.dumps(config)))
    assert type(restored) is type(obj)
    assert restored.get_config() == obj.get_config() and restored.name == obj.name
