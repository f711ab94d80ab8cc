"""Bad input files, built in memory: what a user, a broken disk or an attacker hands the readers.

Shared by ``test_bad_input.py`` (one test per issue item) and ``test_fuzz_bad_files.py`` (every
generated bad file through the readers, ``unet-predict`` and the web endpoint). The good slices
are crops of a real bundled slice, so a reader that accepts a broken file would return
something that differs from the real pixels.
"""

from __future__ import annotations

import functools
import io
import struct
import tempfile
import zlib
from pathlib import Path

import cv2
import h5py
import numpy as np
import scipy.io
import tifffile

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


def real_slice(side: int = 64) -> np.ndarray:
    """A real slice (bundled sample 1.png), area-resized to ``side`` x ``side`` uint8."""
    image = cv2.imread(str(SAMPLE / "images" / "1.png"), cv2.IMREAD_GRAYSCALE)
    return cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)


def png(array: np.ndarray) -> bytes:
    return cv2.imencode(".png", array)[1].tobytes()


def jpg(array: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", array)[1].tobytes()


def bmp(array: np.ndarray) -> bytes:
    return cv2.imencode(".bmp", array)[1].tobytes()


def tif(array: np.ndarray, **kwargs) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, array, **kwargs)
    return buf.getvalue()


def mat73(image: np.ndarray, mask: np.ndarray | None = None, *, image_dtype=np.int16) -> bytes:
    """A Figshare-layout MATLAB v7.3 file (HDF5 behind a 512-byte userblock); ``mask=None``
    leaves ``tumorMask`` out."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.mat"
        with h5py.File(path, "w", userblock_size=512) as f:
            g = f.create_group("cjdata")
            g.attrs["MATLAB_class"] = np.bytes_("struct")
            g.create_dataset("image", data=np.asarray(image).astype(image_dtype).T)
            if mask is not None:
                g.create_dataset("tumorMask", data=(np.asarray(mask) > 0).astype(np.uint8).T)
            g.create_dataset("label", data=np.array([[1.0]]))
        header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(116) + bytes(8) + b"\x00\x02IM"
        with open(path, "r+b") as f:
            f.write(header.ljust(512, b"\0"))
        return path.read_bytes()


def mat5(image: np.ndarray, mask: np.ndarray | None = None, compress: bool = False) -> bytes:
    """A MATLAB v5 file holding ``cjdata`` (scipy)."""
    cj = {"image": image, "label": 1.0, "PID": "P1"}
    if mask is not None:
        cj["tumorMask"] = mask
    buf = io.BytesIO()
    scipy.io.savemat(buf, {"cjdata": cj}, do_compression=compress)
    return buf.getvalue()


def png_bomb(side: int = 20000) -> bytes:
    """A real, decodable 8-bit grayscale PNG of ``side`` x ``side`` black pixels (``side`` a
    multiple of 500): a few hundred KB that decode to ``side**2`` bytes (20000: 400 MB).

    Built without compressing 400 MB: after a full flush zlib emits the same bytes for the same
    500 rows, so one compressed block is repeated, and the Adler-32 of ``n`` zero bytes is
    ``(n mod 65521) << 16 | 1``."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    rows = bytes((side + 1) * 500)  # 500 rows: filter byte 0 and black pixels
    comp = zlib.compressobj(9)
    first = comp.compress(rows) + comp.flush(zlib.Z_FULL_FLUSH)
    block = comp.compress(rows) + comp.flush(zlib.Z_FULL_FLUSH)
    assert first[2:] == block  # the stream header, then identical blocks
    adler = ((side * (side + 1)) % 65521) << 16 | 1
    idat = first + block * (side // 500 - 1) + comp.flush()[:-4] + adler.to_bytes(4, "big")
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit gray, no interlace
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat)
            + chunk(b"IEND", b""))


def tiff_bomb(side: int = 20000) -> bytes:
    """A tiled, zlib-compressed TIFF of ``side`` x ``side`` zeros (a few hundred KB); every tile
    is the same compressed bytes."""
    tile = zlib.compress(bytes(1024 * 1024), 9)
    buf = io.BytesIO()
    tifffile.imwrite(buf, (tile for _ in range((-(-side // 1024)) ** 2)), shape=(side, side),
                     dtype=np.uint8, tile=(1024, 1024), compression="zlib")
    return buf.getvalue()


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header (SOF0) is patched to claim ``width`` x ``height``."""
    data = bytearray(jpg(real_slice(64)))
    i = 2
    while data[i + 1] != 0xC0:  # walk the segments to the baseline frame header
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    data[i + 5:i + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def bmp_declaring(width: int, height: int) -> bytes:
    """A small real BMP whose header is patched to claim ``width`` x ``height``."""
    data = bytearray(bmp(real_slice(64)))
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


def mat73_bomb(side: int = 20000) -> bytes:
    """A v7.3 ``.mat`` whose ``image`` is a ``side`` x ``side`` chunked dataset never written
    (HDF5 returns its fill value): a few KB that read as ``2 * side**2`` bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.mat"
        with h5py.File(path, "w", userblock_size=512) as f:
            g = f.create_group("cjdata")
            g.create_dataset("image", shape=(side, side), dtype=np.int16, chunks=(512, 512),
                             compression="gzip")
            g.create_dataset("tumorMask", shape=(side, side), dtype=np.uint8,
                             chunks=(512, 512), compression="gzip")
        header = b"MATLAB 7.3 MAT-file".ljust(116) + bytes(8) + b"\x00\x02IM"
        with open(path, "r+b") as f:
            f.write(header.ljust(512, b"\0"))
        return path.read_bytes()


def nan_tiff(n_bad: int = 1, value: float = np.nan) -> bytes:
    """A float32 TIFF of a real slice with ``n_bad`` pixels set to ``value``."""
    image = real_slice(64).astype(np.float32)
    image.ravel()[:: max(1, image.size // n_bad)][:n_bad] = value
    return tif(image)


def stack_tiff(pages: int = 5) -> bytes:
    """A multi-page TIFF: ``pages`` real slices of 64x64."""
    return tif(np.stack([real_slice(64)] * pages))


@functools.lru_cache(maxsize=1)
def bad_files() -> dict[str, tuple[str, bytes, list[str]]]:
    """Every deliberately bad file: ``case -> (file name, bytes, words its error must hold)``.
    The error must also name the file."""
    rng = np.random.default_rng(14)
    s = real_slice(64)
    cases: dict[str, tuple[str, bytes, list[str]]] = {}
    for suffix in (".png", ".jpg", ".tif", ".bmp", ".mat"):
        for k in range(2):
            noise = rng.integers(0, 256, int(rng.integers(1, 3000)), dtype=np.uint8).tobytes()
            cases[f"random bytes {suffix} {k}"] = (f"noise{k}{suffix}", noise, [])
    cases.update({
        "nan tiff": ("nan.tif", nan_tiff(1), ["1 non-finite"]),
        "inf tiff": ("inf.tif", nan_tiff(3, np.inf), ["3 non-finite"]),
        "nan mat v5": ("nan.mat", mat5(np.where(s > 200, np.nan, s.astype(np.float64)),
                                        s > 100), ["non-finite"]),
        "complex tiff": ("complex.tif", tif(s.astype(np.complex64)), ["complex"]),
        "multi-page tiff": ("stack.tif", stack_tiff(5), ["5"]),
        "2-channel tiff": ("two.tif", tif(np.stack([s, s], axis=2), planarconfig="contig"),
                           ["64, 64, 2"]),
        "3-D mat": ("stack.mat", mat73(np.stack([s] * 5, axis=2), s), ["64, 64, 5"]),
        "1x1 png": ("dot.png", png(s[:1, :1]), ["1x1", "32"]),
        "3x3 png": ("tiny.png", png(s[:3, :3]), ["3x3", "32"]),
        "1x200 png": ("line.png", png(np.tile(s[:1], (1, 4))[:, :200]), ["200x1", "32"]),
        "png bomb": ("bomb.png", png_bomb(20000), ["20000x20000"]),
        "tiff bomb": ("bomb.tif", tiff_bomb(20000), ["20000x20000"]),
        "jpeg bomb": ("bomb.jpg", jpeg_declaring(30000, 30000), ["30000x30000"]),
        "bmp bomb": ("bomb.bmp", bmp_declaring(30000, 30000), ["30000x30000"]),
        "mat bomb": ("bomb.mat", mat73_bomb(20000), ["20000x20000"]),
        "text named png": ("notes.png", b"hello, this is not an image\n" * 20, []),
        "gif named png": ("anim.png", b"GIF89a" + bytes(200), []),
        "mat with text image": ("text.mat", mat5(np.array(["abc", "def"]), None), []),
    })
    return cases


def valid_files() -> dict[str, tuple[str, bytes]]:
    """One good file per format (what the truncation fuzz cuts)."""
    s = real_slice(64)
    rgb = np.stack([s, s // 2, 255 - s], axis=2)
    return {
        "png": ("ok.png", png(s)),
        "png16": ("ok16.png", png(s.astype(np.uint16) * 257)),
        "jpg": ("ok.jpg", jpg(s)),
        "bmp": ("ok.bmp", bmp(rgb)),
        "tif": ("ok.tif", tif(rgb, photometric="rgb")),
        "tif zlib": ("okz.tif", tif(s, compression="zlib")),
        "mat v7.3": ("ok73.mat", mat73(s, s > 100)),
        "mat v5": ("ok5.mat", mat5(s.astype(np.int16), (s > 100).astype(np.uint8))),
        "mat v5 compressed": ("ok5z.mat", mat5(s.astype(np.int16), (s > 100).astype(np.uint8),
                                               compress=True)),
    }
