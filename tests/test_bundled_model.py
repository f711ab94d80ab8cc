"""The bundled model (saved_models/sample): its files, what it carries, the shipped .pt
equal to a fresh conversion of the shipped .keras, and its numbers in README.md."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from unet_keras.inference import (
    BUNDLED_RUN,
    default_tta,
    load_model,
    mask_rule,
    predict_any_size,
)
from unet_keras.model_meta import read_model_meta

REPO = Path(__file__).resolve().parents[1]


def test_bundled_model_carries_its_working_size_and_validation_threshold_and_tta():
    meta = read_model_meta(BUNDLED_RUN / "model.keras")
    assert meta is not None
    record = json.loads((BUNDLED_RUN / "config.json").read_text())
    assert meta.image_size == record["train"]["image_size"]
    chosen = json.loads((BUNDLED_RUN / "threshold.json").read_text())
    assert meta.threshold == chosen["threshold"] and meta.tta == chosen["tta"]
    assert "validation" in meta.threshold_source and "validation" in meta.tta_source
    plain, flipped = chosen["val_dice_by_threshold"], chosen["val_dice_by_threshold_tta"]
    assert meta.tta == (max(flipped.values()) > max(plain.values()))
    curve = flipped if meta.tta else plain
    assert curve[f"{meta.threshold:.2f}"] == max(curve.values())
    post = chosen["val_dice_by_postprocess"]  # chosen after them, the best there
    assert (meta.keep_largest, meta.fallback) == (chosen["keep_largest"], chosen["fallback"])
    assert post[f"keep_largest={meta.keep_largest}, fallback={meta.fallback:.2f}"] == max(
        post.values())


def test_shipped_pt_equals_a_fresh_conversion_of_the_shipped_keras(tmp_path):
    torch = pytest.importorskip("torch")
    from unet_keras.torch_mirror import keras_to_torch, load_pt

    model = load_model(BUNDLED_RUN / "model.keras")
    shipped = load_pt(BUNDLED_RUN / "model.pt")
    fresh = keras_to_torch(model)
    for (name, a), (_, b) in zip(shipped.state_dict().items(), fresh.state_dict().items(),
                                 strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6, err_msg=name)
    x = np.random.default_rng(0).random((2, 64, 64, model.input_shape[-1]), dtype=np.float32)
    keras_probs = np.asarray(model.predict_on_batch(x))[..., 0]
    with torch.no_grad():
        torch_probs = shipped(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()[:, 0]
    np.testing.assert_allclose(torch_probs, keras_probs, atol=1e-4)


def test_bundled_model_segments_a_real_slice_at_its_own_size(shared_data):
    import cv2

    from unet_keras.data.preprocess import scale_intensity

    folder = shared_data / "figshare-png"
    image = cv2.imread(str(folder / "images" / "1.png"), cv2.IMREAD_GRAYSCALE)
    truth = cv2.imread(str(folder / "masks" / "1.png"), cv2.IMREAD_GRAYSCALE) > 127
    model = load_model()
    # min-max, as the readers do; with the flip TTA the model stores (or not)
    probs = predict_any_size(model, scale_intensity(image), tta=default_tta(model))
    assert probs.shape == image.shape
    pred = mask_rule(model)(probs) > 0  # its threshold and post-processing
    dice = 2 * (pred & truth).sum() / (pred.sum() + truth.sum())
    per_image = {row.split(",")[1]: float(row.split(",")[3]) for row in
                 (BUNDLED_RUN / "test-figshare-png" / "per_image.csv").read_text().splitlines()[1:]}
    assert dice == pytest.approx(per_image["1"], abs=0.02)  # what evaluate.py recorded


def test_readme_states_the_measured_test_numbers():
    metrics = json.loads((BUNDLED_RUN / "test-figshare-png" / "metrics.json").read_text())["all"]
    readme = (REPO / "README.md").read_text()
    stated = re.search(r"per-image\s+Dice\s+([0-9.]+)±([0-9.]+)", readme)
    assert stated, "README must state the bundled model's per-image test Dice"
    assert float(stated.group(1)) == pytest.approx(metrics["dice"]["mean"], abs=5e-4)
    assert float(stated.group(2)) == pytest.approx(metrics["dice"]["std"], abs=5e-4)
    assert metrics["resolution"] == "native"
    # ... measured as the model is used by default: its stored threshold and TTA choice
    meta = read_model_meta(BUNDLED_RUN / "model.keras")
    assert metrics["threshold"] == meta.threshold and metrics["tta"] == meta.tta
    assert (metrics["keep_largest"], metrics["fallback"]) == (meta.keep_largest, meta.fallback)


#: Options of a documented command that name files of the writer's machine, not the recipe.
PATH_OPTIONS = ("--data", "--init-from", "--hard-examples", "--output")


def reproduce_command_for_the_bundled_model() -> list[str]:
    """The arguments of REPRODUCE.md's ``python train.py`` command that writes
    ``saved_models/sample`` (its continuation lines joined)."""
    text = (REPO / "REPRODUCE.md").read_text().replace("\\\n", " ")
    commands = [line.split("#")[0].split()[2:] for line in text.splitlines()
                if line.startswith("python train.py ")]
    bundled = [args for args in commands if "saved_models/sample" in args]
    assert len(bundled) == 1, "REPRODUCE.md must give the one command that writes the model"
    return bundled[0]


def test_reproduce_mds_command_for_the_bundled_model_gives_its_recorded_settings(tmp_path):
    """REPRODUCE.md's command for the bundled model's last sitting, with the files it names
    taken from the record, resolves to exactly the settings the model was trained with."""
    from unet_keras.cli.train import resolve_config
    from unet_keras.config import PRESETS, TrainConfig

    trained = TrainConfig.from_dict(
        json.loads((BUNDLED_RUN / "config.json").read_text())["train"]).settings()
    assert trained["init_from"] and trained["hard_examples"]
    documented = reproduce_command_for_the_bundled_model()
    assert documented[:2] == ["--preset", "cpu-sitting"]
    recipe = [arg for i, arg in enumerate(documented)
              if arg not in PATH_OPTIONS and (i == 0 or documented[i - 1] not in PATH_OPTIONS)]
    command = resolve_config([
        *recipe, "--data", trained["data"], "--init-from", trained["init_from"],
        "--hard-examples", trained["hard_examples"],
        "--output", str(tmp_path / "run")]).settings()
    assert set(PRESETS["cpu-sitting"]) <= set(command)
    differ = {key for key in trained if trained[key] != command[key]}
    assert differ == {"output"}, {k: (trained[k], command[k]) for k in differ}
