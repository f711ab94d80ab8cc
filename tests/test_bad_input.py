"""Issue 14, one test per item: bad input gets one line naming the file and exit code 2 (4xx on
the web), never a traceback, a silent wrong answer or a lost output file."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import badfiles  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from unet_keras import ArchConfig, build_unet  # noqa: E402
from unet_keras.cli import predict as predict_cli  # noqa: E402
from unet_keras.cli.data import main as data_main  # noqa: E402
from unet_keras.data import DataError, read_dataset, read_image_bytes, read_image_file  # noqa: E402
from unet_keras.data import images as images_mod  # noqa: E402
from unet_keras.data.preprocess import preprocess_image  # noqa: E402


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    build_unet(ArchConfig(input_shape=(None, None, 3), base_filters=4, depth=2)).save(path)
    return path


def one_error_line(capfd, *needles: str) -> str:
    """The captured stderr (file descriptor 2, so C libraries' lines count too) is exactly one
    line ``error: ...`` holding every needle."""
    err = capfd.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def predict(*args: str) -> int:
    return predict_cli.main([*args])


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# --- 1. outputs never overwrite each other -------------------------------------------------------

@pytest.fixture
def clashing_inputs(tmp_path: Path) -> Path:
    """``a/1.png``, ``a/1.jpg`` and ``b/1.png``: the same stem three times."""
    s = badfiles.real_slice(64)
    folder = tmp_path / "in"
    write(folder / "a" / "1.png", badfiles.png(s))
    write(folder / "a" / "1.jpg", badfiles.jpg(s[::-1]))
    write(folder / "b" / "1.png", badfiles.png(s[:, ::-1]))
    return folder


def test_outputs_keep_subfolder_and_suffix(clashing_inputs, tmp_path, model_file, capfd):
    out = tmp_path / "out"
    assert predict(str(clashing_inputs), "-o", str(out), "--model", str(model_file)) == 0
    assert files_under(out) == ["a/1.jpg_mask.png", "a/1.jpg_overlay.png", "a/1.png_mask.png",
                                "a/1.png_overlay.png", "b/1.png_mask.png", "b/1.png_overlay.png"]
    assert capfd.readouterr().out.count("tumor px") == 3
    # each mask is its own input's (the inputs are flipped copies, so the masks differ)
    a = cv2.imread(str(out / "a" / "1.png_mask.png"), cv2.IMREAD_UNCHANGED)
    b = cv2.imread(str(out / "b" / "1.png_mask.png"), cv2.IMREAD_UNCHANGED)
    assert a.shape == b.shape == (64, 64)


def test_earlier_outputs_are_not_overwritten_without_flag(clashing_inputs, tmp_path, model_file,
                                                          capfd):
    out = tmp_path / "out"
    assert predict(str(clashing_inputs), "-o", str(out), "--model", str(model_file)) == 0
    capfd.readouterr()
    mask = out / "a" / "1.png_mask.png"
    for other in out.rglob("*.png"):
        if other != mask:
            other.unlink()
    mask.write_bytes(b"an earlier run's result")
    assert predict(str(clashing_inputs), "-o", str(out), "--model", str(model_file)) == 2
    one_error_line(capfd, f"{mask}: already exists", "--overwrite")
    assert mask.read_bytes() == b"an earlier run's result"
    assert files_under(out) == ["a/1.png_mask.png"]  # refused before anything was written
    assert predict(str(clashing_inputs), "-o", str(out), "--model", str(model_file),
                   "--overwrite") == 0
    assert cv2.imread(str(mask), cv2.IMREAD_UNCHANGED).shape == (64, 64)


def test_two_inputs_for_one_output_are_refused(tmp_path, model_file, capfd):
    s = badfiles.real_slice(64)
    x = write(tmp_path / "x" / "1.png", badfiles.png(s))
    y = write(tmp_path / "y" / "1.png", badfiles.png(s[::-1]))
    out = tmp_path / "out"
    assert predict(str(x), str(y), "-o", str(out), "--model", str(model_file)) == 2
    one_error_line(capfd, str(x), str(y))
    assert not out.exists()


def test_own_outputs_inside_the_input_folder_are_skipped(clashing_inputs, model_file, capfd):
    out = clashing_inputs / "predictions"
    for extra in ([], ["--overwrite"]):
        assert predict(str(clashing_inputs), "-o", str(out), "--model", str(model_file),
                       *extra) == 0
        assert capfd.readouterr().out.count("tumor px") == 3
    assert len(files_under(out)) == 6
    # the tool's own *_mask.png / *_overlay.png are skipped even in another output folder
    other = clashing_inputs.parent / "other"
    assert predict(str(clashing_inputs), "-o", str(other), "--model", str(model_file)) == 0
    assert capfd.readouterr().out.count("tumor px") == 3


def test_output_that_is_a_file(clashing_inputs, tmp_path, model_file, capfd):
    taken = write(tmp_path / "taken", b"x")
    assert predict(str(clashing_inputs), "-o", str(taken), "--model", str(model_file)) == 2
    line = one_error_line(capfd, str(taken), "not a folder")
    assert "Errno" not in line


# --- 2. NaN / inf ---------------------------------------------------------------------------------

def test_non_finite_pixels_are_refused_everywhere(tmp_path, model_file, capfd):
    nan = write(tmp_path / "in" / "nan.tif", badfiles.nan_tiff(1))
    with pytest.raises(DataError, match=r"nan.tif: 1 non-finite pixel"):
        read_image_file(nan)
    with pytest.raises(DataError, match=r"inf.tif: 4 non-finite pixel"):
        read_image_bytes(badfiles.nan_tiff(4, -np.inf), "inf.tif")
    out = tmp_path / "out"
    assert predict(str(nan), "-o", str(out), "--model", str(model_file)) == 2
    one_error_line(capfd, str(nan), "non-finite")
    assert not out.exists()
    # evaluate / inspect read datasets through the same check
    folder = tmp_path / "set"
    s = badfiles.real_slice(64)
    write(folder / "images" / "1.tif", badfiles.nan_tiff(2))
    write(folder / "masks" / "1.png", badfiles.png((s > 100).astype(np.uint8) * 255))
    with pytest.raises(DataError, match="1.tif: 2 non-finite"):
        read_dataset(folder)
    assert data_main(["inspect", str(folder)]) == 2
    one_error_line(capfd, "1.tif", "non-finite")
    # arrays handed straight to preprocessing
    bad = s.astype(np.float32)
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="1 non-finite"):
        preprocess_image(bad, None, 3)


# --- 3. stacks and wrong shapes --------------------------------------------------------------

def test_multi_page_tiff_and_3d_arrays_are_refused(tmp_path, model_file, capfd):
    stack = write(tmp_path / "stack.tif", badfiles.stack_tiff(5))
    with pytest.raises(DataError, match=r"stack.tif: .*5 pages.*\(5, 64, 64\)"):
        read_image_file(stack)
    assert predict(str(stack), "-o", str(tmp_path / "out"), "--model", str(model_file)) == 2
    one_error_line(capfd, str(stack), "(5, 64, 64)")
    with pytest.raises(DataError, match=r"cube.mat: .*\(64, 64, 5\)"):
        read_image_bytes(badfiles.mat73(np.zeros((64, 64, 5))), "cube.mat")
    with pytest.raises(ValueError, match="1, 3 or 4"):
        preprocess_image(np.zeros((64, 64, 5)), None, 3)


# --- 4. degenerate slices --------------------------------------------------------------------

def test_slices_under_the_minimum_size_are_refused(tmp_path, model_file, capfd):
    s = badfiles.real_slice(64)
    tiny = write(tmp_path / "in" / "tiny.png", badfiles.png(s[:3, :3]))
    with pytest.raises(DataError, match=r"tiny.png: the image is 3x3 pixels; .*at least 32"):
        read_image_file(tiny)
    assert predict(str(tiny), "-o", str(tmp_path / "out"), "--model", str(model_file)) == 2
    one_error_line(capfd, str(tiny), "3x3")
    # evaluate reads the dataset: one 1x1 slice among real ones stops it, naming the file
    folder = tmp_path / "set"
    for i in range(3):
        write(folder / "images" / f"{i}.png", badfiles.png(s))
        write(folder / "masks" / f"{i}.png", badfiles.png((s > 100).astype(np.uint8) * 255))
    write(folder / "images" / "1.png", badfiles.png(s[:1, :1]))
    write(folder / "masks" / "1.png", badfiles.png(s[:1, :1]))
    with pytest.raises(DataError, match=r"images/1.png: the image is 1x1 pixels"):
        read_dataset(folder)
    # 32 x 32 is the smallest accepted slice
    assert read_image_bytes(badfiles.png(s[:32, :32]), "ok.png").shape == (32, 32)


# --- 9. preview --------------------------------------------------------------------------------

def test_preview_with_a_1x1_image_is_one_line(tmp_path, capfd):
    folder = tmp_path / "set"
    s = badfiles.real_slice(64)
    write(folder / "images" / "1.png", badfiles.png(s))
    write(folder / "masks" / "1.png", badfiles.png((s > 100).astype(np.uint8) * 255))
    write(folder / "images" / "2.png", badfiles.png(s[:1, :1]))
    write(folder / "masks" / "2.png", badfiles.png(s[:1, :1]))
    assert data_main(["preview", str(folder), "-o", str(tmp_path / "grid.png")]) == 2
    one_error_line(capfd, "2.png", "1x1")
    assert not (tmp_path / "grid.png").exists()


# --- 10. model files ----------------------------------------------------------------------------

def test_truncated_and_foreign_keras_files_name_the_file(tmp_path, model_file, capfd):
    import keras

    image = write(tmp_path / "in" / "1.png", badfiles.png(badfiles.real_slice(64)))
    data = model_file.read_bytes()
    truncated = write(tmp_path / "cut.keras", data[: len(data) // 2])
    assert predict(str(image), "-o", str(tmp_path / "o1"), "--model", str(truncated)) == 2
    line = one_error_line(capfd, str(truncated), "truncated")
    assert "not found" not in line
    foreign = tmp_path / "dense.keras"
    keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)]).save(foreign)
    assert predict(str(image), "-o", str(tmp_path / "o2"), "--model", str(foreign)) == 2
    one_error_line(capfd, str(foreign), "not a unet_keras U-Net")
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_convert_truncated_keras_names_the_file(tmp_path, model_file, capfd):
    from unet_keras.cli.convert import main as convert_main

    data = model_file.read_bytes()
    truncated = write(tmp_path / "cut.keras", data[: len(data) // 3])
    assert convert_main([str(truncated), "--to", "pt"]) == 2
    line = one_error_line(capfd, str(truncated), "truncated")
    assert "not found" not in line
    assert not (tmp_path / "cut.pt").exists()


# --- 11. exactly one line: no library chatter -------------------------------------------------

def test_truncated_png_gives_no_opencv_warning(tmp_path, model_file, capfd):
    data = badfiles.png(badfiles.real_slice(64))
    cut = write(tmp_path / "cut.png", data[: len(data) // 2])
    assert predict(str(cut), "-o", str(tmp_path / "out"), "--model", str(model_file)) == 2
    one_error_line(capfd, str(cut))
    with pytest.raises(DataError, match="cut.png"):
        read_image_file(cut)
    assert capfd.readouterr().err == ""


def test_raw_pickle_pt_is_one_line(tmp_path, capfd):
    """torch.load warns "Detected pickle protocol 4" before failing; the user sees only ours."""
    import warnings

    from unet_keras.cli.convert import main as convert_main

    raw = write(tmp_path / "raw.pt", pickle.dumps({"weights": [1, 2, 3]}, protocol=4))
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        assert convert_main([str(raw), "--to", "keras", "-o", str(tmp_path / "back.keras")]) == 2
    assert [str(w.message) for w in shown] == []
    one_error_line(capfd, f"{raw}: ")
    assert not (tmp_path / "back.keras").exists()


# --- 12. prediction reads a .mat without tumorMask --------------------------------------------

def test_predict_reads_a_mat_without_mask(tmp_path, model_file, capfd):
    s = badfiles.real_slice(64)
    mat = write(tmp_path / "in" / "7.mat", badfiles.mat73(s, None))
    np.testing.assert_array_equal(read_image_file(mat), s.astype(np.int16))
    np.testing.assert_array_equal(read_image_bytes(mat.read_bytes(), "7.mat"),
                                  s.astype(np.int16))
    v5 = write(tmp_path / "in" / "8.mat", badfiles.mat5(s.astype(np.int16), None))
    np.testing.assert_array_equal(read_image_file(v5), s.astype(np.int16))
    out = tmp_path / "out"
    assert predict(str(tmp_path / "in"), "-o", str(out), "--model", str(model_file)) == 0
    assert files_under(out) == ["7.mat_mask.png", "7.mat_overlay.png", "8.mat_mask.png",
                                "8.mat_overlay.png"]
    # a dataset still needs the mask
    with pytest.raises(DataError, match="7.mat: cjdata lacks tumorMask"):
        read_dataset(mat)


# --- 13. decompression bombs ----------------------------------------------------------------

@pytest.fixture
def no_decoding(monkeypatch):
    """Fail the test if any pixel decoder runs."""
    def refuse(*args, **kwargs):
        raise AssertionError("the image was decoded before its declared size was checked")

    monkeypatch.setattr(images_mod.cv2, "imdecode", refuse)
    monkeypatch.setattr(images_mod.tifffile.TiffFile, "asarray", refuse)


@pytest.mark.parametrize("case", ["png bomb", "tiff bomb", "jpeg bomb", "bmp bomb", "mat bomb"])
def test_declared_size_is_checked_before_decoding(case, no_decoding):
    name, data, words = badfiles.bad_files()[case]
    assert len(data) < 2**20  # small files that would decode to hundreds of MB
    with pytest.raises(DataError) as info:
        read_image_bytes(data, name)
    message = str(info.value)
    assert message.startswith(f"{name}: ") and "\n" not in message
    for word in words:
        assert word in message
    assert "4096" in message  # the readers' default limit


def test_max_side_is_a_parameter(no_decoding):
    data = badfiles.png_bomb(3000)
    with pytest.raises(DataError, match=r"3000x3000 pixels; the limit is 2048 pixels a side"):
        read_image_bytes(data, "big.png", max_side=2048)


def test_bomb_through_the_cli(tmp_path, model_file, capfd):
    bomb = write(tmp_path / "bomb.png", badfiles.png_bomb(20000))
    assert predict(str(bomb), "-o", str(tmp_path / "out"), "--model", str(model_file)) == 2
    one_error_line(capfd, str(bomb), "20000x20000")
    assert not (tmp_path / "out").exists()
