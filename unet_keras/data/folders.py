"""Reader for image/mask folders: ``ROOT/images/<stem>.<ext>`` + ``ROOT/masks/<stem>.<ext>``.

Any of PNG/JPEG/TIFF/BMP; a mask may also be named ``<stem>_mask.<ext>``. Masks may store 0/1 or
0/255. This is the layout of the common PNG conversion of the Figshare set. No patient ids or
labels: those fields are ``None``.
"""

from __future__ import annotations

from pathlib import Path

from unet_keras.data.formats import DataFormat
from unet_keras.data.images import RASTER_SUFFIXES, read_raster
from unet_keras.data.slices import DataError, Slice, make_slice, natural_key

IMAGES, MASKS = "images", "masks"


def is_folder_dataset(root: str | Path) -> bool:
    """True when ``root`` has ``images/`` and ``masks/`` subfolders."""
    root = Path(root)
    return (root / IMAGES).is_dir() and (root / MASKS).is_dir()


def _rasters(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.suffix.lower() in RASTER_SUFFIXES and p.is_file()]


def list_image_files(root: str | Path) -> list[Path]:
    """Files in ``root/images`` in natural order of their stems (``2.png`` before ``10.png``)."""
    return sorted(_rasters(Path(root) / IMAGES), key=lambda p: natural_key(p.stem))


def list_dataset(root: str | Path) -> list[Path]:
    """:func:`list_image_files` of a folder dataset; refuses a folder without the layout.

    Raises:
        DataError: ``root`` has no ``images/`` and ``masks/`` subfolders.
    """
    if not is_folder_dataset(root):
        raise DataError(f"{root}: the folder format needs images/ and masks/ subfolders")
    return list_image_files(root)


def is_image_file(path: Path) -> bool:
    """True for ``ROOT/images/<file>`` beside a ``ROOT/masks`` folder."""
    return path.parent.name == IMAGES and (path.parent.parent / MASKS).is_dir()


def orphan_masks(root: str | Path) -> list[Path]:
    """Files in ``root/masks`` that match no image stem."""
    stems = {p.stem for p in _rasters(Path(root) / IMAGES)}
    return sorted(
        p for p in _rasters(Path(root) / MASKS)
        if p.stem not in stems and p.stem.removesuffix("_mask") not in stems
    )


def mask_path_for(image_path: str | Path) -> Path:
    """``ROOT/masks/<stem>.*`` (or ``<stem>_mask.*``) for ``ROOT/images/<stem>.<ext>``.

    Raises:
        DataError: no such mask.
    """
    p = Path(image_path)
    masks = p.parent.parent / MASKS
    exact = [masks / (p.stem + s) for s in (p.suffix, *RASTER_SUFFIXES)]
    found = [c for c in dict.fromkeys(exact) if c.is_file()]
    if not found:
        suffixed = (masks / (p.stem + "_mask" + s) for s in RASTER_SUFFIXES)
        found = [c for c in suffixed if c.is_file()]
    if not found:
        raise DataError(f"{p}: image without mask (expected {masks / (p.stem + p.suffix)})")
    return found[0]


def read_folder_pair(image_path: str | Path) -> Slice:
    """Read ``images/<stem>`` and its mask into a :class:`Slice` (no patient id, no label)."""
    p = Path(image_path)
    mask_path = mask_path_for(p)
    return make_slice(read_raster(p), read_raster(mask_path), p.stem, None, None, str(p),
                      mask_path=str(mask_path))


FORMAT = DataFormat(
    name="folder",
    description="images/ + masks/ folders of PNG, JPEG, TIFF or BMP files with matching stems",
    layout="images/ + masks/ folders",
    detect=is_folder_dataset,
    list_files=list_dataset,
    read=read_folder_pair,
    claims=is_image_file,
    orphans=orphan_masks,
)
