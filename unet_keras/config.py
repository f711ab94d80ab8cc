"""The one description of the network: :class:`ArchConfig`.

Both the Keras model (:func:`unet_keras.model.build_unet`) and the PyTorch mirror
(:mod:`unet_keras.torch_mirror`) are built from this dataclass, so they cannot drift.
It round-trips through ``to_dict``/``from_dict`` and JSON.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any


def _reject_unknown(cls: type, d: dict[str, Any], what: str) -> None:
    unknown = set(d) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown {what}: {sorted(unknown)}")


def _require_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class ArchConfig:
    """Architecture of the U-Net.

    Attributes:
        input_shape: ``(H, W, C)``; ``H``/``W`` may be ``None`` for a size-agnostic model, in
            which case any H, W divisible by ``2**depth`` is accepted. Default: the paper's
            ``(256, 256, 3)``.
        base_filters: filters of the first DownConv block; block ``i`` (1-based) has
            ``base_filters * 2**(i-1)``, the bottleneck ``base_filters * 2**depth``. Paper: 64.
        depth: number of DownConv (and UpConv) blocks, i.e. of 2x2 max-poolings. Paper: 4.
        dropout: dropout rate; 0 disables it. When > 0, a ``Dropout`` layer follows the
            bottleneck block and each UpConv block's concatenation (active only in training).
        attention: additive attention gates (Oktay et al. 2018, "Attention U-Net") on every
            skip connection, gated by the upsampled decoder features.
        transpose_kernel: kernel size of the stride-2 ``Conv2DTranspose`` upsampling (2 = the
            paper's 2x2 "up-convolution").
        bn_momentum: BatchNormalization moving-average momentum (Keras convention).
        bn_epsilon: BatchNormalization epsilon.
    """

    input_shape: tuple[int | None, int | None, int] = (256, 256, 3)
    base_filters: int = 64
    depth: int = 4
    dropout: float = 0.0
    attention: bool = False
    transpose_kernel: int = 2
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-3

    def __post_init__(self) -> None:
        shape = tuple(self.input_shape)
        object.__setattr__(self, "input_shape", shape)
        if len(shape) != 3:
            raise ValueError(f"input_shape must be (H, W, C), got {shape}")
        _require_positive_int("input_shape channels", shape[2])
        for name in ("depth", "base_filters", "transpose_kernel"):
            _require_positive_int(name, getattr(self, name))
        if not isinstance(self.dropout, int | float) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not isinstance(self.bn_momentum, int | float) or not 0.0 <= self.bn_momentum <= 1.0:
            raise ValueError(f"bn_momentum must be in [0, 1], got {self.bn_momentum!r}")
        if not isinstance(self.bn_epsilon, int | float) or not self.bn_epsilon > 0:
            raise ValueError(f"bn_epsilon must be > 0, got {self.bn_epsilon!r}")
        multiple = 2**self.depth
        for dim in shape[:2]:
            if dim is None:
                continue
            _require_positive_int("input_shape H and W", dim)
            if dim % multiple:
                raise ValueError(
                    f"input H and W must be divisible by 2**depth = {multiple}, got {shape[:2]}"
                )

    @property
    def channels(self) -> int:
        """Number of input channels."""
        return int(self.input_shape[2])

    @property
    def size_multiple(self) -> int:
        """H and W of an input must be multiples of this (``2**depth``)."""
        return 2**self.depth

    def filters(self, level: int) -> int:
        """Filters at encoder level ``level`` (1..depth); ``depth + 1`` is the bottleneck."""
        return self.base_filters * 2 ** (level - 1)

    def replace(self, **changes: Any) -> ArchConfig:
        """A copy with some fields changed."""
        return ArchConfig.from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ArchConfig:
        _reject_unknown(cls, d, "ArchConfig fields")
        d = dict(d)
        if "input_shape" in d:
            d["input_shape"] = tuple(d["input_shape"])
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> ArchConfig:
        return cls.from_dict(json.loads(text))


#: Learning-rate schedules: ``plateau`` = ReduceLROnPlateau on val Dice (the default);
#: ``cosine`` = linear warm-up then cosine decay to 0 over ``steps`` or ``time_budget``.
SCHEDULES = ("plateau", "cosine")
#: ``mixed_precision``: ``off`` (float32), ``on`` (mixed_bfloat16), ``auto`` (whichever trains
#: faster on this machine, timed on a few steps before training).
PRECISION_MODES = ("off", "on", "auto")


#: Named recipes: changes to the TrainConfig defaults, applied before ``--config`` and flags.
#: ``paper`` is the paper's protocol (the defaults); ``cpu`` is the recipe of the bundled model
#: (patches with foreground oversampling, warm-up + cosine over a 100-minute budget, the
#: faster numeric mode of the machine at hand); see REPRODUCE.md. ``quickstart`` is that recipe
#: shrunk to one minute of training on the bundled sample (README's first command).
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "cpu": {
        "image_size": 256, "base_filters": 32, "patch_size": 128, "foreground_fraction": 0.33,
        "batch_size": 16, "loss": "bce_dice", "lr": 1e-3, "schedule": "cosine",
        "warmup": 0.03, "time_budget": 100.0, "epochs": 1000,
        "mixed_precision": "auto", "augment_scale": 0.15, "augment_gamma": 0.3,
        "augment_noise": 0.03,
    },
    "quickstart": {
        "image_size": 128, "base_filters": 16, "patch_size": 64, "foreground_fraction": 0.5,
        "batch_size": 16, "loss": "bce_dice", "lr": 2e-3, "schedule": "cosine",
        "warmup": 0.05, "time_budget": 1.0, "steps_per_epoch": 30, "epochs": 1000,
        "mixed_precision": "auto",
    },
}


def _flag(name: str) -> str:
    """A TrainConfig field as it is named in messages: the key and its command-line flag."""
    return f"{name} (--{name.replace('_', '-')})"


#: Integer settings and their smallest allowed value.
_INT_MIN = {"epochs": 1, "batch_size": 1, "image_size": 1, "channels": 1, "base_filters": 1,
            "depth": 1, "lr_patience": 0, "early_stopping": 0, "patch_size": 0, "steps": 0,
            "steps_per_epoch": 0,
            "seed": 0}
#: Real-valued settings: (low, high, which ends are open "(" / closed "[").
_REAL_RANGES = {
    "lr": (0.0, math.inf, "()"), "momentum": (0.0, 1.0, "[)"), "lr_factor": (0.0, 1.0, "()"),
    "min_lr": (0.0, math.inf, "[)"), "smooth": (0.0, math.inf, "[)"),
    "dropout": (0.0, 1.0, "[)"), "val_fraction": (0.0, 1.0, "()"),
    "test_fraction": (0.0, 1.0, "[)"), "foreground_fraction": (0.0, 1.0, "[]"),
    "warmup": (0.0, 0.5, "[]"), "ema": (0.0, 1.0, "[)"), "time_budget": (0.0, math.inf, "[)"),
    "augment_scale": (0.0, 0.5, "[]"), "augment_gamma": (0.0, 1.0, "[]"),
    "augment_noise": (0.0, 0.5, "[]"),
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (the resolved form is saved as ``config.json``).

    Defaults follow the paper where it states them (120 epochs, 256x256x3 input, negative Dice
    loss, base 64 / depth 4) and are documented choices where it is silent (Adam at 1e-3,
    batch 16, 70/15/15 patient split, smooth 1.0); see REPRODUCE.md.
    """

    data: str | None = None
    format: str = "auto"
    skip_bad: bool = False
    epochs: int = 120
    batch_size: int = 16
    image_size: int = 256
    channels: int = 3
    base_filters: int = 64
    depth: int = 4
    dropout: float = 0.0
    attention: bool = False
    loss: str = "dice"
    smooth: float = 1.0
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    lr_patience: int = 5
    lr_factor: float = 0.5
    min_lr: float = 1e-6
    early_stopping: int = 0
    augment: bool = True
    augment_scale: float = 0.0
    augment_gamma: float = 0.0
    augment_noise: float = 0.0
    patch_size: int = 0
    steps_per_epoch: int = 0
    foreground_fraction: float = 0.33
    steps: int = 0
    time_budget: float = 0.0
    schedule: str = "plateau"
    warmup: float = 0.05
    ema: float = 0.0
    init_from: str | None = None
    split_by: str | None = None
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    fold: str | None = None
    seed: int = 42
    deterministic: bool = False
    mixed_precision: str = "off"
    jit_compile: bool = False
    strategy: str = "auto"
    output: str | None = None
    resume: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.mixed_precision, bool):  # configs written before "auto" existed
            object.__setattr__(self, "mixed_precision", "on" if self.mixed_precision else "off")
        choices = {
            "format": ("auto", "figshare", "lgg", "folder"),
            "loss": ("dice", "bce_dice"),
            "optimizer": ("adam", "sgd"),
            "split_by": (None, "patient", "block", "image"),
            "strategy": ("auto", "one", "mirrored", "multiworker"),
            "schedule": SCHEDULES,
            "mixed_precision": PRECISION_MODES,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{_flag(name)} must be one of {allowed}, got "
                                 f"{getattr(self, name)!r}")
        for name, low in _INT_MIN.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{_flag(name)} must be an integer >= {low}, got {value!r}")
        for name, (low, high, interval) in _REAL_RANGES.items():
            value = getattr(self, name)
            ok = isinstance(value, int | float) and not isinstance(value, bool) and (
                (low < value if interval[0] == "(" else low <= value)
                and (value < high if interval[1] == ")" else value <= high))
            if not ok:
                shown = interval[0] + f"{low}, {high}" + interval[1]
                raise ValueError(f"{_flag(name)} must be in {shown}, got {value!r}")
        multiple = 2**self.depth
        for name in ("image_size", "patch_size"):
            value = getattr(self, name)
            if value and (value < multiple or value % multiple):
                raise ValueError(f"{_flag(name)} must be a multiple of 2**depth = {multiple} "
                                 f"(depth {self.depth}), got {value}")
        if self.steps_per_epoch and not self.patch_size:
            raise ValueError(f"{_flag('steps_per_epoch')} applies to patch training "
                             "(--patch-size); whole-slice epochs are one pass over the slices")
        if self.patch_size > self.image_size:
            raise ValueError(f"{_flag('patch_size')} must be at most --image-size "
                             f"({self.image_size}), got {self.patch_size}")
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError(f"--val-fraction + --test-fraction must be below 1 (some slices "
                             f"must train), got {self.val_fraction} + {self.test_fraction}")
        if self.schedule == "cosine" and not (self.steps or self.time_budget):
            raise ValueError("schedule 'cosine' decays over the budget: give steps or time_budget")
        if not self.patch_size and (self.augment_scale or self.augment_gamma
                                    or self.augment_noise):
            raise ValueError("augment_scale, augment_gamma and augment_noise apply to patch "
                             "training: give patch_size too")
        if self.fold is not None:
            self.fold_index()

    def fold_index(self) -> tuple[int, int] | None:
        """``"K/N"`` -> ``(K, N)`` with 1 <= K <= N, or ``None``."""
        if self.fold is None:
            return None
        try:
            k, n = (int(v) for v in self.fold.split("/"))
        except ValueError:
            raise ValueError(f"fold must look like 'K/N' (e.g. 2/5), got {self.fold!r}") from None
        if not 1 <= k <= n or n < 2:
            raise ValueError(f"fold K/N needs 1 <= K <= N and N >= 2, got {self.fold!r}")
        return k, n

    def arch(self) -> ArchConfig:
        """The architecture this run trains: size-free (``None`` H, W) when it trains on
        patches, so that it validates and predicts on whole slices."""
        side = None if self.patch_size else self.image_size
        return ArchConfig(
            input_shape=(side, side, self.channels),
            base_filters=self.base_filters,
            depth=self.depth,
            dropout=self.dropout,
            attention=self.attention,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        _reject_unknown(cls, d, "training options")
        return cls(**d)


def resume_config(output: str | os.PathLike, **changes: Any) -> TrainConfig:
    """The configuration of the run in ``output`` (its ``config.json``), with ``changes`` (e.g.
    ``epochs=200``), set to resume it."""
    record = Path(output) / "config.json"
    try:
        saved = json.loads(record.read_text())["train"]
    except FileNotFoundError:
        raise ValueError(f"{output}: no config.json here, nothing to resume") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{record}: unreadable run configuration ({exc})") from None
    return TrainConfig.from_dict({**saved, **changes, "output": str(output), "resume": True})
