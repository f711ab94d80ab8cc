"""ModelMeta inside a .keras file: written, read back, and the file still loads in Keras."""

from __future__ import annotations

import zipfile

import keras
import numpy as np
import pytest

from unet_keras.config import ArchConfig
from unet_keras.model import build_unet
from unet_keras.model_meta import MEMBER, ModelMeta, read_model_meta, write_model_meta


def test_meta_round_trips_and_the_model_still_loads(tmp_path):
    arch = ArchConfig(input_shape=(None, None, 1), base_filters=4, depth=2)
    model = build_unet(arch)
    path = tmp_path / "m.keras"
    model.save(path)
    assert read_model_meta(path) is None  # files of older versions have none
    meta = ModelMeta(arch=arch.to_dict(), image_size=64, threshold=0.35,
                     threshold_source="validation")
    write_model_meta(path, meta)
    assert read_model_meta(path) == meta
    write_model_meta(path, meta.replace(threshold=0.6))  # replaced, not duplicated
    assert read_model_meta(path).threshold == 0.6
    assert zipfile.ZipFile(path).namelist().count(MEMBER) == 1
    loaded = keras.models.load_model(path, safe_mode=True)
    x = np.random.default_rng(0).random((1, 16, 16, 1), dtype=np.float32)
    np.testing.assert_allclose(loaded.predict_on_batch(x), model.predict_on_batch(x), atol=1e-6)
    assert not list(tmp_path.glob(".tmp-*"))


def test_meta_rejects_impossible_values(tmp_path):
    with pytest.raises(ValueError, match="threshold"):
        ModelMeta(arch={}, threshold=1.0)
    with pytest.raises(ValueError, match="image_size"):
        ModelMeta(arch={}, image_size=0)
    bad = tmp_path / "bad.keras"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr(MEMBER, "{not json")
    with pytest.raises(ValueError, match="bad.keras"):
        read_model_meta(bad)
