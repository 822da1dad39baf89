"""evaluate_PSNR_SSIM.m under GNU Octave gives the numbers utils/metrics.py gives.

CI installs ``octave`` and ``octave-image`` (Debian packages); elsewhere these
tests skip when Octave is not on PATH.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

import evaluate
from metrics.psnr_ssim import rgb_to_y, score_y

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
OCTAVE = shutil.which("octave-cli") or shutil.which("octave")

pytestmark = [
    pytest.mark.octave,
    pytest.mark.skipif(OCTAVE is None, reason="GNU Octave is not installed (CI installs octave and octave-image)"),
]
LINE = re.compile(r"^(\S+)\s+(?:n=(\d+)\s+)?PSNR: (\S+)\s+SSIM: (\S+)\s*$")


def _quote(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def run_octave(code: str, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [OCTAVE, "--norc", "--quiet", "--no-window-system"]
    if not OCTAVE.endswith("octave-cli"):
        cmd.append("--no-gui")
    return subprocess.run(
        [*cmd, "--eval", f"addpath({_quote(REPO)}); {code}"],
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )


def run_evaluate_m(result_root: Path, gt_root: Path, datasets: list[str]) -> dict:
    sets = "{" + ", ".join(_quote(d) for d in datasets) + "}"
    proc = run_octave(f"evaluate_PSNR_SSIM({_quote(result_root)}, {_quote(gt_root)}, {sets});", result_root)
    assert proc.returncode == 0, proc.stderr
    scores = {}
    for line in proc.stdout.splitlines():
        m = LINE.match(line.strip())
        if m:
            scores[m.group(1)] = (float(m.group(3)), float(m.group(4)))
    return scores


def _smooth_pair(h: int, w: int, sigma: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    base = rng.integers(0, 256, size=(h // 4 + 2, w // 4 + 2, 3)).astype(np.float64)
    target = np.clip(np.round(np.kron(base, np.ones((4, 4, 1)))[:h, :w] + rng.normal(0, 6, (h, w, 3))), 0, 255)
    result = np.clip(np.round(target + rng.normal(0, sigma, (h, w, 3))), 0, 255)
    return result.astype(np.uint8), target.astype(np.uint8)


def _write_rgb(path: Path, img: np.ndarray) -> None:
    assert cv2.imwrite(str(path), np.ascontiguousarray(img[..., ::-1]))


@pytest.fixture
def fixed_pairs(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """Two or three small sets of pairs in assorted PNG flavours, named the way releases name them."""
    rng = np.random.default_rng(2024)
    res_root, gt_root = tmp_path / "results", tmp_path / "gt"
    # SetA: odd sizes, rain-/norain- names.
    (res_root / "SetA").mkdir(parents=True)
    (gt_root / "SetA" / "target").mkdir(parents=True)
    for i, (h, w, sigma) in enumerate([(37, 53, 10), (64, 48, 25), (23, 100, 3)], start=1):
        result, target = _smooth_pair(h, w, sigma, rng)
        _write_rgb(res_root / "SetA" / f"rain-{i:03d}.png", result)
        _write_rgb(gt_root / "SetA" / "target" / f"norain-{i:03d}.png", target)
    # SetB: a gray target, a 16-bit result and an RGBA result (read the same way by both sides).
    (res_root / "SetB").mkdir(parents=True)
    (gt_root / "SetB" / "target").mkdir(parents=True)
    result, target = _smooth_pair(41, 29, 12, rng)
    _write_rgb(res_root / "SetB" / "gray.png", result)
    assert cv2.imwrite(str(gt_root / "SetB" / "target" / "gray.png"), target[..., 0])
    result, target = _smooth_pair(30, 45, 8, rng)
    sixteen = (result.astype(np.uint16) * 257 + rng.integers(-100, 101, result.shape)).clip(0, 65535)
    assert cv2.imwrite(str(res_root / "SetB" / "deep_rain.png"), sixteen.astype(np.uint16)[..., ::-1])
    _write_rgb(gt_root / "SetB" / "target" / "deep_clean.png", target)
    result, target = _smooth_pair(33, 33, 15, rng)
    rgba = np.concatenate([result[..., ::-1], rng.integers(0, 256, (33, 33, 1), dtype=np.uint8)], axis=2)
    assert cv2.imwrite(str(res_root / "SetB" / "alpha.png"), rgba)
    _write_rgb(gt_root / "SetB" / "target" / "alpha.png", target)
    datasets = ["SetA", "SetB"]
    # Real rainy/clean pairs when the shared data is present.
    rain100h = SHARED / "data" / "Rain100H"
    if rain100h.is_dir():
        (res_root / "Rain100H").mkdir()
        (gt_root / "Rain100H" / "target").mkdir(parents=True)
        for name in ("001.png", "050.png", "100.png"):
            shutil.copy(rain100h / "input" / name, res_root / "Rain100H" / name)
            shutil.copy(rain100h / "target" / name, gt_root / "Rain100H" / "target" / name)
        datasets.append("Rain100H")
    return res_root, gt_root, datasets


def test_octave_script_equals_python(fixed_pairs, tmp_path):
    res_root, gt_root, datasets = fixed_pairs
    out = tmp_path / "scores.json"
    assert evaluate.main(["--result_dir", str(res_root), "--gt_dir", str(gt_root), "--datasets", *datasets,
                          "--json", str(out), "--workers", "1"]) == 0
    python = json.loads(out.read_text())
    octave = run_evaluate_m(res_root, gt_root, datasets)
    assert set(octave) == {*datasets, "Average"}
    for name in datasets:
        assert octave[name][0] == pytest.approx(python[name]["psnr"], abs=1e-4), name
        assert octave[name][1] == pytest.approx(python[name]["ssim"], abs=1e-6), name
    assert octave["Average"][0] == pytest.approx(python["average"]["psnr"], abs=1e-4)
    assert octave["Average"][1] == pytest.approx(python["average"]["ssim"], abs=1e-6)
    assert 10 < python["average"]["psnr"] < 40  # real, non-trivial scores


def test_octave_script_reports_unpaired_and_missized_files(fixed_pairs):
    res_root, gt_root, _ = fixed_pairs
    (gt_root / "SetA" / "target" / "norain-002.png").unlink()
    proc = run_octave(f"evaluate_PSNR_SSIM({_quote(res_root)}, {_quote(gt_root)}, {{'SetA'}});", res_root)
    assert proc.returncode != 0
    assert "rain-002.png" in proc.stderr and "without a partner" in proc.stderr

    img = cv2.imread(str(res_root / "SetB" / "alpha.png"), cv2.IMREAD_UNCHANGED)
    assert cv2.imwrite(str(res_root / "SetB" / "alpha.png"), img[:-1])
    proc = run_octave(f"evaluate_PSNR_SSIM({_quote(res_root)}, {_quote(gt_root)}, {{'SetB'}});", res_root)
    assert proc.returncode != 0
    assert "size mismatch" in proc.stderr and "alpha.png" in proc.stderr


def test_y_channel_equals_octave_rgb2ycbcr(tmp_path):
    """Every colour whose exact Y ends in .5, plus random ones: Python's Y is Octave's rgb2ycbcr Y."""
    r = np.arange(256, dtype=np.int64)
    v = 65481 * r[:, None, None] + 128553 * r[None, :, None] + 24966 * r[None, None, :]
    ties = np.argwhere(v % 255000 == 127500)
    rng = np.random.default_rng(7)
    colours = np.concatenate([ties, rng.integers(0, 256, (4096 - len(ties), 3))]).astype(np.uint8)
    img = colours.reshape(64, 64, 3)
    _write_rgb(tmp_path / "colours.png", img)
    out = tmp_path / "y.txt"
    proc = run_octave(
        "pkg load image; img = imread('colours.png'); y = rgb2ycbcr(img); "
        f"fid = fopen({_quote(out)}, 'w'); fprintf(fid, '%d\\n', y(:, :, 1)'); fclose(fid);",
        tmp_path,
    )
    if proc.returncode != 0 and "package" in proc.stderr:
        pytest.skip(f"Octave's image package is not installed: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, proc.stderr
    octave_y = np.loadtxt(out, dtype=np.int64).reshape(64, 64)
    assert len(ties) == 194
    np.testing.assert_array_equal(rgb_to_y(img).astype(np.int64), octave_y)


def test_rain100h_pair_scores_match_octave_digits(tmp_path):
    """One real pair scored by the .m file and by score_y agree to all printed digits."""
    rain100h = SHARED / "data" / "Rain100H"
    if not rain100h.is_dir():
        pytest.skip(f"{rain100h} not found: the shared data folder is only present on the team's machines and CI")
    (tmp_path / "r" / "X").mkdir(parents=True)
    (tmp_path / "g" / "X" / "target").mkdir(parents=True)
    shutil.copy(rain100h / "input" / "007.png", tmp_path / "r" / "X" / "007.png")
    shutil.copy(rain100h / "target" / "007.png", tmp_path / "g" / "X" / "target" / "007.png")
    octave = run_evaluate_m(tmp_path / "r", tmp_path / "g", ["X"])
    inp = cv2.imread(str(rain100h / "input" / "007.png"))[..., ::-1]
    tgt = cv2.imread(str(rain100h / "target" / "007.png"))[..., ::-1]
    p, s = score_y(np.ascontiguousarray(inp), np.ascontiguousarray(tgt))
    assert octave["X"][0] == pytest.approx(p, abs=5e-7 + 1e-12)  # printed with %.6f
    assert octave["X"][1] == pytest.approx(s, abs=5e-7 + 1e-12)
