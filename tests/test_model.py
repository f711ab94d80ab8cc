"""build_unet: shapes, output range and dtype, parameter count from the layer formulas, and the
layer order of the DownConv / UpConv blocks read off the functional graph."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from unet_keras.config import ArchConfig
from unet_keras.model import arch_config_of, build_unet

#: The default (paper) model's parameter count, as stated in README.md.
README_PARAMS = 31_055_297


# --- independent parameter count ---------------------------------------------------------------

def _conv(k: int, cin: int, cout: int, bias: bool = True) -> int:
    """Weights of a k x k Conv2D / Conv2DTranspose: ``k*k*cin*cout (+ cout)``."""
    return k * k * cin * cout + (cout if bias else 0)


def _bn(c: int) -> int:
    """BatchNormalization: gamma, beta, moving mean, moving variance."""
    return 4 * c


def expected_param_count(cfg: ArchConfig) -> int:
    """Count of the paper's U-Net from the layer formulas alone (no Keras involved)."""
    total = 0
    cin = cfg.channels
    widths = [cfg.base_filters * 2**i for i in range(cfg.depth)]  # encoder levels 1..depth
    for f in widths:  # DownConv: (conv3x3, BN) x 2; pooling has no weights
        total += _conv(3, cin, f) + _bn(f) + _conv(3, f, f) + _bn(f)
        cin = f
    fb = cfg.base_filters * 2**cfg.depth  # bottleneck
    total += _conv(3, cin, fb) + _bn(fb) + _conv(3, fb, fb) + _bn(fb)
    cin = fb
    for f in reversed(widths):  # UpConv
        total += _conv(cfg.transpose_kernel, cin, f)  # transpose: cin -> f
        if cfg.attention:
            inter = max(f // 2, 1)
            total += _conv(1, f, inter, bias=False)  # theta on the skip (no bias)
            total += _conv(1, f, inter)  # phi on the upsampled gating signal
            total += _conv(1, inter, 1)  # psi -> one attention map
        total += _conv(3, 2 * f, f) + _bn(f) + _conv(3, f, f) + _bn(f)  # after concat: 2f in
        cin = f
    return total + _conv(1, cin, 1)  # head 1x1 -> 1 channel


def test_default_parameter_count_matches_formula_and_readme():
    cfg = ArchConfig()
    model = build_unet(cfg)
    assert expected_param_count(cfg) == README_PARAMS
    assert model.count_params() == README_PARAMS
    # non-trainable = moving mean + variance of the 18 BN layers
    bn_channels = sum(la.gamma.shape[0] for la in model.layers
                      if isinstance(la, keras.layers.BatchNormalization))
    non_trainable = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    assert non_trainable == 2 * bn_channels
    assert bn_channels == 2 * (64 + 128 + 256 + 512) * 2 + 2 * 1024
    # README.md states both numbers
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert f"{README_PARAMS:,}" in readme
    assert f"{README_PARAMS - non_trainable:,}" in readme  # trainable: 31,043,521


@pytest.mark.parametrize(
    "cfg",
    [
        ArchConfig(input_shape=(None, None, 1), base_filters=8, depth=3, attention=True,
                   transpose_kernel=3),
        ArchConfig(input_shape=(64, 96, 3), base_filters=16, depth=2, dropout=0.2),
    ],
    ids=["attention-k3-gray", "dropout-depth2"],
)
def test_parameter_count_other_configs(cfg):
    assert build_unet(cfg).count_params() == expected_param_count(cfg)


def test_parameter_count_by_hand_smallest_network():
    # depth 1, base 2, one channel, worked out on paper:
    # down1 (9*1*2+2) + 8 + (9*2*2+2) + 8 = 74; bottleneck (9*2*4+4) + 16 + (9*4*4+4) + 16 = 256;
    # up1 transpose 2*2*4*2+2 = 34, (9*4*2+2) + 8 + (9*2*2+2) + 8 = 128; head 2+1 = 3  -> 495
    cfg = ArchConfig(input_shape=(16, 16, 1), base_filters=2, depth=1)
    assert expected_param_count(cfg) == 495
    assert build_unet(cfg).count_params() == 495


# --- shapes, range, dtype ----------------------------------------------------------------------

@pytest.mark.parametrize(
    ("input_shape", "base"),
    [((256, 256, 3), 4), ((512, 512, 3), 2), ((64, 96, 3), 8), ((64, 96, 1), 8)],
)
def test_fixed_size_shapes_and_output_range(input_shape, base):
    model = build_unet(ArchConfig(input_shape=input_shape, base_filters=base))
    h, w, c = input_shape
    assert model.input_shape == (None, h, w, c)
    assert model.output_shape == (None, h, w, 1)
    x = np.random.default_rng(0).uniform(0, 1, (2, h, w, c)).astype(np.float32)
    x[1] *= 1000.0  # extreme input: saturates the sigmoid but must not leave [0, 1]
    y = keras.ops.convert_to_numpy(model(x, training=False))
    assert y.shape == (2, h, w, 1) and y.dtype == np.float32
    assert np.all(np.isfinite(y)) and y.min() >= 0.0 and y.max() <= 1.0
    assert y[0].std() > 0  # a real, input-dependent map, not a constant


def test_encoder_geometry_halves_and_widens():
    cfg = ArchConfig(input_shape=(64, 96, 3), base_filters=8, depth=4)
    model = build_unet(cfg)
    for level in range(1, 5):
        f = 8 * 2 ** (level - 1)
        assert tuple(model.get_layer(f"down{level}_relu2").output.shape) == (
            None, 64 // 2 ** (level - 1), 96 // 2 ** (level - 1), f)
        assert tuple(model.get_layer(f"down{level}_pool").output.shape) == (
            None, 64 // 2**level, 96 // 2**level, f)
        assert tuple(model.get_layer(f"up{level}_concat").output.shape) == (
            None, 64 // 2 ** (level - 1), 96 // 2 ** (level - 1), 2 * f)
    assert tuple(model.get_layer("bottleneck_relu2").output.shape) == (None, 4, 6, 128)


def test_none_dims_accept_any_multiple_of_two_to_the_depth():
    model = build_unet(ArchConfig(input_shape=(None, None, 3), base_filters=4, depth=3))
    assert model.input_shape == (None, None, None, 3)
    assert model.output_shape == (None, None, None, 1)
    rng = np.random.default_rng(1)
    for h, w in [(8, 8), (32, 48), (64, 64), (40, 120)]:
        y = keras.ops.convert_to_numpy(model(rng.uniform(0, 1, (1, h, w, 3)), training=False))
        assert y.shape == (1, h, w, 1)
        assert y.min() >= 0.0 and y.max() <= 1.0


def test_output_is_float32_under_mixed_bfloat16(mixed_bfloat16):
    model = build_unet(ArchConfig(input_shape=(None, None, 3), base_filters=4, depth=2,
                                  attention=True))
    # the policy really applies to the body (else this test would prove nothing)
    assert model.get_layer("down1_conv1").compute_dtype == "bfloat16"
    assert model.get_layer("up1_concat").output.dtype == "bfloat16"
    assert model.get_layer("head").compute_dtype == "float32"
    assert model.output.dtype == "float32"
    x = np.random.default_rng(2).uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)
    y = model(x, training=False)
    assert keras.backend.standardize_dtype(y.dtype) == "float32"
    y = keras.ops.convert_to_numpy(y)
    assert y.shape == (2, 32, 32, 1)
    assert y.min() >= 0.0 and y.max() <= 1.0
    # computed in float32, not a bfloat16 result cast up: a bfloat16 value is a float32 whose
    # low 16 mantissa bits are zero, so some outputs must have them set
    assert np.any(y.view(np.uint32) & 0xFFFF)


# --- layer order from the functional graph -----------------------------------------------------

def _parents(model: keras.Model, name: str) -> list[str]:
    """Names of the layers whose outputs feed layer ``name``, in call order."""
    (node,) = model.get_layer(name)._inbound_nodes
    return [t._keras_history.operation.name for t in node.input_tensors]


def _chain(model: keras.Model, names: list[str]) -> None:
    """Assert each layer in ``names`` takes exactly the previous one as its only input."""
    for prev, cur in zip(names, names[1:], strict=False):
        assert _parents(model, cur) == [prev], f"{cur} is fed by {_parents(model, cur)}"


def _conv_bn_relu_chain(prefix: str) -> list[str]:
    return [f"{prefix}_{kind}{i}" for i in (1, 2) for kind in ("conv", "bn", "relu")]


def test_downconv_and_upconv_layer_order():
    cfg = ArchConfig(input_shape=(64, 64, 3), base_filters=8, depth=3, bn_momentum=0.9,
                     bn_epsilon=1e-4)
    model = build_unet(cfg)
    L = keras.layers  # noqa: N806

    # DownConv block 2: pool1 -> (conv -> BN -> ReLU) x 2 -> pool2
    down = ["down1_pool", *_conv_bn_relu_chain("down2"), "down2_pool"]
    _chain(model, down)
    kinds = [L.MaxPooling2D, L.Conv2D, L.BatchNormalization, L.ReLU,
             L.Conv2D, L.BatchNormalization, L.ReLU, L.MaxPooling2D]
    for name, kind in zip(down, kinds, strict=True):
        assert type(model.get_layer(name)) is kind, name
    for i in (1, 2):
        conv = model.get_layer(f"down2_conv{i}")
        assert conv.kernel_size == (3, 3) and conv.padding == "same" and conv.filters == 16
        bn = model.get_layer(f"down2_bn{i}")
        assert bn.momentum == pytest.approx(0.9) and bn.epsilon == pytest.approx(1e-4)
    assert model.get_layer("down2_pool").pool_size == (2, 2)

    # UpConv block 2: up3's output -> transpose -> concat(transpose, skip of down2) -> convs
    assert _parents(model, "up2_transpose") == ["up3_relu2"]
    tr = model.get_layer("up2_transpose")
    assert type(tr) is L.Conv2DTranspose and tr.strides == (2, 2) and tr.kernel_size == (2, 2)
    assert tr.filters == 16
    assert type(model.get_layer("up2_concat")) is L.Concatenate
    assert _parents(model, "up2_concat") == ["up2_transpose", "down2_relu2"]
    _chain(model, ["up2_concat", *_conv_bn_relu_chain("up2")])
    assert _parents(model, "up3_transpose") == ["bottleneck_relu2"]
    assert _parents(model, "bottleneck_conv1") == ["down3_pool"]

    # every up{i} takes the skip of down{i}; the head reads up1 and is a 1x1 sigmoid conv
    for level in (1, 2, 3):
        assert _parents(model, f"up{level}_concat")[1] == f"down{level}_relu2"
    head = model.get_layer("head")
    assert _parents(model, "head") == ["up1_relu2"]
    assert head.kernel_size == (1, 1) and head.filters == 1
    assert head.activation is keras.activations.sigmoid


def test_attention_and_dropout_placement():
    cfg = ArchConfig(input_shape=(32, 32, 3), base_filters=4, depth=2, attention=True,
                     dropout=0.3, transpose_kernel=3)
    model = build_unet(cfg)
    assert model.get_layer("up1_transpose").kernel_size == (3, 3)
    # dropout after the bottleneck and after each concat
    assert _parents(model, "bottleneck_dropout") == ["bottleneck_relu2"]
    assert _parents(model, "up2_transpose") == ["bottleneck_dropout"]
    assert _parents(model, "up1_dropout") == ["up1_concat"]
    assert _parents(model, "up1_conv1") == ["up1_dropout"]
    assert model.get_layer("up1_dropout").rate == pytest.approx(0.3)
    # additive gate: relu(theta(skip) + phi(up)) -> psi (sigmoid) -> skip * alpha
    assert _parents(model, "up1_att_theta") == ["down1_relu2"]
    assert _parents(model, "up1_att_phi") == ["up1_transpose"]
    assert _parents(model, "up1_att_add") == ["up1_att_theta", "up1_att_phi"]
    assert _parents(model, "up1_att_relu") == ["up1_att_add"]
    assert _parents(model, "up1_att_psi") == ["up1_att_relu"]
    assert model.get_layer("up1_att_psi").activation is keras.activations.sigmoid
    assert _parents(model, "up1_att_gate") == ["down1_relu2", "up1_att_psi"]
    assert _parents(model, "up1_concat") == ["up1_transpose", "up1_att_gate"]


def test_no_dropout_layers_when_rate_is_zero():
    model = build_unet(ArchConfig(input_shape=(32, 32, 3), base_filters=4, depth=2))
    assert not [la for la in model.layers if isinstance(la, keras.layers.Dropout)]
    assert not [la.name for la in model.layers if "_att_" in la.name]


def test_architecture_read_off_layers():
    arch = ArchConfig(input_shape=(64, 64, 1), base_filters=2, depth=3, dropout=0.25,
                      attention=True, transpose_kernel=3, bn_momentum=0.9, bn_epsilon=1e-4)
    assert arch_config_of(build_unet(arch)) == arch
    with pytest.raises(ValueError, match="not a unet_keras U-Net"):
        arch_config_of(keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(1, 1)]))
    folded = build_unet(arch, batchnorm="folded")
    with pytest.raises(ValueError, match="batch norms folded"):
        arch_config_of(folded)
