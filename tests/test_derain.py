"""derain.py: people's own photos in any format, size and orientation."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import derain
from utils.errors import UserError
from utils.image_io import read_image


def _rgb(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def photos(tmp_path: Path) -> dict:
    """Assorted inputs: RGB, gray, RGBA, 16-bit, an EXIF-rotated JPEG, and one in a sub-folder."""
    d = tmp_path / "photos"
    (d / "sub").mkdir(parents=True)
    rgb = _rgb(37, 53, 0)
    cv2.imwrite(str(d / "rgb.png"), rgb[..., ::-1])
    gray = _rgb(20, 30, 1)[..., 0]
    cv2.imwrite(str(d / "gray.png"), gray)
    rgba = np.concatenate([_rgb(25, 18, 2), np.full((25, 18, 1), 128, np.uint8)], axis=2)
    cv2.imwrite(str(d / "rgba.png"), rgba[..., [2, 1, 0, 3]])
    deep = (_rgb(16, 16, 3).astype(np.uint16) * 257)
    cv2.imwrite(str(d / "deep.tif"), deep[..., ::-1])
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(_rgb(40, 64, 4)).save(d / "phone.jpg", exif=exif, quality=95)
    cv2.imwrite(str(d / "sub" / "nested.png"), _rgb(12, 14, 5)[..., ::-1])
    return {"dir": d, "rgb": rgb, "gray": gray, "rgba": rgba, "deep": deep}


def test_derains_files_and_folders_of_any_format(photos, tmp_path):
    out = tmp_path / "out"
    assert derain.main([str(photos["dir"]), "--model", "Identity", "--out", str(out), "--side-by-side",
                        "--device", "cpu"]) == 0
    assert np.array_equal(read_image(out / "rgb.png"), photos["rgb"])
    assert np.array_equal(read_image(out / "gray.png"), np.repeat(photos["gray"][..., None], 3, axis=2))
    assert np.array_equal(read_image(out / "rgba.png"), photos["rgba"][..., :3])
    assert np.array_equal(read_image(out / "deep.png"), np.round(photos["deep"] / 257).astype(np.uint8))
    phone = read_image(out / "phone.png")
    assert phone.shape == (64, 40, 3)  # upright, as the photo is displayed
    assert np.array_equal(phone, read_image(photos["dir"] / "phone.jpg"))
    assert not (out / "sub").exists()  # not --recursive

    pair = read_image(out / "rgb_before_after.png")
    assert pair.shape == (37, 53 * 2 + 8, 3)
    assert np.array_equal(pair[:, :53], photos["rgb"]) and np.array_equal(pair[:, -53:], photos["rgb"])


def test_recursive_single_files_and_large_images_in_windows(photos, tmp_path):
    out = tmp_path / "out"
    big = _rgb(300, 413, 9)
    cv2.imwrite(str(tmp_path / "big.png"), big[..., ::-1])
    assert derain.main([str(photos["dir"]), str(tmp_path / "big.png"), "--recursive", "--model", "Identity",
                        "--out", str(out), "--tile", "128", "--max-batch", "2", "--ext", "bmp"]) == 0
    assert (out / "sub" / "nested.bmp").is_file()
    assert np.array_equal(read_image(out / "big.bmp"), big)


def test_unreadable_files_are_reported_after_the_rest_is_done(photos, tmp_path):
    (photos["dir"] / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "out"
    with pytest.raises(UserError, match=r"5 of 6 image\(s\) derained; skipped: .*broken\.jpg"):
        derain.main([str(photos["dir"]), "--model", "Identity", "--out", str(out)])
    assert {p.name for p in out.iterdir()} == {"deep.png", "gray.png", "phone.png", "rgb.png", "rgba.png"}


def test_bad_arguments_name_the_problem(photos, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        derain.main([str(tmp_path / "nope.png"), "--model", "Identity"])
    with pytest.raises(ValueError, match="would overwrite an input"):
        derain.main([str(photos["dir"]), "--model", "Identity", "--out", str(photos["dir"])])
    cv2.imwrite(str(tmp_path / "rgb.jpg"), photos["rgb"])
    with pytest.raises(ValueError, match=r"rgb\.png and .*rgb\.jpg would both be written"):
        derain.main([str(photos["dir"] / "rgb.png"), str(tmp_path / "rgb.jpg"), "--model", "Identity",
                     "--out", str(tmp_path / "o")])
    with pytest.raises(ValueError, match="window size, got -3"):
        derain.main([str(photos["dir"] / "rgb.png"), "--model", "Identity", "--out", str(tmp_path / "o"),
                     "--tile", "-3"])
    assert not (tmp_path / "o").exists()  # checked before anything is written
