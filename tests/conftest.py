"""Shared fixtures: where the real data lives, the bundled sample, and Figshare-layout ``.mat``
and LGG-layout TIFF files built from real slices.

The ``.mat`` writer here is deliberately independent of ``unet_keras.data.figshare`` (raw h5py
plus the MATLAB userblock), so reader tests check against the file format, not our own writer.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real data (env ``UNET_KERAS_DATA``, default ``<repo>/../shared/data``)."""
    path = Path(os.environ.get("UNET_KERAS_DATA", REPO.parent / "shared" / "data"))
    if not (path / "figshare-png" / "images").is_dir():
        pytest.fail(f"real data not found at {path}: set UNET_KERAS_DATA to the folder holding "
                    "figshare-png/ and figshare-pool-256/")
    return path


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The bundled sample ``data/sample`` (images/ + masks/)."""
    path = REPO / "data" / "sample"
    if not (path / "images").is_dir():
        pytest.fail(f"bundled sample missing at {path}")
    return path


def write_matlab_v73(path: Path, image: np.ndarray, mask: np.ndarray, label: float, pid: str,
                     border: np.ndarray) -> None:
    """A ``.mat`` as MATLAB ``save -v7.3`` writes the Figshare ``cjdata`` struct."""
    def put(g: h5py.Group, name: str, value: np.ndarray, cls: bytes, decode: int | None = None):
        ds = g.create_dataset(name, data=np.ascontiguousarray(value.T))  # column-major
        ds.attrs["MATLAB_class"] = np.bytes_(cls)
        if decode is not None:
            ds.attrs["MATLAB_int_decode"] = np.int32(decode)

    with h5py.File(path, "w", userblock_size=512) as f:
        g = f.create_group("cjdata")
        g.attrs["MATLAB_class"] = np.bytes_(b"struct")
        put(g, "PID", np.frombuffer(pid.encode("utf-16-le"), np.uint16)[None, :], b"char", 2)
        put(g, "image", image.astype(np.int16), b"int16")
        put(g, "label", np.array([[label]], np.float64), b"double")
        put(g, "tumorBorder", border.astype(np.float64)[None, :], b"double")
        put(g, "tumorMask", (mask > 0).astype(np.uint8), b"logical", 1)
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Tue Sep 15 10:00:00 2015 HDF5 "
    text += b"schema 1.00 ."
    header = text.ljust(116, b" ") + b"\x00" * 8 + (0x0200).to_bytes(2, "little") + b"IM"
    with open(path, "r+b") as f:
        f.write(header.ljust(512, b"\x00"))


def border_of(mask: np.ndarray) -> np.ndarray:
    """Figshare's ``tumorBorder``: ``[y1, x1, y2, x2, ...]`` of the outline (1-based)."""
    contours, _ = cv2.findContours((mask > 0).astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    pts = max(contours, key=len)[:, 0, :]  # (K, 2) as (x, y)
    return np.stack([pts[:, 1] + 1, pts[:, 0] + 1], axis=1).ravel().astype(np.float64)


# Real slices used for .mat / TIFF fixtures: (number, label, patient id). 1070 is 256x256.
MAT_SLICES = [(1, 1, "100360"), (2, 1, "100360"), (3, 1, "100360"), (1001, 2, "107494"),
              (1002, 2, "107494"), (1070, 2, "MR029"), (2001, 3, "112649"), (2002, 3, "112649")]


@pytest.fixture(scope="session")
def mat_slices() -> list[tuple[int, int, str]]:
    """``(number, label, patient id)`` of the slices in :func:`mat_v73_dir`, in file order."""
    return list(MAT_SLICES)


@pytest.fixture(scope="session")
def real_pngs(shared_data: Path) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """``{number: (image uint8, mask uint8 0/255)}`` for :data:`MAT_SLICES`, read with cv2."""
    root = shared_data / "figshare-png"
    return {
        n: (cv2.imread(str(root / "images" / f"{n}.png"), cv2.IMREAD_UNCHANGED),
            cv2.imread(str(root / "masks" / f"{n}.png"), cv2.IMREAD_UNCHANGED))
        for n, _, _ in MAT_SLICES
    }


@pytest.fixture(scope="session")
def mat_v73_dir(tmp_path_factory, real_pngs) -> Path:
    """Figshare-layout v7.3 ``N.mat`` files whose ``image`` holds the PNG's values as int16."""
    root = tmp_path_factory.mktemp("figshare_mat")
    for n, label, pid in MAT_SLICES:
        image, mask = real_pngs[n]
        write_matlab_v73(root / f"{n}.mat", image, mask, float(label), pid, border_of(mask))
    return root


@pytest.fixture(scope="session")
def lgg_dir(tmp_path_factory, real_pngs) -> Path:
    """A ``kaggle_3m``-style tree: two patient folders of 256x256x3 TIFFs + ``_mask.tif``; the
    last slice of each patient has an empty mask (as ~60% of LGG slices do)."""
    import tifffile

    root = tmp_path_factory.mktemp("lgg") / "kaggle_3m"
    patients = {"TCGA_CS_4941_19960909": [1, 2, 3], "TCGA_DU_5849_19950405": [1001, 1002]}
    for folder, numbers in patients.items():
        (root / folder).mkdir(parents=True)
        for k, n in enumerate(numbers, start=1):
            image, mask = (cv2.resize(a, (256, 256), interpolation=i) for a, i in
                           zip(real_pngs[n], (cv2.INTER_AREA, cv2.INTER_NEAREST), strict=True))
            rgb = np.stack([image, np.clip(image.astype(int) + 20, 0, 255).astype(np.uint8),
                            image // 2], axis=2)
            if k == len(numbers):
                mask = np.zeros_like(mask)
            tifffile.imwrite(root / folder / f"{folder}_{k}.tif", rgb, photometric="rgb")
            tifffile.imwrite(root / folder / f"{folder}_{k}_mask.tif", mask)
    (root / "data.csv").write_text("Patient,RNASeqCluster\nTCGA_CS_4941,2\n")
    return root


@pytest.fixture
def mixed_bfloat16():
    """Switch Keras' global policy to ``mixed_bfloat16`` and always restore the previous one."""
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert keras.mixed_precision.global_policy().name == previous.name
