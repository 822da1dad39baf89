"""evaluate_PSNR_SSIM.m under GNU Octave gives the numbers metrics/psnr_ssim.py gives.

CI installs ``octave`` and ``octave-image`` (Debian packages); elsewhere these
tests skip when Octave is not on PATH, cannot start or cannot read a PNG, and
the ``rgb2ycbcr`` comparison skips without the image package.  Octave's own
``rgb2ycbcr`` rounds the 194 colours whose Y ends in .5 by the machine's
floating-point arithmetic, so only there may it differ from ours (by one).
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
from conftest import REPO, SHARED, require_shared

import evaluate
from metrics.psnr_ssim import rgb_to_y, score_y

OCTAVE = shutil.which("octave-cli") or shutil.which("octave")

pytestmark = [
    pytest.mark.octave,
    pytest.mark.skipif(OCTAVE is None, reason="GNU Octave is not installed (CI installs octave and octave-image)"),
]
LINE = re.compile(r"^(\S+)\s+(?:n=(\d+)\s+)?PSNR: (\S+)\s+SSIM: (\S+)\s*$")


def _quote(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def run_octave(code: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [OCTAVE, "--norc", "--quiet", "--no-window-system"]
    if not OCTAVE.endswith("octave-cli"):
        cmd.append("--no-gui")
    return subprocess.run(
        [*cmd, "--eval", f"addpath({_quote(REPO)}); {code}"],
        cwd=cwd, capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture(scope="module", autouse=True)
def _octave_runs(tmp_path_factory) -> None:
    """Skip, with the reason, where Octave is on PATH but cannot start or read a PNG (a broken install)."""
    folder = tmp_path_factory.mktemp("octave_probe")
    _write_rgb(folder / "probe.png", np.arange(18, dtype=np.uint8).reshape(2, 3, 3))
    try:
        proc = run_octave("img = imread('probe.png'); printf('%d\\n', sum(double(img(:))));", folder, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"GNU Octave ({OCTAVE}) could not be run: {exc}")
    if proc.returncode != 0 or proc.stdout.split()[-1:] != ["153"]:
        detail = (proc.stderr.strip() or proc.stdout.strip())[-300:]
        pytest.skip(f"GNU Octave ({OCTAVE}) cannot run or read a PNG on this machine: {detail}")


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
        assert octave[name][0] == pytest.approx(python[name]["psnr"], abs=5e-7 + 1e-12), name  # %.6f
        assert octave[name][1] == pytest.approx(python[name]["ssim"], abs=5e-7 + 1e-12), name
    assert octave["Average"][0] == pytest.approx(python["average"]["psnr"], abs=5e-7 + 1e-12)
    assert octave["Average"][1] == pytest.approx(python["average"]["ssim"], abs=5e-7 + 1e-12)
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


def _probe_colours() -> tuple[np.ndarray, np.ndarray]:
    """128x128 RGB image: the 194 tie colours (exact Y = k + 0.5), the ~4,000 colours nearest to a
    tie (Y within 1.2e-4 of k + 0.5, but not on it), then random colours; and a 128x128 mask of the ties."""
    r = np.arange(256, dtype=np.int32)
    num = (65481 * r)[:, None, None] + (128553 * r)[None, :, None] + (24966 * r)[None, None, :]
    off = (num % 255000 - 127500).ravel()  # Y = k + 0.5 + off / 255000
    ties = np.flatnonzero(off == 0)
    near = np.flatnonzero((np.abs(off) <= 30) & (off != 0))
    rng = np.random.default_rng(7)
    rest = rng.integers(0, 256**3, 128 * 128 - len(ties) - len(near))
    idx = np.concatenate([ties, near, rest])
    colours = np.stack(np.unravel_index(idx, (256, 256, 256)), axis=-1).astype(np.uint8)
    is_tie = np.zeros(idx.size, dtype=bool)
    is_tie[: len(ties)] = True
    assert len(ties) == 194 and len(near) > 3000
    return colours.reshape(128, 128, 3), is_tie.reshape(128, 128)


def _octave_y(code: str, img: np.ndarray, folder: Path) -> tuple[subprocess.CompletedProcess, np.ndarray | None]:
    """Run ``code`` (which sets ``y`` from ``img``) on img in Octave; y as an int64 array."""
    _write_rgb(folder / "colours.png", img)
    out = folder / "y.bin"
    proc = run_octave(
        f"img = imread('colours.png'); {code} "
        f"fid = fopen({_quote(out)}, 'w'); fwrite(fid, double(y(:, :, 1))', 'uint8'); fclose(fid);",
        folder,
    )
    if proc.returncode != 0:
        return proc, None
    return proc, np.fromfile(out, dtype=np.uint8).astype(np.int64).reshape(img.shape[:2])


def test_y_channel_equals_octave_rgb2ycbcr(tmp_path, record_property):
    """Octave's rgb2ycbcr Y is ours on every colour but the ties, where its rounding is the machine's."""
    img, is_tie = _probe_colours()
    proc, octave_y = _octave_y("pkg load image; y = rgb2ycbcr(img);", img, tmp_path)
    if proc.returncode != 0 and "package" in proc.stderr:
        pytest.skip(f"Octave's image package is not installed: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, proc.stderr
    ours = rgb_to_y(img).astype(np.int64)
    np.testing.assert_array_equal(
        ours[~is_tie], octave_y[~is_tie],
        err_msg="rgb2ycbcr differs from the exact Y on a colour that is not a tie: its float error is "
                "~1e-12 and these Y are at least 4e-6 from k + 0.5, so this is a real difference")
    diff = ours[is_tie] - octave_y[is_tie]
    differing = int(np.count_nonzero(diff))
    record_property("octave_rgb2ycbcr_ties_differing", differing)
    print(f"Octave's rgb2ycbcr rounds {differing} of the 194 tie colours differently from round-half-up here")
    assert np.abs(diff).max() <= 1, (
        "on a colour whose exact Y is k + 0.5, rgb2ycbcr's float result lands just below or above k + 0.5 "
        "depending on the machine, so it may be off by one there, never more")


def test_m_file_y_channel_is_exact(tmp_path):
    """evaluate_PSNR_SSIM.m's own rgb_to_y equals ours on every probe colour, ties included (no package needed)."""
    source = (REPO / "evaluate_PSNR_SSIM.m").read_text()
    m = re.search(r"^function y = rgb_to_y\(img\)\n.*?^end\n", source, flags=re.S | re.M)
    assert m, "rgb_to_y not found in evaluate_PSNR_SSIM.m"
    (tmp_path / "m_rgb_to_y.m").write_text(m.group(0).replace("function y = rgb_to_y(", "function y = m_rgb_to_y("))
    img, _ = _probe_colours()
    proc, octave_y = _octave_y(f"addpath({_quote(tmp_path)}); y = m_rgb_to_y(img);", img, tmp_path)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(rgb_to_y(img).astype(np.int64), octave_y)


def test_rain100h_pair_scores_match_octave_digits(tmp_path):
    """One real pair scored by the .m file and by score_y agree to all printed digits."""
    rain100h = require_shared("data", "Rain100H")
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
