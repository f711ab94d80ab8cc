"""Reader for the Figshare brain tumor dataset (Cheng et al.), one slice per ``.mat`` file.

Each file holds a struct ``cjdata`` with ``image`` (512x512 ``int16``), ``tumorMask`` (logical),
``label`` (double 1/2/3 = meningioma/glioma/pituitary), ``PID`` (patient id, a char array) and
``tumorBorder``. The published files are MATLAB v7.3, i.e. HDF5 behind a 512-byte MATLAB
userblock: read with h5py, where MATLAB's column-major arrays come out transposed and ``char``
arrays are ``uint16`` character codes. Older v5/v6 files are read with ``scipy.io.loadmat``.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path
from typing import BinaryIO

import h5py
import numpy as np
import scipy.io

from unet_keras.data.formats import DataFormat
from unet_keras.data.slices import (
    MAX_SIDE,
    DataError,
    Slice,
    check_image,
    check_shape,
    make_slice,
    natural_key,
)

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def is_mat_file(path: Path) -> bool:
    """True for a ``.mat`` file name."""
    return path.suffix.lower() == ".mat"


def is_figshare_dataset(root: str | Path) -> bool:
    """True for one ``.mat`` file, or a folder with ``*.mat`` files (at any depth)."""
    root = Path(root)
    if root.is_file():
        return is_mat_file(root)
    return any(root.rglob("*.mat"))


def list_mat_files(root: str | Path) -> list[Path]:
    """All ``*.mat`` files under ``root`` (recursive; ``root`` may be one file), natural order."""
    root = Path(root)
    files = [root] if root.is_file() else [p for p in root.rglob("*.mat") if p.is_file()]
    return sorted(files, key=lambda p: natural_key(p.stem))


def _read_bytes(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None


def read_mat_file(path: str | Path, max_side: int | None = None) -> Slice:
    """Read one Figshare ``.mat`` file (v7.3 or v5) into a :class:`Slice`.

    Raises:
        DataError: unreadable/truncated file, no ``cjdata`` struct, missing fields, a bad image
            or mask (see :func:`~unet_keras.data.slices.check_image`), or a mask whose size
            differs from the image's.
    """
    return read_mat_bytes(_read_bytes(path), str(path), max_side)


def read_mat_bytes(data: bytes, name: str, max_side: int | None = None) -> Slice:
    """Like :func:`read_mat_file` for file contents held in memory (``name`` labels errors)."""
    image, mask, label, pid = _read_fields(data, name, True, max_side)
    return make_slice(image, mask, Path(name).stem, pid, label, name)


def read_mat_image(path: str | Path, max_side: int | None = None) -> np.ndarray:
    """Only ``cjdata.image`` of a Figshare ``.mat`` file, ``(H, W)`` as stored (``int16``):
    prediction needs no ``tumorMask``, so a file without one is read too.

    Raises:
        DataError: unreadable/truncated file, no ``cjdata.image``, or a bad image.
    """
    return read_mat_image_bytes(_read_bytes(path), str(path), max_side)


def read_mat_image_bytes(data: bytes, name: str, max_side: int | None = None) -> np.ndarray:
    """Like :func:`read_mat_image` for file contents held in memory."""
    image = _read_fields(data, name, False, max_side)[0]
    return check_image(image, name, max_side=max_side)


def _read_fields(data: bytes, name: str, need_mask: bool, max_side: int | None
                 ) -> tuple[np.ndarray, np.ndarray | None, int | None, str | None]:
    with warnings.catch_warnings():  # scipy's MatReadWarning etc.: the DataError says it
        warnings.simplefilter("ignore")
        if _is_hdf5(data):
            return _read_v73(io.BytesIO(data), name, need_mask, max_side)
        _check_v5_size(data, name, max_side)
        return _read_v5(io.BytesIO(data), name, need_mask)


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


def _dataset(group: h5py.Group, key: str, name: str, max_side: int | None,
             what: str) -> np.ndarray:
    """Read ``group[key]`` (an image-like array) after checking its declared shape and type:
    MATLAB stores arrays transposed, so ``(W, H)`` on disk is ``(H, W)``."""
    ds = group[key]
    if not isinstance(ds, h5py.Dataset) or ds.dtype.kind not in "biuf":
        kind = type(ds).__name__ if not isinstance(ds, h5py.Dataset) else str(ds.dtype)
        raise DataError(f"{name}: cjdata.{key} is not a numeric array ({kind})")
    check_shape(ds.shape[::-1], name, what, max_side, declared=True)
    return np.asarray(ds).T


def _small(group: h5py.Group, key: str, limit: int = 4096) -> np.ndarray | None:
    """A small dataset (label, PID) or ``None`` when absent, not an array, or oversized."""
    ds = group.get(key)
    if not isinstance(ds, h5py.Dataset) or ds.size > limit:
        return None
    return ds


def _read_v73(source: BinaryIO, name: str, need_mask: bool = True, max_side: int | None = None
              ) -> tuple[np.ndarray, np.ndarray | None, int | None, str | None]:
    try:
        with h5py.File(source, "r") as f:
            if "cjdata" not in f or not isinstance(f["cjdata"], h5py.Group):
                raise DataError(
                    f"{name}: no 'cjdata' struct in this .mat (top-level names: "
                    f"{sorted(f.keys()) or 'none'}); not a Figshare brain tumor slice"
                )
            g = f["cjdata"]
            missing = [k for k in ("image", "tumorMask") if k not in g
                       and (need_mask or k == "image")]
            if missing:
                raise DataError(f"{name}: cjdata lacks {', '.join(missing)}")
            image = _dataset(g, "image", name, max_side, "image")
            mask = (_dataset(g, "tumorMask", name, max_side, "mask")
                    if need_mask else None)
            label_ds, pid_ds = _small(g, "label"), _small(g, "PID")
            label = _as_label(np.asarray(label_ds)) if label_ds is not None else None
            pid = _chars(pid_ds) if pid_ds is not None else None
    except DataError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as e:
        raise DataError(
            f"{name}: not a readable HDF5 (.mat v7.3) file: truncated or corrupt "
            f"({type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]})"
        ) from None
    return image, mask, label, pid


# MATLAB v5 data element types: miCOMPRESSED holds a zlib stream of further elements.
_MI_COMPRESSED = 15


def _check_v5_size(data: bytes, name: str, max_side: int | None) -> None:
    """Decompression-bomb guard for v5/v7 ``.mat`` files (zlib-compressed variables): refuse a
    file whose variables expand past what the largest accepted image and its mask need,
    counting while inflating in bounded pieces, before scipy inflates them whole."""
    side = MAX_SIDE if max_side is None else max_side
    limit = 3 * 8 * side * side + (1 << 20)  # image + mask + border as float64, + headers
    if len(data) < 128:
        return  # scipy reports it
    endian = "<" if data[126:128] == b"IM" else ">"
    offset, total = 128, 0
    while offset + 8 <= len(data):
        kind, nbytes = struct.unpack(endian + "II", data[offset:offset + 8])
        if kind >> 16:  # small data element: 4 bytes of data in the tag itself
            offset += 8
            continue
        if kind == _MI_COMPRESSED:
            inflate = zlib.decompressobj()
            pending = data[offset + 8:offset + 8 + nbytes]
            try:
                while pending and total <= limit:
                    total += len(inflate.decompress(pending, 1 << 20))
                    pending = inflate.unconsumed_tail
            except zlib.error:
                return  # corrupt: scipy reports it
            offset += 8 + nbytes
        else:
            total += nbytes
            offset += 8 + nbytes + (-nbytes) % 8
        if total > limit:
            raise DataError(f"{name}: its variables expand to more than {limit // 2**20} MB; "
                            f"the limit is an image of {side}x{side} pixels with its mask")


def _read_v5(source: BinaryIO, name: str, need_mask: bool = True
             ) -> tuple[np.ndarray, np.ndarray | None, int | None, str | None]:
    try:
        content = scipy.io.loadmat(source, simplify_cells=True)
    except Exception as e:  # scipy raises ValueError, TypeError, MatReadError... on bad files
        first = (str(e).splitlines() or [""])[0][:200]
        raise DataError(
            f"{name}: not a readable MATLAB .mat file ({type(e).__name__}: {first})"
        ) from None
    cj = content.get("cjdata")
    if not isinstance(cj, dict):
        names = sorted(k for k in content if not k.startswith("__"))
        raise DataError(
            f"{name}: no 'cjdata' struct in this .mat (top-level names: {names or 'none'}); "
            "not a Figshare brain tumor slice"
        )
    missing = [k for k in ("image", "tumorMask") if k not in cj and (need_mask or k == "image")]
    if missing:
        raise DataError(f"{name}: cjdata lacks {', '.join(missing)}")
    try:
        label = _as_label(np.asarray(cj["label"], dtype=np.float64)) if "label" in cj else None
    except (TypeError, ValueError):
        label = None
    pid = str(cj.get("PID", "")).strip() or None
    mask = np.asarray(cj["tumorMask"]) if need_mask else None
    return np.asarray(cj["image"]), mask, label, pid


def _as_label(value: np.ndarray) -> int | None:
    if not value.size or value.dtype.kind not in "biuf" or not np.isfinite(value.ravel()[0]):
        return None
    return int(value.ravel()[0])


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


FORMAT = DataFormat(
    name="figshare",
    description="Figshare brain tumor set (Cheng): one MATLAB .mat file per slice",
    layout="*.mat files (Figshare)",
    detect=is_figshare_dataset,
    list_files=list_mat_files,
    read=read_mat_file,
    claims=is_mat_file,
)
