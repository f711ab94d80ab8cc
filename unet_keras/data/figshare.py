"""Reader for the Figshare brain tumor dataset (Cheng et al.), one slice per ``.mat`` file.

Each file holds a struct ``cjdata`` with ``image`` (512x512 ``int16``), ``tumorMask`` (logical),
``label`` (double 1/2/3 = meningioma/glioma/pituitary), ``PID`` (patient id, a char array) and
``tumorBorder``. The published files are MATLAB v7.3, i.e. HDF5 behind a 512-byte MATLAB
userblock: read with h5py, where MATLAB's column-major arrays come out transposed and ``char``
arrays are ``uint16`` character codes. Older v5/v6 files are read with ``scipy.io.loadmat``.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

import h5py
import numpy as np
import scipy.io

from unet_keras.data.records import DataError, Slice, make_slice, natural_key

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def list_mat_files(root: str | Path) -> list[Path]:
    """All ``*.mat`` files under ``root`` (recursive; ``root`` may be one file), natural order."""
    root = Path(root)
    files = [root] if root.is_file() else [p for p in root.rglob("*.mat") if p.is_file()]
    return sorted(files, key=lambda p: natural_key(p.stem))


def read_mat_file(path: str | Path) -> Slice:
    """Read one Figshare ``.mat`` file (v7.3 or v5) into a :class:`Slice`.

    Raises:
        DataError: unreadable/truncated file, no ``cjdata`` struct, missing fields, or a mask
            whose size differs from the image's.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    return read_mat_bytes(data, str(path))


def read_mat_bytes(data: bytes, name: str) -> Slice:
    """Like :func:`read_mat_file` for file contents held in memory (``name`` labels errors)."""
    if _is_hdf5(data):
        fields = _read_v73(io.BytesIO(data), name)
    else:
        fields = _read_v5(io.BytesIO(data), name)
    image, mask, label, pid = fields
    return make_slice(image, mask, Path(name).stem, pid, label, name)


def _is_hdf5(data: bytes) -> bool:
    if b"MATLAB 7.3" in data[:128]:
        return True
    # HDF5 looks for its superblock at 0, 512, 1024, 2048, ...
    offset = 0
    while offset + 8 <= len(data) and offset <= 1 << 20:
        if data[offset : offset + 8] == _HDF5_SIGNATURE:
            return True
        offset = 512 if offset == 0 else offset * 2
    return False


def _read_v73(source: BinaryIO, name: str) -> tuple[np.ndarray, np.ndarray, int | None, str | None]:
    try:
        with h5py.File(source, "r") as f:
            if "cjdata" not in f:
                raise DataError(
                    f"{name}: no 'cjdata' struct in this .mat (top-level names: "
                    f"{sorted(f.keys()) or 'none'}); not a Figshare brain tumor slice"
                )
            g = f["cjdata"]
            missing = [k for k in ("image", "tumorMask") if k not in g]
            if missing:
                raise DataError(f"{name}: cjdata lacks {', '.join(missing)}")
            image = np.asarray(g["image"]).T  # MATLAB column-major -> (H, W)
            mask = np.asarray(g["tumorMask"]).T
            label = _as_label(np.asarray(g["label"])) if "label" in g else None
            pid = _chars(g["PID"]) if "PID" in g else None
    except OSError as e:
        raise DataError(
            f"{name}: not a readable HDF5 (.mat v7.3) file: truncated or corrupt ({e})"
        ) from None
    return image, mask, label, pid


def _read_v5(source: BinaryIO, name: str) -> tuple[np.ndarray, np.ndarray, int | None, str | None]:
    try:
        content = scipy.io.loadmat(source, simplify_cells=True)
    except Exception as e:  # scipy raises ValueError, TypeError, MatReadError... on bad files
        raise DataError(
            f"{name}: not a readable MATLAB .mat file ({type(e).__name__}: {e})"
        ) from None
    cj = content.get("cjdata")
    if not isinstance(cj, dict):
        names = sorted(k for k in content if not k.startswith("__"))
        raise DataError(
            f"{name}: no 'cjdata' struct in this .mat (top-level names: {names or 'none'}); "
            "not a Figshare brain tumor slice"
        )
    missing = [k for k in ("image", "tumorMask") if k not in cj]
    if missing:
        raise DataError(f"{name}: cjdata lacks {', '.join(missing)}")
    label = _as_label(np.asarray(cj["label"])) if "label" in cj else None
    pid = str(cj.get("PID", "")).strip() or None
    return np.asarray(cj["image"]), np.asarray(cj["tumorMask"]), label, pid


def _as_label(value: np.ndarray) -> int | None:
    return int(value.ravel()[0]) if value.size else None


def _chars(dataset: h5py.Dataset) -> str | None:
    """MATLAB ``char`` in HDF5: ``uint16`` character codes (``MATLAB_empty`` when '')."""
    if dataset.attrs.get("MATLAB_empty", 0):
        return None
    codes = np.asarray(dataset).T.ravel()
    text = "".join(chr(int(c)) for c in codes).strip()
    return text or None


def write_figshare_mat(
    path: str | Path,
    image: np.ndarray,
    mask: np.ndarray,
    label: int,
    pid: str,
    border: np.ndarray | None = None,
) -> None:
    """Write one slice as MATLAB v7.3 in the Figshare layout (what MATLAB's ``save -v7.3``
    produces): a 512-byte MATLAB userblock, then HDF5 with group ``cjdata``
    (``MATLAB_class="struct"``) holding ``image`` (``int16``), ``tumorMask`` (``uint8``,
    class ``logical``), ``label`` (double 1x1), ``PID`` (``uint16`` character codes, class
    ``char``) and ``tumorBorder`` (double row vector), every array stored transposed.

    For fixtures, conversions and benchmarks; :func:`read_mat_file` reads it back.

    Args:
        image: ``(H, W)``, cast to ``int16``.
        mask: ``(H, W)``, non-zero = tumor.
        label: tumor class 1/2/3.
        pid: patient id.
        border: ``(2K,)`` boundary coordinates ``[y1, x1, y2, x2, ...]``; empty when omitted.
    """
    def put(group: h5py.Group, name: str, value: np.ndarray, matlab_class: str,
            int_decode: int | None = None) -> None:
        ds = group.create_dataset(name, data=np.asarray(value).T)
        ds.attrs["MATLAB_class"] = np.bytes_(matlab_class)
        if int_decode is not None:
            ds.attrs["MATLAB_int_decode"] = np.int32(int_decode)

    border = np.zeros(0) if border is None else np.asarray(border, np.float64).ravel()
    with h5py.File(path, "w", userblock_size=512) as f:
        g = f.create_group("cjdata")
        g.attrs["MATLAB_class"] = np.bytes_("struct")
        put(g, "PID", np.array([[ord(ch) for ch in pid]], np.uint16), "char", 2)
        put(g, "image", np.asarray(image).astype(np.int16), "int16")
        put(g, "label", np.array([[float(label)]]), "double")
        put(g, "tumorBorder", border[None, :], "double")
        put(g, "tumorMask", (np.asarray(mask) != 0).astype(np.uint8), "logical", 1)
    header = (b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Thu Jan  1 00:00:00 2015 "
              b"HDF5 schema 1.00 .").ljust(116) + b"\0" * 8 + b"\x00\x02" + b"IM"
    with open(path, "r+b") as f:
        f.write(header.ljust(512, b"\0"))
