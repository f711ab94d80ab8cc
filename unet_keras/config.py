"""The description of a run: :class:`ArchConfig` (the network) and :class:`TrainConfig` (a
training run, with its network nested as ``arch``).

Both the Keras model (:func:`unet_keras.model.build_unet`) and the PyTorch mirror
(:mod:`unet_keras.torch_mirror`) are built from :class:`ArchConfig`, so they cannot drift.
Both dataclasses round-trip through ``to_dict``/``from_dict`` and JSON.

Every setting has one owner: a field here, whose metadata (:func:`setting`) holds its help
text, its range and, for a choice, the registry of the module that implements it (losses,
optimizers, data formats, split modes, strategies, schedules). ``train.py`` derives its flags,
types, defaults and help from these fields; the checks in ``__post_init__`` read the same
metadata. The registries are imported when a :class:`TrainConfig` is checked, not when this
module is imported: ``import unet_keras`` (which needs :class:`ArchConfig`) must not import
TensorFlow under ``KERAS_BACKEND=torch``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any

#: The side of the slices a model works on when nothing else says (the paper's algorithm
#: section: 256x256x3 inputs).
DEFAULT_IMAGE_SIZE = 256


def setting(default: Any = MISSING, help: str = "", *, default_factory: Any = MISSING,
            choices: Callable[[], Mapping[str, str]] | None = None, min: int | None = None,
            range: tuple[float, float, str] | None = None) -> Any:
    """A dataclass field that is a setting of a run, with what the CLI and the checks need.

    Args:
        default, default_factory: as for :func:`dataclasses.field`.
        help: its ``--help`` text; a field with a help text is a command-line flag.
        choices: returns the allowed values and what each means, read from the registry of
            the module that implements them (imported only when called).
        min: an integer setting's smallest allowed value.
        range: a real setting's ``(low, high, ends)``; ``ends`` says which ends are open
            ``(``/``)`` or closed ``[``/``]``.
    """
    metadata = {"help": help, "choices": choices, "min": min, "range": range}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def _reject_unknown(cls: type, d: Mapping[str, Any], what: str) -> None:
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
            ``(256, 256, 3)``. In a :class:`TrainConfig` it follows from ``image_size``,
            ``patch_size`` and ``channels``.
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

    input_shape: tuple[int | None, int | None, int] = (DEFAULT_IMAGE_SIZE, DEFAULT_IMAGE_SIZE, 3)
    base_filters: int = setting(64, "filters of the first DownConv block (the paper: 64)")
    depth: int = setting(4, "number of DownConv/UpConv blocks (the paper: 4)")
    dropout: float = setting(0.0, "dropout rate after the bottleneck and each decoder "
                                  "concatenation (0 = off)")
    attention: bool = setting(False, "additive attention gates on the skip connections "
                                     "(Attention U-Net)")
    transpose_kernel: int = setting(2, "kernel size of the stride-2 transposed convolution "
                                       "that upsamples (2 = the paper's 2x2 up-convolution)")
    bn_momentum: float = setting(0.99, "BatchNormalization moving-average momentum")
    bn_epsilon: float = setting(1e-3, "BatchNormalization epsilon")

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
        """Every field, as plain JSON types (``input_shape`` a list, ``None`` kept)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["input_shape"] = list(self.input_shape)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ArchConfig:
        """The inverse of :meth:`to_dict`; unknown keys are refused by name."""
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


#: The network settings a training run sets (flags of ``train.py``); ``input_shape`` is not
#: one: a run derives it from ``image_size``, ``patch_size`` and ``channels``.
ARCH_SETTINGS = tuple(f.name for f in fields(ArchConfig) if f.metadata.get("help"))

#: ``mixed_precision``: how :func:`unet_keras.precision.resolve_policy` picks the dtype policy.
PRECISION_MODES: dict[str, str] = {
    "off": "float32",
    "on": "mixed_bfloat16",
    "auto": "time both on a few steps and train in the faster",
}


# --- the registries the choice settings read (imported when asked) ---------------------------

def _formats() -> dict[str, str]:
    from unet_keras.data.readers import DATA_FORMATS, FORMATS

    return {name: DATA_FORMATS[name].description if name in DATA_FORMATS
            else "detected from the layout" for name in FORMATS}


def _losses() -> dict[str, str]:
    from unet_keras.losses import LOSSES

    return {name: cls.description for name, cls in LOSSES.items()}


def _monitors() -> dict[str, str]:
    from unet_keras.metrics import METRICS

    return {name: cls.description for name, cls in METRICS.items()}


def _optimizers() -> dict[str, str]:
    from unet_keras.optimizers import OPTIMIZERS

    return {name: choice.description for name, choice in OPTIMIZERS.items()}


def _split_modes() -> dict[str, str]:
    from unet_keras.data.splits import SPLIT_BY

    return {name: mode.description for name, mode in SPLIT_BY.items()}


def _strategies() -> dict[str, str]:
    from unet_keras.distribute import STRATEGIES

    return {name: choice.description for name, choice in STRATEGIES.items()}


def _schedules() -> dict[str, str]:
    from unet_keras.schedule import SCHEDULES

    return dict(SCHEDULES)


def _precision_modes() -> dict[str, str]:
    return dict(PRECISION_MODES)


#: The ``cpu`` preset, which ``cpu-sitting`` changes.
_CPU_RECIPE: dict[str, Any] = {
    "image_size": 256, "base_filters": 32, "patch_size": 128, "foreground_fraction": 0.33,
    "batch_size": 16, "loss": "bce_dice", "lr": 1e-3, "schedule": "cosine",
    "warmup": 0.03, "time_budget": 100.0, "epochs": 1000,
    "mixed_precision": "auto", "augment_scale": 0.15, "augment_gamma": 0.3,
    "augment_noise": 0.03,
}

#: Named recipes: changes to the TrainConfig defaults (flag names, as ``--config`` files use),
#: applied before ``--config`` and flags. ``paper`` is the paper's protocol (the defaults);
#: ``cpu`` is the first sitting of the bundled model (patches with foreground oversampling,
#: warm-up + cosine over a 100-minute budget, the faster numeric mode of the machine at hand);
#: ``cpu-sitting`` continues a model so trained (with ``--init-from`` and ``--hard-examples``);
#: see REPRODUCE.md. ``quickstart`` is the ``cpu`` recipe shrunk to 1,200 steps on the bundled
#: sample (README's first command; 2-3 minutes on 2 cores). It counts steps, not minutes, so
#: that every machine trains as many steps and the README's numbers can be checked (a
#: one-minute budget ran 404 steps on one of this project's CPUs and got test Dice 0.09).
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "cpu": _CPU_RECIPE,
    # A later sitting of ``cpu``: with --init-from MODEL and --hard-examples (that model's
    # per_image.csv on its own split), half the patches come from the slices it gets wrong,
    # at a lower peak rate; the checkpoint is picked on per-image validation Dice.
    "cpu-sitting": {
        **_CPU_RECIPE, "lr": 3e-4, "warmup": 0.02, "time_budget": 105.0,
        "steps_per_epoch": 200, "monitor": "dice_per_image", "hard_fraction": 0.5,
    },
    "quickstart": {
        "image_size": 128, "base_filters": 16, "patch_size": 64, "foreground_fraction": 0.5,
        "batch_size": 16, "loss": "bce_dice", "lr": 2e-3, "schedule": "cosine",
        "warmup": 0.05, "steps": 1200, "steps_per_epoch": 30, "epochs": 1000,
        "mixed_precision": "auto",
    },
}


def flag_of(name: str) -> str:
    """A setting as it is named in messages: the key and its command-line flag."""
    return f"{name} (--{name.replace('_', '-')})"


def _check_setting(f: Field, value: Any) -> None:
    """``value`` against the choices, minimum or range in ``f``'s metadata."""
    meta = f.metadata
    if meta.get("choices") is not None:
        allowed = tuple(meta["choices"]())
        if value not in allowed and not (value is None and f.default is None):
            shown = ((None,) if f.default is None else ()) + allowed
            raise ValueError(f"{flag_of(f.name)} must be one of {shown}, got {value!r}")
    if meta.get("min") is not None:
        low = meta["min"]
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{flag_of(f.name)} must be an integer >= {low}, got {value!r}")
    if meta.get("range") is not None:
        low, high, ends = meta["range"]
        ok = isinstance(value, int | float) and not isinstance(value, bool) and (
            (low < value if ends[0] == "(" else low <= value)
            and (value < high if ends[1] == ")" else value <= high))
        if not ok:
            shown = ends[0] + f"{low}, {high}" + ends[1]
            raise ValueError(f"{flag_of(f.name)} must be in {shown}, got {value!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (the resolved form is saved as ``config.json``).

    Defaults follow the paper where it states them (120 epochs, 256x256x3 input, negative Dice
    loss, base 64 / depth 4) and are documented choices where it is silent (Adam at 1e-3,
    batch 16, 70/15/15 patient split, smooth 1.0); see REPRODUCE.md.

    ``arch`` is the network; its ``input_shape`` follows from ``image_size``, ``patch_size``
    and ``channels`` (size-free, ``None`` H and W, when training on patches, so that it
    validates and predicts on whole slices). :meth:`from_dict` and :meth:`replace` take the
    network's settings flat too (``base_filters=32``), as flags, presets and ``--config``
    files name them.
    """

    data: str | None = setting(None, "dataset folder or file (default: the bundled sample in "
                                     "data/sample)")
    format: str = setting("auto", "dataset format", choices=_formats)
    skip_bad: bool = setting(False, "skip unreadable files with a warning instead of stopping")
    epochs: int = setting(120, "training epochs (the paper: 120)", min=1)
    batch_size: int = setting(16, "images per batch (global batch under a distribution "
                                  "strategy)", min=1)
    image_size: int = setting(DEFAULT_IMAGE_SIZE, "side in pixels the slices are resized to: "
                                                  "the model input (256 as in the algorithm "
                                                  "section; 512 for the paper's fixed size)",
                              min=1)
    channels: int = setting(3, "input channels (grayscale replicated; 3 as in the paper)", min=1)
    arch: ArchConfig = setting(default_factory=ArchConfig)
    loss: str = setting("dice", "training loss", choices=_losses)
    smooth: float = setting(1.0, "Dice/IoU smoothing constant s", range=(0.0, math.inf, "[)"))
    optimizer: str = setting("adam", "optimizer", choices=_optimizers)
    lr: float = setting(1e-3, "initial learning rate", range=(0.0, math.inf, "()"))
    momentum: float = setting(0.9, "SGD momentum", range=(0.0, 1.0, "[)"))
    lr_patience: int = setting(5, "epochs without val Dice gain before the learning rate is "
                                  "reduced", min=0)
    lr_factor: float = setting(0.5, "learning-rate reduction factor on plateau",
                               range=(0.0, 1.0, "()"))
    min_lr: float = setting(1e-6, "lower bound of the learning rate",
                            range=(0.0, math.inf, "[)"))
    early_stopping: int = setting(0, "stop after this many epochs without val Dice gain "
                                     "(0 = off)", min=0)
    monitor: str = setting("dice_coef", "validation metric that picks the best epoch (the "
                                        "checkpoint, plateau and early stopping read it)",
                           choices=_monitors)
    augment: bool = setting(True, "random rotation, flips and intensity jitter on training "
                                  "batches")
    augment_scale: float = setting(0.0, "patch training: zoom in/out by up to 1 + this "
                                        "(0 = off)", range=(0.0, 0.5, "[]"))
    augment_gamma: float = setting(0.0, "patch training: image ** exp(U(-g, g)) (0 = off)",
                                   range=(0.0, 1.0, "[]"))
    augment_noise: float = setting(0.0, "patch training: Gaussian noise of std up to this "
                                        "(0 = off)", range=(0.0, 0.5, "[]"))
    patch_size: int = setting(0, "train on random square patches of this size cut from the "
                                 "--image-size slices (0 = whole slices); the model is then "
                                 "size-free and validates and predicts on whole slices", min=0)
    steps_per_epoch: int = setting(0, "patch training: optimizer steps between validations "
                                      "(0 = as many patches as training slices)", min=0)
    foreground_fraction: float = setting(0.33, "share of patches placed on a tumour pixel "
                                               "(foreground oversampling)",
                                         range=(0.0, 1.0, "[]"))
    hard_examples: str | None = setting(None, "patch training: a per_image.csv of evaluate.py "
                                              "(e.g. of the --init-from model on this split); "
                                              "draw --hard-fraction of the patches from "
                                              "training slices weighted by 1 - their Dice "
                                              "there")
    hard_fraction: float = setting(0.5, "with --hard-examples: share of patches drawn from "
                                        "the weighted slices", range=(0.0, 1.0, "[]"))
    steps: int = setting(0, "stop after this many optimizer steps (0 = no step budget)", min=0)
    time_budget: float = setting(0.0, "stop after this many minutes of training (0 = no time "
                                      "budget)", range=(0.0, math.inf, "[)"))
    schedule: str = setting("plateau", "learning-rate schedule", choices=_schedules)
    warmup: float = setting(0.05, "cosine schedule: share of the budget spent warming up",
                            range=(0.0, 0.5, "[]"))
    ema: float = setting(0.0, "keep an exponential moving average of the weights with this "
                              "momentum (e.g. 0.999) and validate/save it (0 = off)",
                         range=(0.0, 1.0, "[)"))
    init_from: str | None = setting(None, "start from the weights of this .keras model (same "
                                          "network; new optimizer and schedule), recorded in "
                                          "config.json's lineage")
    split_by: str | None = setting(None, "groups of slices kept in one split (default: "
                                         "patient when every slice has an id, else block)",
                                   choices=_split_modes)
    val_fraction: float = setting(0.15, "fraction of patients/blocks for validation",
                                  range=(0.0, 1.0, "()"))
    test_fraction: float = setting(0.15, "fraction of patients/blocks held out for testing",
                                   range=(0.0, 1.0, "[)"))
    fold: str | None = setting(None, "K/N: train on fold K of N-fold cross-validation by "
                                     "patient")
    seed: int = setting(42, "random seed (weights, split, shuffling, augmentation)", min=0)
    deterministic: bool = setting(False, "also enable TensorFlow op determinism (slower)")
    mixed_precision: str = setting("off", "numeric mode of training",
                                   choices=_precision_modes)
    jit_compile: bool = setting(False, "compile the training step with XLA")
    strategy: str = setting("auto", "distribution strategy", choices=_strategies)
    output: str | None = setting(None, "run directory (default: "
                                       "saved_models/run-<date>-<time>)")
    resume: bool = setting(False, "continue the run in --output from its last finished epoch")

    def __post_init__(self) -> None:
        if isinstance(self.mixed_precision, bool):  # configs written before "auto" existed
            object.__setattr__(self, "mixed_precision", "on" if self.mixed_precision else "off")
        if not isinstance(self.arch, ArchConfig):
            raise ValueError(f"arch must be an ArchConfig, got {type(self.arch).__name__}")
        for f in fields(self):
            if f.name != "arch":
                _check_setting(f, getattr(self, f.name))
        multiple = 2**self.arch.depth
        for name in ("image_size", "patch_size"):
            value = getattr(self, name)
            if value and (value < multiple or value % multiple):
                raise ValueError(f"{flag_of(name)} must be a multiple of 2**depth = {multiple} "
                                 f"(depth {self.arch.depth}), got {value}")
        if self.steps_per_epoch and not self.patch_size:
            raise ValueError(f"{flag_of('steps_per_epoch')} applies to patch training "
                             "(--patch-size); whole-slice epochs are one pass over the slices")
        if self.patch_size > self.image_size:
            raise ValueError(f"{flag_of('patch_size')} must be at most --image-size "
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
        if self.hard_examples and not self.patch_size:
            raise ValueError(f"{flag_of('hard_examples')} applies to patch training: give "
                             "--patch-size too")
        if self.fold is not None:
            self.fold_index()
        side = None if self.patch_size else self.image_size
        shape = (side, side, self.channels)
        if self.arch.input_shape != shape:
            object.__setattr__(self, "arch", self.arch.replace(input_shape=shape))

    def fold_index(self) -> tuple[int, int] | None:
        """``"K/N"`` -> ``(K, N)`` with 1 <= K <= N, or ``None``
        (:func:`unet_keras.data.splits.parse_fold`)."""
        from unet_keras.data.splits import parse_fold

        return parse_fold(self.fold)

    def settings(self) -> dict[str, Any]:
        """Every setting by its flag name, flat: the run's own fields and the network's
        (:data:`ARCH_SETTINGS`) in place of ``arch``."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "arch":
                out.update({name: getattr(self.arch, name) for name in ARCH_SETTINGS})
            else:
                out[f.name] = getattr(self, f.name)
        return out

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some settings changed (flat names, as :meth:`settings` has them)."""
        return TrainConfig.from_dict({**self.settings(), **changes})

    def to_dict(self) -> dict[str, Any]:
        """Every field, the network nested as ``arch`` (:meth:`ArchConfig.to_dict`)."""
        return {f.name: self.arch.to_dict() if f.name == "arch" else getattr(self, f.name)
                for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """The inverse of :meth:`to_dict`; also takes the network's settings flat (as flags,
        presets, ``--config`` files and run records written before ``arch`` was nested name
        them), which win over a nested ``arch``. ``arch``'s ``input_shape`` is derived, so a
        stored one is ignored. Unknown keys are refused by name."""
        d = dict(d)
        arch = dict(d.pop("arch", None) or {})
        arch.pop("input_shape", None)
        arch.update({name: d.pop(name) for name in ARCH_SETTINGS if name in d})
        _reject_unknown(cls, d, "training options")
        _reject_unknown(ArchConfig, arch, "ArchConfig fields")
        # Size-free while unchecked: the run's sizes are checked and set in __post_init__.
        channels = d.get("channels", cls.__dataclass_fields__["channels"].default)
        return cls(**d, arch=ArchConfig(input_shape=(None, None, channels), **arch))

    def resumed(self, output: str | os.PathLike, **changes: Any) -> TrainConfig:
        """This (a run's saved configuration) set to resume the run in ``output``, with
        ``changes`` (e.g. ``epochs=200``); the network must stay the one the run's backup
        holds.

        Raises:
            ValueError: a change would alter the network.
        """
        cfg = self.replace(**{**changes, "output": str(output), "resume": True})
        if cfg.arch != self.arch:
            saved = self.arch.to_dict()
            changed = sorted(k for k, v in cfg.arch.to_dict().items() if saved[k] != v)
            raise ValueError(f"{output}: resuming needs the run's own network; these settings "
                             f"differ from its config.json: {', '.join(changed)}")
        return cfg


def choices_of(name: str) -> dict[str, str]:
    """The allowed values of the choice setting ``name`` (e.g. ``"format"``) and what each
    means, from the registry of the module that implements them; ``{}`` for a setting that is
    not a choice."""
    loader = TrainConfig.__dataclass_fields__[name].metadata.get("choices")
    return dict(loader()) if loader is not None else {}


def run_config(output: str | os.PathLike) -> TrainConfig:
    """The configuration saved in the run directory ``output`` (its ``config.json``), as it
    was trained. Records written before the network was nested (a flat ``train`` dict beside
    the full ``arch``) are read too."""
    record_path = Path(output) / "config.json"
    try:
        record = json.loads(record_path.read_text())
        saved = dict(record["train"])
    except FileNotFoundError:
        raise ValueError(f"{output}: no config.json here, nothing to resume") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{record_path}: unreadable run configuration ({exc})") from None
    if "arch" not in saved and isinstance(record.get("arch"), dict):
        saved["arch"] = record["arch"]
    return TrainConfig.from_dict(saved)


def resume_config(output: str | os.PathLike, **changes: Any) -> TrainConfig:
    """The configuration of the run in ``output`` (its ``config.json``), with ``changes`` (e.g.
    ``epochs=200``), set to resume it (:meth:`TrainConfig.resumed`)."""
    return run_config(output).resumed(output, **changes)
