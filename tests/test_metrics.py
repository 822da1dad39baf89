"""metrics/psnr_ssim.py: the papers' Y-channel PSNR/SSIM, checked against independent computations."""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from metrics.psnr_ssim import (
    gaussian_window_1d,
    psnr,
    psnr_rgb,
    psnr_y,
    rgb_to_y,
    score_y,
    ssim,
    ssim_rgb,
    ssim_y,
    tensor_psnr,
)


def _pair(h=37, w=53, sigma=20.0, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(h // 4 + 2, w // 4 + 2, 3)).astype(np.float64)
    target = np.kron(base, np.ones((4, 4, 1)))[:h, :w] + rng.normal(0, 8, (h, w, 3))
    target = np.clip(np.round(target), 0, 255).astype(np.uint8)
    result = np.clip(np.round(target + rng.normal(0, sigma, (h, w, 3))), 0, 255).astype(np.uint8)
    return result, target


@pytest.mark.parametrize(
    "rgb, y",
    [
        ((0, 0, 0), 16),
        ((255, 255, 255), 235),
        ((255, 0, 0), 81),  # 16 + 65.481
        ((0, 255, 0), 145),  # 16 + 128.553
        ((0, 0, 255), 41),  # 16 + 24.966
        # colours whose exact Y ends in .5 (125.5, 52.5, 198.5, 125.5): halves go up
        ((0, 204, 68), 126),
        ((2, 44, 141), 53),
        ((123, 251, 249), 199),  # rgb2ycbcr's float evaluation gives 198 or 199 by machine
        ((209, 109, 9), 126),  # ... and 125 or 126
    ],
)
def test_rgb_to_y_matches_rgb2ycbcr(rgb, y):
    img = np.array(rgb, dtype=np.uint8).reshape(1, 1, 3)
    out = rgb_to_y(img)
    assert out.dtype == np.uint8 and out.shape == (1, 1)
    assert int(out[0, 0]) == y


def test_rgb_to_y_is_within_half_a_level_of_the_exact_formula():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    exact = 16 + (img.astype(np.float64) @ np.array([65.481, 128.553, 24.966])) / 255
    assert np.abs(rgb_to_y(img) - exact).max() <= 0.5 + 1e-9
    gray = img[..., 0]
    assert rgb_to_y(gray) is gray  # already one channel: left alone, like the MATLAB script


def _exact_y(r: int, g: int, b: int) -> int:
    """BT.601 from its definition in exact rationals: 16 + 219 (0.299 R + 0.587 G + 0.114 B) / 255, halves up."""
    kr, kg, kb = Fraction("0.299"), Fraction("0.587"), Fraction("0.114")
    y = 16 + Fraction(219, 255) * (kr * r + kg * g + kb * b)
    return math.floor(y + Fraction(1, 2))


def test_rgb_to_y_is_exact_for_all_colours():
    """All 2^24 colours against an independent exact computation; exactly 194 of them are ties (Y = k + 0.5)."""
    g = np.arange(256, dtype=np.int64)
    n_ties, tie_colours = 0, []
    for r0 in range(0, 256, 32):  # 2M colours at a time
        r = np.arange(r0, r0 + 32, dtype=np.int64)
        num = 65481 * r[:, None, None] + 128553 * g[None, :, None] + 24966 * g[None, None, :]
        whole, rest = np.divmod(num, 255000)  # Y - 16 = whole + rest / 255000
        expected = 16 + whole + (2 * rest >= 255000)
        img = np.empty((32, 256, 256, 3), dtype=np.uint8)
        img[..., 0], img[..., 1], img[..., 2] = r[:, None, None], g[None, :, None], g[None, None, :]
        y = rgb_to_y(img.reshape(-1, 256, 3)).reshape(expected.shape)
        np.testing.assert_array_equal(y, expected)
        ties = rest == 127500
        n_ties += int(ties.sum())
        tie_colours += [(int(r[i]), int(j), int(k)) for i, j, k in np.argwhere(ties)]
    assert n_ties == len(tie_colours) == 194
    # The same, in exact rationals straight from BT.601's weights, on every tie and a sample of the rest.
    rng = np.random.default_rng(3)
    sample = tie_colours + [(0, 0, 0), (255, 255, 255)] + [tuple(map(int, c)) for c in rng.integers(0, 256, (500, 3))]
    img = np.array(sample, dtype=np.uint8)[None]
    assert rgb_to_y(img)[0].tolist() == [_exact_y(*c) for c in sample]
    for c in tie_colours:
        y = 16 + Fraction(219, 255) * (Fraction("0.299") * c[0] + Fraction("0.587") * c[1] + Fraction("0.114") * c[2])
        assert y.denominator == 2, c


def test_psnr_known_values():
    a = np.full((10, 12), 100, dtype=np.uint8)
    b = a + 1
    assert psnr(a, b, data_range=255) == pytest.approx(20 * math.log10(255), abs=1e-12)  # 48.1308 dB
    assert psnr(a, a, data_range=255) == math.inf
    c = a.astype(np.int16)
    c[0, 0] += 12  # MSE = 144 / 120
    assert psnr(a, c, data_range=255) == pytest.approx(10 * math.log10(255**2 / 1.2), abs=1e-12)
    assert psnr(a / 255, c / 255, data_range=1.0) == pytest.approx(psnr(a, c, data_range=255), abs=1e-9)


def _ssim_bruteforce(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    """Wang et al.'s formula with an explicit 2-D window (fspecial), one window position at a time."""
    x = np.arange(-5, 6)
    win = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * 1.5**2))
    win /= win.sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    a, b = a.astype(np.float64), b.astype(np.float64)
    vals = []
    for i in range(a.shape[0] - 10):
        for j in range(a.shape[1] - 10):
            pa, pb = a[i : i + 11, j : j + 11], b[i : i + 11, j : j + 11]
            mu_a, mu_b = (win * pa).sum(), (win * pb).sum()
            va = (win * pa * pa).sum() - mu_a**2
            vb = (win * pb * pb).sum() - mu_b**2
            cov = (win * pa * pb).sum() - mu_a * mu_b
            vals.append(((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (va + vb + c2)))
    return float(np.mean(vals))


def test_ssim_equals_bruteforce_and_skimage():
    from skimage.metrics import structural_similarity

    result, target = _pair(19, 23)
    ya, yb = rgb_to_y(result), rgb_to_y(target)
    value = ssim(ya, yb, data_range=255)
    assert value == pytest.approx(_ssim_bruteforce(ya, yb, 255), abs=1e-12)
    ref = structural_similarity(
        ya.astype(np.float64), yb.astype(np.float64), data_range=255,
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    )  # skimage averages over the map without its 5-pixel border, i.e. the 'valid' part
    assert value == pytest.approx(ref, abs=1e-12)
    assert 0.2 < value < 0.95
    assert ssim(ya, ya, data_range=255) == pytest.approx(1.0, abs=1e-12)


def test_gaussian_window_is_fspecial():
    g = gaussian_window_1d()
    assert g.shape == (11,) and g.sum() == pytest.approx(1.0, abs=1e-15)
    x = np.arange(-5, 6)
    fspecial = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * 1.5**2))
    fspecial /= fspecial.sum()
    np.testing.assert_allclose(np.outer(g, g), fspecial, rtol=0, atol=1e-17)
    assert g[5] == pytest.approx(0.266011724861794, abs=1e-14)


def test_y_and_rgb_variants():
    result, target = _pair()
    p, s = score_y(result, target)
    assert p == psnr_y(result, target) and s == ssim_y(result, target)
    assert p == pytest.approx(psnr(rgb_to_y(result), rgb_to_y(target), data_range=255), abs=0)
    assert psnr_rgb(result, target) == pytest.approx(psnr(result, target, data_range=255), abs=0)
    per_channel = [ssim(result[..., c], target[..., c], data_range=255) for c in range(3)]
    assert ssim_rgb(result, target) == pytest.approx(np.mean(per_channel), abs=1e-15)
    assert 20 < p < 30  # noise of sigma 20 on 8-bit data


def test_bad_inputs_are_rejected():
    result, target = _pair()
    with pytest.raises(TypeError, match="uint8"):
        psnr_y(result.astype(np.float32), target)
    with pytest.raises(ValueError, match="differ in size"):
        psnr_y(result, target[:-1])
    with pytest.raises(ValueError, match="11x11"):
        ssim_y(result[:10], target[:10])
    with pytest.raises(ValueError, match="shape"):
        rgb_to_y(np.zeros((4, 4, 4), dtype=np.uint8))


def test_tensor_psnr_for_validation():
    result, target = _pair()
    pred = torch.from_numpy(result.transpose(2, 0, 1)).double().div(255).unsqueeze(0)
    gt = torch.from_numpy(target.transpose(2, 0, 1)).double().div(255).unsqueeze(0)
    values = tensor_psnr(torch.cat([pred, gt]), torch.cat([gt, gt]), data_range=1.0)
    assert values.shape == (2,)
    assert values[0].item() == pytest.approx(psnr_rgb(result, target), abs=1e-9)
    assert math.isinf(values[1].item())
