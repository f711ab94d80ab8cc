"""What a dataset format is to the readers: one :class:`DataFormat` record per format.

Each format module (:mod:`~unet_keras.data.figshare`, :mod:`~unet_keras.data.lgg`,
:mod:`~unet_keras.data.folders`) ends with its ``FORMAT`` record; the registry that lists
them, in the order auto-detection tries them, is :data:`unet_keras.data.readers.DATA_FORMATS`.
Adding a format is a new module with its ``FORMAT`` plus one line in that registry: detection,
listing, the orphan warning, ``--format`` choices, help texts and the config check all read
the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from unet_keras.data.slices import Slice


@dataclass(frozen=True)
class DataFormat:
    """One dataset format: how to recognise it, list its slices and read one.

    Attributes:
        name: the ``--format`` value.
        description: what it is, for ``--help`` (e.g. ``"Figshare .mat files"``).
        layout: what auto-detection looks for, for the error when nothing matches.
        detect: ``detect(path)`` is True when the existing ``path`` (a folder, or for some
            formats one file) has this layout.
        list_files: one file per slice under ``path``, in order (raises
            :class:`~unet_keras.data.slices.DataError` when ``path`` is not of this format).
        read: the :class:`~unet_keras.data.slices.Slice` of one listed file.
        claims: ``claims(file)`` is True when a single listed file belongs to this format
            (reading a file list without the dataset root).
        orphans: files under ``path`` that belong to no slice (warned about, then ignored);
            ``None`` when the layout cannot have any.
        sort_by_id: the slices of a dataset are put in natural order of their ids once read
            (False: they keep the order of ``list_files``, e.g. by patient, then slice).
    """

    name: str
    description: str
    layout: str
    detect: Callable[[Path], bool]
    list_files: Callable[[Path], list[Path]]
    read: Callable[[str | Path], Slice]
    claims: Callable[[Path], bool]
    orphans: Callable[[Path], list[Path]] | None = None
    sort_by_id: bool = True
