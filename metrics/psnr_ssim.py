"""PSNR and SSIM exactly as the deraining papers' MATLAB scoring computes them.

This is the one implementation used by validation, ``test.py``,
``evaluate.py`` and (written out again in MATLAB) ``evaluate_PSNR_SSIM.m``.
The paper numbers are computed on 8-bit images:

* **Y channel** - ITU-R BT.601 studio-range luma computed exactly in integers
  and rounded half up, as MATLAB's uint8 conversion rounds (:func:`rgb_to_y`;
  ``docs/SCORING.md``, "The Y channel");
* **PSNR** - ``20 log10(data_range / RMSE)`` in float64;
* **SSIM** - Wang et al. (2004): 11x11 Gaussian window, sigma 1.5,
  K = (0.01, 0.03), ``L = data_range``, 'valid' filtering (no padding), mean
  of the SSIM map; no down-sampling.

The data range is always an argument (255 for uint8 images, 1.0 for the
float tensors of validation); nothing looks at pixel values to guess it.
RGB variants (all three channels) are here too for comparison with
codebases that report them.
"""
from __future__ import annotations

import numpy as np
import torch

UINT8_RANGE = 255.0
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K = (0.01, 0.03)

# Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 for 8-bit R, G, B (BT.601's weights 0.299,
# 0.587, 0.114 times 219), over a common denominator:
# Y = (Y_OFFSET + 65481 R + 128553 G + 24966 B) / Y_DEN exactly.
Y_COEFFS = (65481, 128553, 24966)
Y_DEN = 255 * 1000
Y_OFFSET = 16 * Y_DEN


def _check_uint8(img: np.ndarray, what: str = "image") -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise TypeError(f"{what} must be uint8 (the scores are defined on 8-bit images), got {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
        raise ValueError(f"{what} must be H x W (gray/Y) or H x W x 3 (RGB), got shape {img.shape}")
    return img


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """Y channel (uint8, H x W) of an RGB uint8 image: BT.601 luma, exact, rounded half up.

    ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` for R, G, B in 0..255,
    computed exactly in integer arithmetic as
    ``(65481 R + 128553 G + 24966 B + 16 * 255000) / 255000`` and rounded to
    the nearest integer, **halves up** - the rule of MATLAB's conversion to
    uint8 (round half away from zero), which ``rgb2ycbcr`` applies.  Exactly
    194 of the 2^24 colours have a Y ending in .5; for them ``rgb2ycbcr``'s
    floating-point evaluation may land on either side depending on the
    machine's arithmetic (BLAS, FMA), so this exact definition is the
    project's: the same on every platform, and bit-identical to
    ``rgb2ycbcr`` on every other colour.  ``evaluate_PSNR_SSIM.m`` computes the
    same integers.  A 2-D (already gray/Y) image is returned unchanged, as the
    MATLAB script leaves single-channel images alone.
    """
    img = _check_uint8(img)
    if img.ndim == 2:
        return img
    # int32 holds the numerator: at most 16 * 255000 + 219000 * 255 + 127500 < 2^26.
    num = np.full(img.shape[:2], Y_OFFSET + Y_DEN // 2, dtype=np.int32)
    for c, k in enumerate(Y_COEFFS):
        num += img[..., c].astype(np.int32) * k
    return (num // Y_DEN).astype(np.uint8)


# rgb2gray's weights: the first row of the inverse of the NTSC (YIQ) matrix, as MATLAB derives them
# (0.298936021293775, 0.587043074451121, 0.114020904255103).
_GRAY = np.linalg.inv(np.array([[1.0, 0.956, 0.621], [1.0, -0.272, -0.647], [1.0, -1.106, 1.703]]))[0]


def rgb_to_gray(img: np.ndarray) -> np.ndarray:
    """MATLAB's ``rgb2gray`` of a uint8 RGB image (uint8, H x W), rounded half up; 2-D images pass through."""
    img = _check_uint8(img)
    if img.ndim == 2:
        return img
    x = img.astype(np.float64)
    gray = _GRAY[0] * x[..., 0] + _GRAY[1] * x[..., 1] + _GRAY[2] * x[..., 2]
    return np.minimum(np.floor(gray + 0.5), 255).astype(np.uint8)


def psnr(img1: np.ndarray, img2: np.ndarray, *, data_range: float) -> float:
    """PSNR in dB of two same-shaped arrays (float64 maths); ``inf`` when they are equal."""
    a = np.asarray(img1, dtype=np.float64)
    b = np.asarray(img2, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"PSNR of arrays with different shapes {a.shape} and {b.shape}")
    rmse = np.sqrt(np.mean((a - b) ** 2))
    if rmse == 0:
        return float("inf")
    return float(20.0 * np.log10(data_range / rmse))


def gaussian_window_1d(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian; its outer product is MATLAB's ``fspecial('gaussian', size, sigma)``."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def _filter_valid(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable correlation with ``outer(g, g)``, 'valid' part only (MATLAB ``filter2(w, img, 'valid')``)."""
    n = g.size
    rows = np.lib.stride_tricks.sliding_window_view(img, n, axis=0) @ g
    return np.lib.stride_tricks.sliding_window_view(rows, n, axis=1) @ g


def ssim(img1: np.ndarray, img2: np.ndarray, *, data_range: float) -> float:
    """Mean SSIM of two 2-D images (Wang et al. 2004, Gaussian 11x11 sigma 1.5, 'valid')."""
    a = np.asarray(img1, dtype=np.float64)
    b = np.asarray(img2, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"SSIM of arrays with different shapes {a.shape} and {b.shape}")
    if a.ndim != 2:
        raise ValueError(f"ssim() takes 2-D images, got shape {a.shape}; use ssim_rgb for colour")
    if min(a.shape) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {a.shape}")
    c1 = (SSIM_K[0] * data_range) ** 2
    c2 = (SSIM_K[1] * data_range) ** 2
    g = gaussian_window_1d()
    mu1, mu2 = _filter_valid(a, g), _filter_valid(b, g)
    mu1_sq, mu2_sq, mu1_mu2 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    sigma1_sq = _filter_valid(a * a, g) - mu1_sq
    sigma2_sq = _filter_valid(b * b, g) - mu2_sq
    sigma12 = _filter_valid(a * b, g) - mu1_mu2
    ssim_map = ((2.0 * mu1_mu2 + c1) * (2.0 * sigma12 + c2)) / (
        (mu1_sq + mu2_sq + c1) * (sigma1_sq + sigma2_sq + c2)
    )
    return float(ssim_map.mean())


def _check_pair(img1: np.ndarray, img2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = _check_uint8(img1, "first image"), _check_uint8(img2, "second image")
    if a.shape != b.shape:
        raise ValueError(f"images differ in size: {a.shape} vs {b.shape}")
    return a, b


def psnr_y(img1: np.ndarray, img2: np.ndarray) -> float:
    """PSNR on the Y channel of two uint8 RGB images (the papers' PSNR)."""
    a, b = _check_pair(img1, img2)
    return psnr(rgb_to_y(a), rgb_to_y(b), data_range=UINT8_RANGE)


def ssim_y(img1: np.ndarray, img2: np.ndarray) -> float:
    """SSIM on the Y channel of two uint8 RGB images (the papers' SSIM)."""
    a, b = _check_pair(img1, img2)
    return ssim(rgb_to_y(a), rgb_to_y(b), data_range=UINT8_RANGE)


def psnr_rgb(img1: np.ndarray, img2: np.ndarray) -> float:
    """PSNR over all channels of two uint8 images."""
    a, b = _check_pair(img1, img2)
    return psnr(a, b, data_range=UINT8_RANGE)


def ssim_rgb(img1: np.ndarray, img2: np.ndarray) -> float:
    """Mean over channels of the per-channel SSIM of two uint8 images."""
    a, b = _check_pair(img1, img2)
    if a.ndim == 2:
        return ssim(a, b, data_range=UINT8_RANGE)
    return float(np.mean([ssim(a[..., c], b[..., c], data_range=UINT8_RANGE) for c in range(a.shape[2])]))


def score_y(img1: np.ndarray, img2: np.ndarray) -> tuple[float, float]:
    """``(psnr, ssim)`` on the Y channel, converting each image to Y once."""
    a, b = _check_pair(img1, img2)
    ya, yb = rgb_to_y(a), rgb_to_y(b)
    return psnr(ya, yb, data_range=UINT8_RANGE), ssim(ya, yb, data_range=UINT8_RANGE)


def tensor_psnr(pred: torch.Tensor, target: torch.Tensor, *, data_range: float) -> torch.Tensor:
    """Per-image RGB PSNR (dB, float64) of two (B, C, H, W) float tensors, for validation.

    Inputs are used as given; clamp ``pred`` to the data range first when the
    protocol says so (DMSR's validation clamps to [0, 1]).
    """
    if pred.shape != target.shape:
        raise ValueError(f"PSNR of tensors with different shapes {tuple(pred.shape)} and {tuple(target.shape)}")
    diff = pred.detach().double() - target.detach().double()
    mse = diff.pow(2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(data_range**2 / mse)
