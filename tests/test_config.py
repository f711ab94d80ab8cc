"""ArchConfig: the paper's defaults, dict/JSON round trips, ``None`` dims and validation."""

from __future__ import annotations

import dataclasses
import json

import pytest

from unet_keras.config import ArchConfig


def test_defaults_are_the_papers_network():
    cfg = ArchConfig()
    assert cfg.input_shape == (256, 256, 3)
    assert (cfg.base_filters, cfg.depth) == (64, 4)
    assert cfg.dropout == 0.0 and cfg.attention is False
    assert cfg.transpose_kernel == 2
    assert cfg.channels == 3
    assert cfg.size_multiple == 16
    # filters double per level: 64, 128, 256, 512 and the bottleneck 1024
    assert [cfg.filters(level) for level in range(1, 6)] == [64, 128, 256, 512, 1024]


@pytest.mark.parametrize(
    "cfg",
    [
        ArchConfig(),
        ArchConfig(input_shape=(None, None, 1), base_filters=8, depth=3, dropout=0.25,
                   attention=True, transpose_kernel=3, bn_momentum=0.9, bn_epsilon=1e-5),
        ArchConfig(input_shape=(64, None, 3), depth=2),
    ],
    ids=["default", "none-dims-attention", "mixed-none"],
)
def test_dict_and_json_round_trip(cfg):
    d = cfg.to_dict()
    # plain JSON types only: the shape is a list, None stays None (JSON null)
    assert d["input_shape"] == list(cfg.input_shape)
    assert json.loads(json.dumps(d)) == d
    assert ArchConfig.from_dict(d) == cfg
    text = cfg.to_json()
    assert ArchConfig.from_json(text) == cfg
    assert json.loads(text)["input_shape"] == [None if v is None else v for v in cfg.input_shape]
    # every field survives, not only the ones that differ from the defaults
    assert set(d) == {f.name for f in dataclasses.fields(ArchConfig)}


def test_from_dict_turns_a_json_list_into_a_tuple_and_keeps_none():
    cfg = ArchConfig.from_json('{"input_shape": [null, null, 3], "depth": 3}')
    assert cfg.input_shape == (None, None, 3)
    assert isinstance(cfg.input_shape, tuple)
    assert cfg.depth == 3 and cfg.base_filters == 64
    assert hash(cfg) == hash(ArchConfig(input_shape=(None, None, 3), depth=3))


def test_frozen_and_replace():
    cfg = ArchConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.depth = 3  # type: ignore[misc]
    smaller = cfg.replace(base_filters=8, input_shape=(64, 64, 1))
    assert smaller.base_filters == 8 and smaller.input_shape == (64, 64, 1)
    assert smaller.depth == cfg.depth
    assert cfg.base_filters == 64  # the original is untouched
    with pytest.raises(ValueError, match="divisible"):
        cfg.replace(input_shape=(100, 100, 3))  # replace validates too


def test_none_dims_accept_any_depth():
    for depth in (1, 4, 6):
        cfg = ArchConfig(input_shape=(None, None, 3), depth=depth)
        assert cfg.size_multiple == 2**depth


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_shape": (100, 256, 3)}, "divisible by 2\\*\\*depth = 16"),
        ({"input_shape": (256, 40, 3)}, "divisible by 2\\*\\*depth = 16"),
        ({"input_shape": (96, 96, 3), "depth": 6}, "divisible by 2\\*\\*depth = 64"),
        ({"input_shape": (256, 256)}, "\\(H, W, C\\)"),
        ({"input_shape": (1, 256, 256, 3)}, "\\(H, W, C\\)"),
        ({"input_shape": (256, 256, 0)}, "channels"),
        ({"input_shape": (256, 256, None)}, "channels"),
        ({"depth": 0}, "depth"),
        ({"base_filters": 0}, "base_filters"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"transpose_kernel": 0}, "transpose_kernel"),
    ],
)
def test_invalid_values_raise_value_error_naming_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ArchConfig(**kwargs)


def test_unknown_fields_are_rejected_by_name():
    with pytest.raises(ValueError, match="depht"):
        ArchConfig.from_dict({"depht": 4})


@pytest.mark.parametrize("shape", [(0, 0, 3), (-16, 64, 3), (64.0, 64, 3)])
def test_non_positive_or_non_integer_spatial_dims_are_rejected(shape):
    with pytest.raises(ValueError, match="input"):
        ArchConfig(input_shape=shape)


@pytest.mark.parametrize(
    "kwargs",
    [{"depth": "4"}, {"base_filters": 8.5}, {"bn_momentum": 1.5}, {"bn_epsilon": 0.0}],
)
def test_wrong_types_and_bn_ranges_raise_value_error(kwargs):
    with pytest.raises(ValueError):
        ArchConfig(**kwargs)


def test_train_config_recipe_fields_are_validated_by_name():
    from unet_keras.config import TrainConfig

    for kwargs, message in (
        ({"patch_size": 100}, "patch_size"),              # not a multiple of 2**depth
        ({"patch_size": 512}, "patch_size"),              # larger than the slices
        ({"foreground_fraction": 1.5}, "foreground_fraction"),
        ({"schedule": "cosine"}, "steps or time_budget"),
        ({"schedule": "linear"}, "schedule"),
        ({"mixed_precision": "maybe"}, "mixed_precision"),
        ({"ema": 1.0}, "ema"),
        ({"time_budget": -1}, "time_budget"),
        ({"steps": -5}, "steps"),
        ({"augment_gamma": 0.3}, "patch"),                # patch-only augmentation
        ({"steps_per_epoch": 10}, "patch"),               # patch training only
        ({"hard_examples": "per_image.csv"}, "hard_examples .* patch"),  # patches only
        ({"patch_size": 128, "hard_fraction": 1.5}, "hard_fraction"),
        ({"lr": 0.0}, "--lr"),
        ({"val_fraction": 0.6, "test_fraction": 0.5}, "below 1"),
    ):
        with pytest.raises(ValueError, match=message):
            TrainConfig(**kwargs)
    cfg = TrainConfig(patch_size=128, schedule="cosine", time_budget=30)
    assert cfg.arch.input_shape == (None, None, 3)  # size-free: validates on whole slices
    assert TrainConfig().arch.input_shape == (256, 256, 3)


def test_legacy_boolean_mixed_precision_still_loads():
    from unet_keras.config import TrainConfig

    assert TrainConfig.from_dict({"mixed_precision": True}).mixed_precision == "on"
    assert TrainConfig.from_dict({"mixed_precision": False}).mixed_precision == "off"


def test_presets_apply_before_config_file_and_flags(tmp_path):
    from unet_keras.cli.train import resolve_config
    from unet_keras.config import PRESETS, TrainConfig

    assert PRESETS["paper"] == {}  # the paper's run is the defaults
    cfg = resolve_config(["--preset", "cpu", "--output", str(tmp_path / "r")])
    for key, value in PRESETS["cpu"].items():
        assert cfg.settings()[key] == value, key
    override = tmp_path / "c.json"
    override.write_text(json.dumps({"patch_size": 64, "base_filters": 8}))
    cfg = resolve_config(["--preset", "cpu", "--config", str(override), "--base-filters", "16",
                          "--output", str(tmp_path / "r")])
    assert (cfg.patch_size, cfg.arch.base_filters, cfg.loss) == (64, 16, "bce_dice")
    assert resolve_config(["--output", "x"]).epochs == TrainConfig().epochs == 120
    # the README's first command trains a fixed number of steps, so its numbers do not depend
    # on how fast the machine is (a time budget trains fewer steps on a slower CPU)
    quick = resolve_config(["--preset", "quickstart", "--output", str(tmp_path / "q")])
    assert quick.steps > 0 and quick.time_budget == 0
