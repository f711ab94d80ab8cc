"""The ``model.pt`` file: a :class:`TorchUNet` state dict plus the ArchConfig that built it.

Layout (``torch.save`` of a plain dict, so ``torch.load(weights_only=True)`` reads it)::

    {"format": "unet-keras-torch", "format_version": 1,
     "arch_config": ArchConfig.to_dict(), "state_dict": {name: CPU tensor}}
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch

from unet_keras.atomic import atomic_path
from unet_keras.config import ArchConfig
from unet_keras.torch_mirror.network import TorchUNet, build_torch_unet

FORMAT = "unet-keras-torch"
FORMAT_VERSION = 1


class PtFileError(ValueError):
    """A file is not a readable ``.pt`` written by :func:`save_pt`."""


def save_pt(module: TorchUNet, path: str | os.PathLike) -> Path:
    """Write ``module`` (weights on CPU) and its config to ``path`` atomically; return the path."""
    if not isinstance(module, TorchUNet):
        raise TypeError(f"save_pt needs a unet_keras TorchUNet, got {type(module).__name__}")
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch_config": module.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_pt(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> TorchUNet:
    """Rebuild the :class:`TorchUNet` saved by :func:`save_pt`, in eval mode.

    Raises:
        FileNotFoundError: no file at ``path``.
        PtFileError: the file is not such a ``.pt`` (message names the file and the problem).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error says it
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise PtFileError(f"{path}: not a PyTorch file readable with weights_only=True "
                          f"({type(exc).__name__})") from None
    config, state = _unpack(path, payload)
    module = build_torch_unet(config)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1].strip()
        raise PtFileError(f"{path}: weights do not fit its arch_config ({first})") from None
    return module.to(map_location).eval()


def _unpack(path: Path, payload: Any) -> tuple[ArchConfig, dict[str, torch.Tensor]]:
    """Validate the saved dict; return its config and state dict."""
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise PtFileError(f"{path}: not a unet-keras model file (no format {FORMAT!r} marker)")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise PtFileError(f"{path}: format_version {version!r} is not supported "
                          f"(this version reads {FORMAT_VERSION})")
    try:
        config = ArchConfig.from_dict(payload["arch_config"])
        state = payload["state_dict"]
    except (KeyError, TypeError, ValueError) as exc:
        raise PtFileError(f"{path}: bad or missing arch_config/state_dict ({exc})") from None
    if not isinstance(state, dict):
        raise PtFileError(f"{path}: state_dict is a {type(state).__name__}, not a dict")
    return config, state
