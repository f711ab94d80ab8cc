"""ModelMeta inside a .keras file: written, read back, and the file still loads in Keras."""

from __future__ import annotations

import json
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
    write_model_meta(path, meta.replace(tta=True, tta_source="validation"))
    assert read_model_meta(path).tta is True and read_model_meta(path).threshold == 0.35
    write_model_meta(path, meta.replace(keep_largest=True, fallback=0.3,
                                        postprocess_source="validation"))
    back = read_model_meta(path)
    assert back.keep_largest is True and back.fallback == 0.3 and back.tta is False
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
    with pytest.raises(ValueError, match="tta"):
        ModelMeta(arch={}, tta="yes")
    with pytest.raises(ValueError, match="keep_largest"):
        ModelMeta(arch={}, keep_largest=1)
    for bad_fallback in (-0.1, 1.0, "0.3", True):
        with pytest.raises(ValueError, match="fallback"):
            ModelMeta(arch={}, fallback=bad_fallback)
    bad = tmp_path / "bad.keras"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr(MEMBER, "{not json")
    with pytest.raises(ValueError, match="bad.keras"):
        read_model_meta(bad)
    wrong = tmp_path / "wrong.keras"
    with zipfile.ZipFile(wrong, "w") as z:
        z.writestr(MEMBER, json.dumps({"arch": {}, "tta": 1}))
    with pytest.raises(ValueError, match=r"wrong\.keras: invalid model metadata.*tta"):
        read_model_meta(wrong)


def test_metadata_from_a_newer_version_is_refused_naming_the_unknown_field(tmp_path, capsys):
    from unet_keras.cli.predict import main

    arch = ArchConfig(input_shape=(None, None, 1), base_filters=4, depth=2)
    newer = tmp_path / "newer.keras"
    build_unet(arch).save(newer)
    record = {**ModelMeta(arch=arch.to_dict(), threshold=0.4).to_dict(), "dilate_px": 3}
    with zipfile.ZipFile(newer, "a") as z:  # what a later version might write
        z.writestr(MEMBER, json.dumps(record))
    with pytest.raises(ValueError, match=r"newer\.keras: model metadata fields dilate_px are "
                                         r"unknown.*newer version.*upgrade"):
        read_model_meta(newer)
    image = tmp_path / "s.png"
    keras.utils.save_img(image, np.zeros((16, 16, 1), np.uint8), scale=False)
    # the CLI: one line, exit 2, nothing written
    assert main([str(image), "--model", str(newer), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "dilate_px" in err and "Traceback" not in err
    assert not list((tmp_path / "out").glob("*_mask.png"))


def test_metadata_written_before_tta_existed_reads_as_no_tta_and_no_postprocessing(tmp_path):
    old = tmp_path / "old.keras"
    with zipfile.ZipFile(old, "w") as z:  # what versions before the tta field wrote
        z.writestr(MEMBER, json.dumps({"arch": {}, "image_size": 256, "threshold": 0.55,
                                       "threshold_source": "validation split"}))
    meta = read_model_meta(old)
    assert meta.threshold == 0.55 and meta.tta is False and meta.tta_source == "default"
    assert meta.keep_largest is False and meta.fallback == 0.0  # nor post-processing


def test_the_model_carries_its_arch_config_through_a_file(tmp_path):
    """build_unet attaches the ArchConfig, save_model stores it, load_model gives it back and
    arch_config_of reads it there; a file without it (plain ``model.save``, older versions)
    is read off the layers."""
    from unet_keras.inference import load_model, model_meta, save_model
    from unet_keras.model import arch_config_from_layers, arch_config_of

    arch = ArchConfig(input_shape=(None, None, 1), base_filters=4, depth=2, dropout=0.1,
                      attention=True, transpose_kernel=3, bn_momentum=0.9, bn_epsilon=1e-4)
    model = build_unet(arch)
    assert model_meta(model).arch == arch.to_dict() and arch_config_of(model) == arch
    save_model(model, tmp_path / "carried.keras")
    assert read_model_meta(tmp_path / "carried.keras").arch == arch.to_dict()
    loaded = load_model(tmp_path / "carried.keras")
    assert model_meta(loaded).arch == arch.to_dict() and arch_config_of(loaded) == arch

    model.save(tmp_path / "bare.keras")  # no unet_keras.json: the layers tell
    bare = load_model(tmp_path / "bare.keras")
    assert model_meta(bare) is None
    assert arch_config_of(bare) == arch_config_from_layers(bare) == arch
