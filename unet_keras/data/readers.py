"""Format detection and the entry points over all readers.

``read_dataset(path)`` returns the slices of a Figshare ``.mat`` set, an LGG ``kaggle_3m`` tree
or an ``images/`` + ``masks/`` folder; ``read_image_file``/``read_image_bytes`` read one image of
any supported type (PNG/JPEG/TIFF/BMP or Figshare ``.mat``) for prediction and uploads.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from tqdm import tqdm

from unet_keras.data import figshare, folders, lgg
from unet_keras.data.formats import DataFormat
from unet_keras.data.images import decode_raster, read_raster
from unet_keras.data.slices import DataError, Slice, binarize_mask, check_image, natural_key

#: The dataset formats (:class:`~unet_keras.data.formats.DataFormat`, one module each), in
#: the order auto-detection tries them: the most specific layout first. A new format is a
#: module with its ``FORMAT`` and one line here.
DATA_FORMATS: dict[str, DataFormat] = {f.name: f for f in (
    folders.FORMAT,
    lgg.FORMAT,
    figshare.FORMAT,
)}
#: ``--format`` choices: ``auto`` (detected, :func:`detect_format`) or a registered format.
FORMATS = ("auto", *DATA_FORMATS)

#: The bundled real sample (``data/sample`` of the repository: Figshare slices in the
#: ``images/`` + ``masks/`` layout), read when no dataset is given.
SAMPLE_DIR = Path(__file__).resolve().parents[2] / "data" / "sample"


def detect_format(path: str | Path) -> str:
    """The first format of :data:`DATA_FORMATS` whose layout ``path`` has (e.g. ``"folder"``
    for ``images/`` + ``masks/``, ``"lgg"`` for ``*_mask.tif``, ``"figshare"`` for ``*.mat`` or
    one ``.mat`` file).

    Raises:
        DataError: the path does not exist or matches none of the layouts.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file or directory")
    for fmt in DATA_FORMATS.values():
        if fmt.detect(p):
            return fmt.name
    if p.is_file():
        raise DataError(f"{p}: a dataset is a folder (or one .mat file), not a {p.suffix} file")
    layouts = [f.layout for f in DATA_FORMATS.values()]
    raise DataError(f"{p}: cannot tell the dataset format: expected "
                    f"{', '.join(layouts[:-1])} or {layouts[-1]}")


def list_files(path: str | Path, format: str = "auto") -> tuple[str, list[str]]:
    """The resolved format and one file per slice (e.g. the ``.mat`` or the image file), in
    order; files the format's layout leaves without a slice are warned about.

    Raises:
        DataError: unknown format, no slices, or a path not of that format.
    """
    if format not in FORMATS:
        raise DataError(f"{path}: unknown format {format!r}; expected one of {FORMATS}")
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file or directory")
    fmt = DATA_FORMATS[detect_format(p) if format == "auto" else format]
    files = fmt.list_files(p)
    if not files:
        raise DataError(f"{p}: no slices found (format {fmt.name})")
    stray = fmt.orphans(p) if fmt.orphans is not None else []
    if stray:
        warnings.warn(f"{stray[0]}: mask without image ({len(stray)} such file(s) ignored)",
                      stacklevel=2)
    return fmt.name, [str(f) for f in files]


def read_slice(path: str | Path, format: str) -> Slice:
    """Read the slice whose file (e.g. ``.mat`` or image) is ``path``; ``format`` as resolved
    by :func:`list_files` (``"auto"``: the first format of :data:`DATA_FORMATS` that claims
    the file, e.g. ``.mat`` -> figshare, ``.../images/x`` -> folder, ``.tif`` -> lgg).

    Raises:
        DataError: ``"auto"`` and no format claims the file, or the file's own errors.
    """
    if format == "auto":
        p = Path(path)
        claimed = [f for f in DATA_FORMATS.values() if f.claims(p)]
        if not claimed:
            raise DataError(f"{p}: not a slice file of any dataset format "
                            f"({', '.join(DATA_FORMATS)})")
        return claimed[0].read(path)
    return DATA_FORMATS[format].read(path)


def read_dataset(
    path: str | Path, format: str = "auto", skip_bad: bool = False, progress: bool = False
) -> list[Slice]:
    """Read every slice of a dataset.

    Args:
        path: a Figshare folder of ``.mat`` files (or one file), an LGG ``kaggle_3m`` folder, or
            a folder with ``images/`` and ``masks/``.
        format: ``"auto"`` (see :func:`detect_format`) or a name in :data:`DATA_FORMATS`.
        skip_bad: skip unreadable/inconsistent files with one warning giving their count and
            the first problems, instead of raising on the first one.
        progress: show a tqdm progress bar (on a terminal).

    Returns:
        Slices sorted by id (numerically where ids are numbers), or in the order of the
        format's files where it says so (LGG: by patient, then slice).

    Raises:
        DataError: the first bad file (message starts with its path), no slices, or duplicate
            ids.
    """
    fmt, files = list_files(path, format)
    slices: list[Slice] = []
    bad: list[str] = []
    with tqdm(files, desc=f"reading {Path(path).name}", unit="slice", leave=False,
              disable=None if progress else True) as bar:  # None: only on a terminal
        for f in bar:
            try:
                slices.append(read_slice(f, fmt))
            except DataError as e:
                if not skip_bad:
                    raise
                bad.append(str(e))
    if bad:
        shown = "; ".join(bad[:3]) + ("; ..." if len(bad) > 3 else "")
        warnings.warn(f"skipped {len(bad)} bad file(s) of {len(files)}: {shown}", stacklevel=2)
    if not slices:
        raise DataError(f"{path}: no readable slices ({len(bad)} bad file(s))")
    seen: dict[str, str] = {}
    for s in slices:
        if s.id in seen:
            raise DataError(f"{s.path}: duplicate slice id {s.id!r} (also {seen[s.id]})")
        seen[s.id] = s.path
    if DATA_FORMATS[fmt].sort_by_id:
        slices.sort(key=lambda s: natural_key(s.id))
    return slices


def read_image_file(path: str | Path, max_side: int | None = None) -> np.ndarray:
    """One image of any supported type: PNG/JPEG/TIFF/BMP as stored (RGB order for colour),
    Figshare ``.mat`` -> ``cjdata.image`` as ``(H, W)`` ``int16`` (its ``tumorMask`` is not
    needed). Refused as :func:`~unet_keras.data.slices.check_image` says; ``max_side``: the
    largest accepted height/width (default :data:`~unet_keras.data.slices.MAX_SIDE`), checked
    from the header before decoding.

    Raises:
        DataError: unreadable, unsupported or bad file (message starts with the path).
    """
    if Path(path).suffix.lower() == ".mat":
        return figshare.read_mat_image(path, max_side)
    return read_raster(path, max_side)


def read_image_bytes(data: bytes, filename: str, max_side: int | None = None) -> np.ndarray:
    """:func:`read_image_file` for contents held in memory (an upload); ``filename`` gives the
    type by its suffix and labels errors."""
    if Path(filename).suffix.lower() == ".mat":
        return figshare.read_mat_image_bytes(data, filename, max_side)
    return decode_raster(data, filename, max_side)


def read_mask_bytes(data: bytes, filename: str, max_side: int | None = None) -> np.ndarray:
    """A mask held in memory -> ``(H, W)`` ``uint8`` 0/1 (``.mat``: its ``cjdata.tumorMask``)."""
    if Path(filename).suffix.lower() == ".mat":
        return figshare.read_mat_bytes(data, filename, max_side).mask
    return binarize_mask(check_image(decode_raster(data, filename, max_side), filename, "mask",
                                     max_side))
