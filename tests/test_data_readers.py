"""Readers on real slices: the shared PNG set, the bundled sample, and Figshare ``.mat`` (v7.3
via h5py, v5 via scipy) / LGG TIFF files made from them; clear errors on bad input."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import scipy.io

from unet_keras.data import (
    SAMPLE_DIR,
    DataError,
    detect_format,
    read_dataset,
    read_image_bytes,
    read_image_file,
    read_mask_bytes,
)
from unet_keras.data.figshare import read_mat_file, write_figshare_mat


def test_png_folder_reads_all_real_pairs(shared_data):
    root = shared_data / "figshare-png"
    slices = read_dataset(root)
    assert len(slices) == 300
    ids = [int(s.id) for s in slices]
    assert ids == sorted(ids) and ids[0] == 1 and ids[-1] == 2100  # numeric, not "1" < "10"
    for s in slices[::37]:
        ref_img = cv2.imread(str(root / "images" / f"{s.id}.png"), cv2.IMREAD_UNCHANGED)
        ref_mask = cv2.imread(str(root / "masks" / f"{s.id}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(s.image, ref_img)
        np.testing.assert_array_equal(s.mask, (ref_mask == 255).astype(np.uint8))
        assert s.image.dtype == np.uint8 and s.mask.dtype == np.uint8
        assert s.patient_id is None and s.label is None
        assert s.path == str(root / "images" / f"{s.id}.png")
    assert {s.image.shape for s in slices} == {(512, 512), (256, 256)}
    areas = np.array([s.mask.mean() for s in slices])
    assert areas.min() > 0 and areas.max() < 0.1  # every slice has a (small) tumor
    assert detect_format(root) == "folder"


def test_bundled_sample(sample_dir):
    assert SAMPLE_DIR == sample_dir
    slices = read_dataset(SAMPLE_DIR)
    assert 30 <= len(slices) <= 50
    assert all(s.image.shape == (512, 512) and s.mask.shape == (512, 512) for s in slices)
    assert all(set(np.unique(s.mask)) == {0, 1} for s in slices)
    size = sum(p.stat().st_size for p in sample_dir.rglob("*"))
    assert size < 6 * 2**20  # "a few MB"
    assert "CC BY 4.0" in (sample_dir / "README.md").read_text()


def _border(mat_file: Path) -> np.ndarray:
    with h5py.File(mat_file, "r") as f:
        return f["cjdata/tumorBorder"][()].T[0]


def test_mat_v73_equals_the_png_it_came_from(mat_v73_dir, real_pngs, mat_slices):
    slices = read_dataset(mat_v73_dir)
    assert detect_format(mat_v73_dir) == "figshare"
    assert [s.id for s in slices] == [str(n) for n, _, _ in mat_slices]
    for s, (n, label, pid) in zip(slices, mat_slices, strict=True):
        image, mask = real_pngs[n]
        assert s.image.dtype == np.int16 and s.image.shape == image.shape  # not transposed
        np.testing.assert_array_equal(s.image, image.astype(np.int16))
        np.testing.assert_array_equal(s.mask, (mask > 0).astype(np.uint8))
        assert s.mask.sum() > 0
        assert s.label == label and isinstance(s.label, int)
        assert s.patient_id == pid
    assert slices[5].image.shape == (256, 256)


def test_mat_v73_layout_is_matlab_like(mat_v73_dir):
    """The fixture really has MATLAB's layout (so the reader is tested against it)."""
    path = mat_v73_dir / "1001.mat"
    assert path.read_bytes()[:10] == b"MATLAB 7.3" and path.read_bytes()[512:516] == b"\x89HDF"
    with h5py.File(path, "r") as f:
        assert f["cjdata"].attrs["MATLAB_class"] == b"struct"
        assert f["cjdata/PID"].dtype == np.uint16 and f["cjdata/PID"].shape == (6, 1)
        assert f["cjdata/tumorBorder"].shape[1] == 1
        assert f["cjdata/tumorMask"].attrs["MATLAB_class"] == b"logical"


def test_package_writer_matches_matlab_layout(mat_v73_dir, tmp_path, real_pngs):
    image, mask = real_pngs[2001]
    ours = tmp_path / "2001.mat"
    write_figshare_mat(ours, image, mask, 3, "112649", _border(mat_v73_dir / "2001.mat"))
    with h5py.File(ours, "r") as a, h5py.File(mat_v73_dir / "2001.mat", "r") as b:
        for key in b["cjdata"]:
            x, y = a["cjdata"][key], b["cjdata"][key]
            assert (x.shape, x.dtype) == (y.shape, y.dtype), key
            np.testing.assert_array_equal(x[()], y[()])
            assert dict(x.attrs) == dict(y.attrs), key
    assert ours.read_bytes()[116:128] == (mat_v73_dir / "2001.mat").read_bytes()[116:128]
    assert ours.read_bytes()[:10] == b"MATLAB 7.3"
    s = read_mat_file(ours)
    np.testing.assert_array_equal(s.image, image.astype(np.int16))
    assert (s.label, s.patient_id) == (3, "112649")


def test_mat_v5_from_scipy_equals_png(tmp_path, real_pngs, mat_v73_dir):
    image, mask = real_pngs[1001]
    cj = {"image": image.astype(np.int16), "tumorMask": (mask > 0), "label": 2.0,
          "PID": "107494", "tumorBorder": _border(mat_v73_dir / "1001.mat")[None, :]}
    scipy.io.savemat(tmp_path / "1001.mat", {"cjdata": cj}, format="5")
    assert (tmp_path / "1001.mat").read_bytes()[:10] == b"MATLAB 5.0"
    (s,) = read_dataset(tmp_path)
    np.testing.assert_array_equal(s.image, image.astype(np.int16))
    np.testing.assert_array_equal(s.mask, (mask > 0).astype(np.uint8))
    assert (s.label, s.patient_id, s.id) == (2, "107494", "1001")


def test_lgg_tree(lgg_dir, real_pngs):
    import tifffile

    assert detect_format(lgg_dir) == "lgg"
    slices = read_dataset(lgg_dir.parent)  # the folder above kaggle_3m works too
    assert [s.id for s in slices] == [
        "TCGA_CS_4941_19960909_1", "TCGA_CS_4941_19960909_2", "TCGA_CS_4941_19960909_3",
        "TCGA_DU_5849_19950405_1", "TCGA_DU_5849_19950405_2"]
    assert [s.patient_id for s in slices] == ["TCGA_CS_4941_19960909"] * 3 + [
        "TCGA_DU_5849_19950405"] * 2
    for s in slices:
        assert s.image.shape == (256, 256, 3) and s.image.dtype == np.uint8
        np.testing.assert_array_equal(s.image, tifffile.imread(s.path))
        assert s.label is None
    assert [int(s.mask.sum() > 0) for s in slices] == [1, 1, 0, 1, 0]
    expected = cv2.resize(real_pngs[1][1], (256, 256), interpolation=cv2.INTER_NEAREST) > 0
    np.testing.assert_array_equal(slices[0].mask, expected.astype(np.uint8))


def test_read_image_file_and_bytes_every_format(mat_v73_dir, lgg_dir, real_pngs, shared_data,
                                                tmp_path):
    image, mask = real_pngs[1001]
    png = shared_data / "figshare-png" / "images" / "1001.png"
    np.testing.assert_array_equal(read_image_file(png), image)
    np.testing.assert_array_equal(read_image_file(mat_v73_dir / "1001.mat"), image)
    data = (mat_v73_dir / "1001.mat").read_bytes()
    np.testing.assert_array_equal(read_image_bytes(data, "upload.mat"), image)
    np.testing.assert_array_equal(read_mask_bytes(data, "upload.mat"), mask > 0)
    np.testing.assert_array_equal(read_image_bytes(png.read_bytes(), "x.png"), image)
    mask_png = (shared_data / "figshare-png" / "masks" / "1001.png").read_bytes()
    np.testing.assert_array_equal(read_mask_bytes(mask_png, "m.png"), (mask > 0).astype(np.uint8))
    tif = next(lgg_dir.rglob("*_1.tif"))
    rgb = read_image_bytes(tif.read_bytes(), tif.name)
    assert rgb.shape == (256, 256, 3)
    ok, jpg = cv2.imencode(".jpg", image)
    decoded = read_image_bytes(jpg.tobytes(), "slice.JPG")
    assert decoded.shape == image.shape and np.abs(decoded.astype(int) - image).mean() < 3
    bgr_file = tmp_path / "colour.png"
    cv2.imwrite(str(bgr_file), np.dstack([np.zeros_like(image), image, np.full_like(image, 7)]))
    rgb = read_image_file(bgr_file)  # channels come back in RGB order
    assert (rgb[..., 0] == 7).all() and (rgb[..., 2] == 0).all()


# --- bad input -----------------------------------------------------------------------------


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_mat_without_cjdata(tmp_path):
    path = tmp_path / "7.mat"
    with h5py.File(path, "w", userblock_size=512) as f:
        f.create_dataset("something", data=np.zeros((4, 4)))
    with pytest.raises(DataError, match=r"^" + str(path) + r": no 'cjdata' struct.*something"):
        read_dataset(tmp_path)
    scipy.io.savemat(tmp_path / "8.mat", {"other": np.ones(3)})
    with pytest.raises(DataError, match=r"8\.mat: no 'cjdata'"):
        read_mat_file(tmp_path / "8.mat")


def test_truncated_hdf5(tmp_path, mat_v73_dir):
    data = (mat_v73_dir / "1.mat").read_bytes()
    bad = tmp_path / "1.mat"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"1\.mat: .*truncated or corrupt"):
        read_dataset(tmp_path)
    with pytest.raises(DataError, match=r"^upload\.mat: "):
        read_image_bytes(data[:1000], "upload.mat")


def test_garbage_files(tmp_path):
    (tmp_path / "x.mat").write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(DataError, match=r"x\.mat: not a readable MATLAB"):
        read_mat_file(tmp_path / "x.mat")
    with pytest.raises(DataError, match=r"^y\.png: cannot decode"):
        read_image_bytes(b"\x89PNG\r\n\x1a\n broken", "y.png")
    with pytest.raises(DataError, match=r"^z\.gif: unsupported image type"):
        read_image_bytes(b"GIF89a", "z.gif")


def test_image_without_mask_and_skip_bad(tmp_path, sample_dir):
    root = _copy(sample_dir, tmp_path / "set")
    (root / "masks" / "5.png").unlink()
    with pytest.raises(DataError, match=r"images/5\.png: image without mask"):
        read_dataset(root)
    with pytest.warns(UserWarning, match=r"skipped 1 bad file\(s\) of 40: .*5\.png"):
        slices = read_dataset(root, skip_bad=True)
    assert len(slices) == 39 and "5" not in {s.id for s in slices}


def test_mask_size_differs(tmp_path, sample_dir):
    root = _copy(sample_dir, tmp_path / "set")
    m = cv2.imread(str(root / "masks" / "3.png"), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(root / "masks" / "3.png"), m[:500])
    with pytest.raises(DataError, match=r"masks/3\.png: mask size 500x512 differs from the "
                                        r"image size 512x512"):
        read_dataset(root)


def test_lgg_image_without_mask_and_orphan_mask(tmp_path, lgg_dir):
    root = _copy(lgg_dir, tmp_path / "kaggle_3m")
    folder = root / "TCGA_DU_5849_19950405"
    (folder / "TCGA_DU_5849_19950405_2_mask.tif").unlink()
    with pytest.raises(DataError, match=r"TCGA_DU_5849_19950405_2\.tif: image without mask"):
        read_dataset(root, format="lgg")
    (folder / "TCGA_DU_5849_19950405_2.tif").unlink()
    shutil.copy(folder / "TCGA_DU_5849_19950405_1_mask.tif",
                folder / "TCGA_DU_5849_19950405_9_mask.tif")
    with pytest.warns(UserWarning, match=r"_9_mask\.tif: mask without image"):
        assert len(read_dataset(root)) == 4


def test_unknown_layouts(tmp_path):
    with pytest.raises(DataError, match=r"no such file or directory"):
        read_dataset(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match=r"^" + str(tmp_path) + r": cannot tell the dataset format"):
        read_dataset(tmp_path)
    with pytest.raises(DataError, match=r"unknown format"):
        read_dataset(tmp_path, format="dicom")
    assert issubclass(DataError, ValueError)


def test_mat_files_in_nested_folders(tmp_path, mat_v73_dir):
    """The Figshare zip unpacks into several folders; files are found recursively."""
    for part, n in (("part2", 1001), ("part1", 2)):
        (tmp_path / part).mkdir()
        shutil.copy(mat_v73_dir / f"{n}.mat", tmp_path / part)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [s.id for s in read_dataset(tmp_path)] == ["2", "1001"]
