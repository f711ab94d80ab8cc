"""The PyTorch mirror: same numbers as Keras, lossless conversion both ways, a torch-only load.

References are independent of the code under test: the Keras model's own forward pass (the
mirror must reproduce it to 1e-4 in probability), Keras' own ``Conv2DTranspose`` and
``BatchNormalization`` layers, hand-computed parity figures, and fresh subprocesses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from unet_keras import ArchConfig, arch_config_of, build_unet, get_loss
from unet_keras.data import load_arrays, read_dataset
from unet_keras.model_meta import read_model_meta

torch = pytest.importorskip("torch")
from unet_keras.torch_mirror import (  # noqa: E402 - needs the torch extra
    ConversionError,
    ConvTranspose2dSame,
    PtFileError,
    build_torch_unet,
    compare_probabilities,
    keras_to_torch,
    load_pt,
    parity_report,
    predict_both,
    save_pt,
    torch_to_keras,
)

TOLERANCE = 1e-4  # max |p_keras - p_torch| in probability units (float32, eval mode)
SIZES = [(256, 256), (512, 512), (192, 320)]
REPO = Path(__file__).resolve().parents[1]

RANDOM_CONFIGS = {
    "plain": ArchConfig(input_shape=(None, None, 3), base_filters=4),
    "attention+dropout+bn": ArchConfig(input_shape=(None, None, 3), base_filters=4,
                                       attention=True, dropout=0.3, bn_momentum=0.9,
                                       bn_epsilon=1e-2),
    "attention+k3": ArchConfig(input_shape=(None, None, 3), base_filters=4, attention=True,
                               dropout=0.1, transpose_kernel=3),
    "k4+depth3+1ch": ArchConfig(input_shape=(None, None, 1), base_filters=8, depth=3,
                                transpose_kernel=4),
}
TRAINED_CONFIGS = {
    "attention+dropout": ArchConfig(input_shape=(None, None, 3), base_filters=4, attention=True,
                                    dropout=0.2, bn_momentum=0.9),
    "plain+k3": ArchConfig(input_shape=(None, None, 3), base_filters=4, transpose_kernel=3,
                           bn_momentum=0.9),
}


def _randomize(model: keras.Model, seed: int) -> None:
    """Every weight random: He-normal kernels, random BN gamma/beta/moving statistics."""
    rng = np.random.default_rng(seed)
    for var in model.weights:
        shape, name = tuple(var.shape), var.path.split("/")[-1]
        if name == "kernel":
            fan_in = np.prod(shape[:2]) * (shape[3] if "transpose" in var.path else shape[2])
            value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
        elif name == "gamma":
            value = rng.uniform(0.5, 1.5, shape)
        elif name == "moving_variance":
            value = rng.uniform(0.3, 3.0, shape)
        else:  # bias, beta, moving_mean
            value = rng.normal(0.0, 0.2, shape)
        var.assign(value.astype(np.float32))


def _torch_probs(module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(x).permute(0, 3, 1, 2))[:, 0].numpy()


def _assert_parity(model: keras.Model, module, channels: int, seed: int) -> list[float]:
    """Max |diff| for each size in SIZES (random inputs in [0, 1]); asserts <= TOLERANCE."""
    rng = np.random.default_rng(seed)
    diffs = []
    for h, w in SIZES:
        x = rng.random((1, h, w, channels), dtype=np.float32)
        p_keras = keras.ops.convert_to_numpy(model(x, training=False))[..., 0]
        p_torch = _torch_probs(module, x)
        assert p_torch.shape == p_keras.shape == (1, h, w)
        assert p_keras.std() > 1e-3, "degenerate test: constant output"
        diffs.append(float(np.abs(p_keras - p_torch).max()))
    assert max(diffs) <= TOLERANCE, dict(zip(SIZES, diffs, strict=True))
    return diffs


@pytest.fixture(scope="module")
def sample_records(sample_dir: Path) -> list:
    """The bundled real sample (40 slices of 512x512)."""
    return read_dataset(sample_dir)


@pytest.fixture(scope="module")
def sample_images(sample_records) -> np.ndarray:
    """The bundled sample preprocessed at native size: ``(N, 512, 512, 3)`` in [0, 1]."""
    return load_arrays(sample_records, None, 3)[0]


@pytest.fixture(scope="module")
def trained(sample_records):
    """``trained(name)``: the tiny U-Net ``TRAINED_CONFIGS[name]`` after 4 real Adam steps
    (batch 8) on 32 real slices at 64x64, so BN moving statistics are no longer the defaults.
    Built once per module."""
    cache: dict[str, keras.Model] = {}

    def get(name: str) -> keras.Model:
        if name not in cache:
            keras.utils.set_random_seed(0)
            model = build_unet(TRAINED_CONFIGS[name])
            x, y = load_arrays(sample_records[:32], 64, 3)
            model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=get_loss("bce_dice"),
                          run_eagerly=True)  # eager: faster than tracing for 4 steps
            model.fit(x, y, batch_size=8, epochs=1, verbose=0)
            cache[name] = model
        return cache[name]

    return get


# --- the architecture ---------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_transposed_conv_matches_keras_same_padding(k):
    layer = keras.layers.Conv2DTranspose(3, k, strides=2, padding="same")
    rng = np.random.default_rng(k)
    x = rng.standard_normal((2, 5, 7, 4)).astype(np.float32)
    layer.build(x.shape)
    layer.kernel.assign(rng.standard_normal(layer.kernel.shape).astype(np.float32))
    layer.bias.assign(rng.standard_normal(3).astype(np.float32))
    expected = keras.ops.convert_to_numpy(layer(x))
    conv = ConvTranspose2dSame(4, 3, k)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(layer.kernel.numpy().transpose(3, 2, 0, 1).copy()))
        conv.bias.copy_(torch.from_numpy(layer.bias.numpy()))
        got = conv(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy().transpose(0, 2, 3, 1)
    assert got.shape == expected.shape == (2, 10, 14, 3)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_batchnorm_momentum_matches_keras_training_update():
    """One training-mode step moves the running mean identically (momentum 0.9 <-> 0.1)."""
    config = ArchConfig(input_shape=(None, None, 3), bn_momentum=0.9, bn_epsilon=1e-2)
    bn_keras = keras.layers.BatchNormalization(momentum=config.bn_momentum,
                                               epsilon=config.bn_epsilon)
    module = build_torch_unet(config)
    bn_torch = module.down1_bn1
    assert bn_torch.eps == config.bn_epsilon
    x = np.random.default_rng(0).normal(2.0, 3.0, (4, 6, 6, bn_torch.num_features))
    x = x.astype(np.float32)
    bn_keras(x, training=True)
    bn_torch.train()(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
    expected = 0.9 * 0.0 + 0.1 * x.mean(axis=(0, 1, 2))
    np.testing.assert_allclose(bn_keras.moving_mean.numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(bn_torch.running_mean.numpy(), expected, rtol=1e-5)


def test_module_names_map_one_to_one_to_keras_layers():
    config = RANDOM_CONFIGS["attention+dropout+bn"]
    keras_names = {layer.name for layer in build_unet(config).layers}
    functional = {n for n in keras_names if n.endswith(("_concat", "_att_add", "_att_gate"))}
    torch_names = {name for name, _ in build_torch_unet(config).named_children()}
    assert torch_names == keras_names - functional - {"image"}
    assert {"up1_att_psi", "bottleneck_dropout", "up4_dropout", "down4_pool"} <= torch_names


@pytest.mark.parametrize("name", sorted(RANDOM_CONFIGS))
def test_arch_config_recovered_from_keras_model(name):
    config = RANDOM_CONFIGS[name]
    assert arch_config_of(build_unet(config)) == config
    fixed = config.replace(input_shape=(128, 96, config.channels))
    assert arch_config_of(build_unet(fixed)) == fixed


def test_non_unet_keras_model_is_refused():
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1)(inputs))
    with pytest.raises(ConversionError, match="not a unet_keras U-Net"):
        keras_to_torch(model)


# --- numerical parity ---------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(RANDOM_CONFIGS))
def test_random_weights_parity(name):
    config = RANDOM_CONFIGS[name]
    model = build_unet(config)
    _randomize(model, seed=len(name))
    module = keras_to_torch(model)
    assert not module.training
    _assert_parity(model, module, config.channels, seed=1)


@pytest.mark.parametrize("name", sorted(TRAINED_CONFIGS))
def test_trained_weights_parity(trained, name):
    trained_model = trained(name)
    bn = trained_model.get_layer("down2_bn1")
    assert np.abs(bn.moving_mean.numpy()).max() > 1e-2, "BN statistics still at defaults"
    assert np.abs(bn.moving_variance.numpy() - 1).max() > 1e-2, "BN statistics at defaults"
    module = keras_to_torch(trained_model)
    _assert_parity(trained_model, module, 3, seed=2)


def test_masks_agree_on_real_slices(trained, sample_images):
    model = trained("attention+dropout")
    p_keras, p_torch = predict_both(model, keras_to_torch(model), sample_images, batch_size=8)
    positive = float((p_keras >= 0.5).mean())
    assert 1e-3 < positive < 0.999, f"degenerate test: {positive:.4%} of pixels positive"
    report = compare_probabilities(p_keras, p_torch)
    assert report.n_images == len(sample_images) == 40
    assert (report.height, report.width) == (512, 512)
    assert report.max_abs_diff <= TOLERANCE
    assert report.pixel_agreement >= 0.9999
    assert report.dice >= 0.999


def test_bundled_model_converts_and_agrees_on_real_slices(sample_records):
    """The bundled trained model: recovered config equals its run's config.json, and the
    converted masks agree on >= 99.99% of the pixels of 16 sample slices at the model's
    working size, the one stored with it (full-size slices would only cost time; that the
    shipped ``.pt`` is this conversion is test_bundled_model's)."""
    run = REPO / "saved_models" / "sample"
    if not (run / "model.keras").is_file():
        pytest.skip(f"no bundled model at {run / 'model.keras'} yet")
    model = keras.models.load_model(run / "model.keras")
    recorded = json.loads((run / "config.json").read_text())["arch"]
    assert arch_config_of(model) == ArchConfig.from_dict(recorded)
    channels = ArchConfig.from_dict(recorded).input_shape[-1]
    size = read_model_meta(run / "model.keras").image_size
    assert size is not None
    images = load_arrays(sample_records[:16], size, channels)[0]
    report = parity_report(model, keras_to_torch(model), images)
    assert report.max_abs_diff <= TOLERANCE
    assert report.pixel_agreement >= 0.9999


def test_compare_probabilities_hand_computed():
    a = np.array([[[0.2, 0.6], [0.7, 0.4]]], np.float32)
    b = np.array([[[0.2, 0.4], [0.7, 0.6]]], np.float32)
    r = compare_probabilities(a, b, threshold=0.5)
    assert (r.n_images, r.height, r.width) == (1, 2, 2)
    assert r.max_abs_diff == pytest.approx(0.2, abs=1e-7)
    assert r.mean_abs_diff == pytest.approx(0.1, abs=1e-7)
    assert r.dice == pytest.approx(0.5)  # masks {0.6, 0.7} vs {0.7, 0.6 @ other pixel}
    assert r.pixel_agreement == pytest.approx(0.5)
    empty = compare_probabilities(a * 0, b * 0)
    assert empty.dice == 1.0 and empty.pixel_agreement == 1.0


# --- files and round trips ----------------------------------------------------------------


def test_round_trip_keras_pt_keras_is_bit_identical(tmp_path):
    config = RANDOM_CONFIGS["attention+k3"]
    model = build_unet(config)
    _randomize(model, seed=7)
    path = save_pt(keras_to_torch(model), tmp_path / "model.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # no temp file left
    loaded = load_pt(path)
    assert loaded.config == config and not loaded.training
    back = torch_to_keras(loaded)
    assert [v.path for v in back.weights] == [v.path for v in model.weights]
    for original, restored in zip(model.weights, back.weights, strict=True):
        np.testing.assert_array_equal(restored.numpy(), original.numpy(), err_msg=original.path)


def test_round_trip_torch_keras_torch_is_bit_identical():
    module = build_torch_unet(RANDOM_CONFIGS["attention+dropout+bn"])
    with torch.no_grad():
        for buffer in (module.up2_bn1.running_mean, module.up2_bn1.running_var):
            buffer.uniform_(0.5, 2.0)
    again = keras_to_torch(torch_to_keras(module)).state_dict()
    for key, value in module.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            torch.testing.assert_close(again[key], value, rtol=0, atol=0, msg=key)


def test_load_pt_rejects_other_files(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(PtFileError, match="garbage.pt: not a PyTorch file"):
        load_pt(garbage)
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(PtFileError, match="tensor.pt: not a unet-keras model file"):
        load_pt(tensor)
    module = build_torch_unet(RANDOM_CONFIGS["plain"])
    wrong = tmp_path / "wrong.pt"
    save_pt(module, wrong)
    payload = torch.load(wrong, weights_only=True)
    payload["arch_config"]["base_filters"] = 8
    torch.save(payload, wrong)
    with pytest.raises(PtFileError, match="wrong.pt: weights do not fit its arch_config"):
        load_pt(wrong)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_pt(tmp_path / "missing.pt")


# --- processes ----------------------------------------------------------------------------


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    full_env.update(env, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=full_env, cwd=REPO, timeout=120)


def test_importing_unet_keras_does_not_import_torch():
    proc = _run("import sys, unet_keras; print(sorted(m for m in sys.modules if m == 'torch'))")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_pt_loads_in_a_process_without_tensorflow(tmp_path):
    """``load_pt`` + forward in a fresh process that never imports TensorFlow (Keras, which
    ``unet_keras`` imports, runs on its torch backend there)."""
    config = RANDOM_CONFIGS["attention+dropout+bn"]
    model = build_unet(config)
    _randomize(model, seed=3)
    save_pt(keras_to_torch(model), tmp_path / "model.pt")
    x = np.random.default_rng(4).random((1, 64, 96, 3), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    proc = _run(f"""
        import sys
        import numpy as np, torch
        from unet_keras.torch_mirror import load_pt
        module = load_pt({str(tmp_path / "model.pt")!r})
        x = torch.from_numpy(np.load({str(tmp_path / "x.npy")!r}).transpose(0, 3, 1, 2).copy())
        with torch.no_grad():
            np.save({str(tmp_path / "p.npy")!r}, module(x)[:, 0].numpy())
        assert "tensorflow" not in sys.modules, "TensorFlow was imported"
        print("ok")
    """, KERAS_BACKEND="torch")
    assert "TensorFlow was imported" not in proc.stderr, (
        "unet_keras/__init__.py imports TensorFlow unconditionally; guard it with the Keras "
        "backend so a torch-only process can load the .pt")
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
    p_keras = model.predict(x, verbose=0)[..., 0]
    assert np.abs(np.load(tmp_path / "p.npy") - p_keras).max() <= TOLERANCE


# --- CLI ----------------------------------------------------------------------------------

def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "UNET_KERAS_TF_LOGS")}
    return subprocess.run([sys.executable, "-m", "unet_keras.cli.convert", *args],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=180)


def test_cli_converts_to_pt_and_back(tmp_path):
    model = build_unet(RANDOM_CONFIGS["attention+dropout+bn"])
    _randomize(model, seed=5)
    model.save(tmp_path / "model.keras")
    proc = _cli(str(tmp_path), "--to", "pt")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == f"{tmp_path / 'model.keras'} -> {tmp_path / 'model.pt'}"
    expected = keras_to_torch(model).state_dict()
    for key, value in load_pt(tmp_path / "model.pt").state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0, msg=key)

    proc = _cli(str(tmp_path / "model.pt"), "--to", "keras", "-o", str(tmp_path / "back.keras"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    back = keras.models.load_model(tmp_path / "back.keras")
    for original, restored in zip(model.weights, back.weights, strict=True):
        np.testing.assert_array_equal(restored.numpy(), original.numpy(), err_msg=original.path)


def test_cli_bad_file_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_text("this is not a model\n")
    proc = _cli(str(bad), "--to", "keras", "-o", str(tmp_path / "out.keras"))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: {bad}: not a PyTorch file readable with weights_only")
    assert not (tmp_path / "out.keras").exists()


def test_cli_parity_report(tmp_path, capsys):
    from unet_keras.cli.convert import main

    model = build_unet(RANDOM_CONFIGS["plain"])
    _randomize(model, seed=6)
    model.save(tmp_path / "model.keras")
    assert main([str(tmp_path / "model.keras"), "--parity", "--limit", "3"]) == 0
    out = capsys.readouterr().out
    assert "PyTorch: converted in memory" in out and "3 slices of" in out
    assert "images:           3 x 512x512" in out
    max_diff = float(out.split("max |diff|:")[1].split()[0])
    assert 0 <= max_diff <= TOLERANCE and "PASS" in out
