"""Reader for the Kaggle LGG segmentation set (``kaggle_3m``, Buda et al.).

Layout: ``kaggle_3m/<patient folder>/<patient folder>_<n>.tif`` (256x256x3 ``uint8`` RGB: the
pre-contrast, FLAIR and post-contrast sequences) with ``<same stem>_mask.tif`` beside each
(256x256 ``uint8`` 0/255). The patient id is the folder name (e.g. ``TCGA_CS_4941_19960909``).
"""

from __future__ import annotations

from pathlib import Path

from unet_keras.data.formats import DataFormat
from unet_keras.data.images import read_raster
from unet_keras.data.slices import DataError, Slice, make_slice, natural_key

_TIFF = (".tif", ".tiff")
MASK_SUFFIX = "_mask"


def _is_mask(p: Path) -> bool:
    return p.stem.endswith(MASK_SUFFIX)


def is_lgg_dataset(root: str | Path) -> bool:
    """True when a folder ``root`` holds ``*_mask.tif`` files (at any depth)."""
    root = Path(root)
    return root.is_dir() and any(q.suffix.lower() in _TIFF
                                 for q in root.rglob(f"*{MASK_SUFFIX}.*"))


def is_tiff(path: Path) -> bool:
    """True for a ``.tif``/``.tiff`` file name."""
    return path.suffix.lower() in _TIFF


def list_image_files(root: str | Path) -> list[Path]:
    """Image TIFFs (not ``*_mask.tif``) under ``root``, ordered by patient then slice number."""
    files = [p for p in Path(root).rglob("*") if p.suffix.lower() in _TIFF and p.is_file()]
    images = [p for p in files if not _is_mask(p)]
    return sorted(images, key=lambda p: (natural_key(p.parent.name), natural_key(p.stem)))


def orphan_masks(root: str | Path) -> list[Path]:
    """``*_mask.tif`` files under ``root`` that have no image beside them."""
    return sorted(
        p for p in Path(root).rglob(f"*{MASK_SUFFIX}.*")
        if p.suffix.lower() in _TIFF and not any(
            (p.parent / (p.stem[: -len(MASK_SUFFIX)] + s)).exists() for s in _TIFF
        )
    )


def mask_path_for(image_path: str | Path) -> Path:
    """The ``_mask`` partner of an LGG image file.

    Raises:
        DataError: no partner exists.
    """
    p = Path(image_path)
    for suffix in (p.suffix, *_TIFF):
        candidate = p.with_name(p.stem + MASK_SUFFIX + suffix)
        if candidate.exists():
            return candidate
    expected = p.stem + MASK_SUFFIX + p.suffix
    raise DataError(f"{p}: image without mask (expected {expected} beside it)")


def read_lgg_pair(image_path: str | Path) -> Slice:
    """Read one LGG image and its ``_mask`` partner into a :class:`Slice`."""
    p = Path(image_path)
    mask_path = mask_path_for(p)
    return make_slice(read_raster(p), read_raster(mask_path), p.stem, p.parent.name, None,
                      str(p), mask_path=str(mask_path))


FORMAT = DataFormat(
    name="lgg",
    description="Kaggle LGG kaggle_3m: <patient>/<slice>.tif + <slice>_mask.tif",
    layout="*_mask.tif files (Kaggle LGG kaggle_3m)",
    detect=is_lgg_dataset,
    list_files=list_image_files,
    read=read_lgg_pair,
    claims=is_tiff,
    orphans=orphan_masks,
    sort_by_id=False,  # by patient, then slice number
)
