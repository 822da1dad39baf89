"""NIQE (Mittal et al., 2013) exactly as MATLAB's ``niqe`` computes it, for real rainy photos without targets.

The papers score deraining of real photos with the Naturalness Image Quality
Evaluator: the distance between a multivariate Gaussian fitted to
natural-scene statistics of the image's blocks and the one fitted to a
corpus of pristine photos (lower is better).  :func:`niqe` follows MATLAB's
``niqe(I)`` with its default model, step by step, in float64:

1. **One channel.**  The Y channel of BT.601 by default (rounded to 8 bits
   as ``rgb2ycbcr`` does, :func:`metrics.psnr_ssim.rgb_to_y`; the deraining
   papers' convention, BasicSR's default), or ``channel="gray"`` for what
   MATLAB's ``niqe`` itself does with colour: ``rgb2gray``
   (:func:`metrics.psnr_ssim.rgb_to_gray`).  Values are 0..255 as doubles.
2. **Crop** to whole 96x96 blocks (top-left kept); a side shorter than two
   blocks is one block of the whole side, as MATLAB does.
3. **Normalise** (MSCN): ``mu`` and ``sigma`` from a 7x7 Gaussian window
   (sigma 7/6) with replicated borders, ``(im - mu) / (sigma + 1)``;
   ``sigma = sqrt(|E[im^2] - mu^2|)``, computed literally as MATLAB does
   (:func:`local_normalise`).
4. **Features** per block (18): the AGGD fit of the block's coefficients
   (shape, mean of the left/right scales) and, for the products with the
   block shifted circularly by (0, 1), (1, 0), (1, 1) and (1, -1) pixels,
   the AGGD shape, mean, left and right scales.  Shapes come from MATLAB's
   table search over ``0.2:0.001:10`` (the left side is the negative
   values, the right the positive ones; zeros count on neither).
5. **Second scale**: the same on ``imresize(im, 0.5)`` (MATLAB's bicubic
   with antialiasing, :mod:`metrics.imresize`) with 48x48 blocks -> 36
   features per block.
6. **Sharpness selection**: blocks whose mean ``sigma`` (first scale) is at
   least ``sharpness_threshold`` times the largest are kept; the standard
   model's threshold is 0 (every block).
7. **Score**: ``sqrt((m - m_p) pinv((C + C_p) / 2) (m - m_p)')`` with the
   blocks' mean ``m`` and covariance ``C`` (N - 1 normalisation) and the
   pristine model ``m_p``, ``C_p`` (:func:`pristine_model`).

Two inputs MATLAB scores with a NaN or a degenerate formula are errors
here (:class:`NIQEError`, a ``ValueError``): a block whose coefficients are
all of one sign (a perfectly flat or saturated block, where the AGGD fit is
undefined and MATLAB returns NaN), and an image of a single block (smaller
than 192 pixels both ways, where MATLAB's ``nanmean``/``nancov`` of one row
average over the 36 features instead of the blocks).

The pristine model (mean and covariance of the LIVE pristine photos) is data
shipped in ``metrics/data/niqe_pris_params.npz``; ``metrics/data/README.md``
states where it comes from.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.special import gamma

from metrics.imresize import imresize
from metrics.psnr_ssim import gaussian_window_1d, rgb_to_gray, rgb_to_y

MODEL_FILE = Path(__file__).resolve().parent / "data" / "niqe_pris_params.npz"
BLOCK_SIZE = 96
CHANNELS = ("y", "gray")
NUM_FEATURES = 18  # per block and scale
_WINDOW = gaussian_window_1d(7, 7.0 / 6.0)


class NIQEError(ValueError):
    """NIQE is undefined for this image (MATLAB would return NaN or a degenerate value)."""


@dataclass(frozen=True)
class NIQEModel:
    """A NIQE model: the multivariate Gaussian of pristine block features and how blocks are cut."""

    mean: np.ndarray  # (36,)
    cov: np.ndarray  # (36, 36)
    window: np.ndarray  # (7, 7) Gaussian, sigma 7/6, sums to 1 (MATLAB's fspecial)
    block_size: tuple[int, int] = (BLOCK_SIZE, BLOCK_SIZE)
    sharpness_threshold: float = 0.0


@lru_cache(maxsize=1)
def pristine_model() -> NIQEModel:
    """The standard model (MATLAB's default ``niqeModel``): 96x96 blocks, no sharpness threshold."""
    with np.load(MODEL_FILE, allow_pickle=False) as data:
        mean = np.asarray(data["mu_pris_param"], dtype=np.float64).reshape(-1)
        cov = np.asarray(data["cov_pris_param"], dtype=np.float64)
        window = np.asarray(data["gaussian_window"], dtype=np.float64)
    expected = np.outer(_WINDOW, _WINDOW)
    if window.shape != (7, 7) or np.abs(window - expected).max() > 1e-12:
        raise ValueError(f"{MODEL_FILE}: gaussian_window is not the 7x7 Gaussian of sigma 7/6")
    if mean.shape != (2 * NUM_FEATURES,) or cov.shape != (2 * NUM_FEATURES, 2 * NUM_FEATURES):
        raise ValueError(f"{MODEL_FILE}: expected a 36-vector and a 36x36 matrix, got {mean.shape} and {cov.shape}")
    for array in (mean, cov, window):
        array.setflags(write=False)
    return NIQEModel(mean, cov, window)


def _colon(start: float, step: float, stop: float) -> np.ndarray:
    """MATLAB's ``start:step:stop``: built from both ends, so the last entry is ``stop`` exactly."""
    n = int(round((stop - start) / step))
    k = np.arange(n + 1, dtype=np.float64)
    return np.where(k <= n / 2, start + k * step, stop - (n - k) * step)


_ALPHAS = _colon(0.2, 0.001, 10.0)
_RATIOS = gamma(2.0 / _ALPHAS) ** 2 / (gamma(1.0 / _ALPHAS) * gamma(3.0 / _ALPHAS))  # increasing in alpha


def _nearest_ratio(r: np.ndarray) -> np.ndarray:
    """Index of the first table ratio nearest to each ``r`` (MATLAB ``min((table - r).^2)``; NaN -> 0)."""
    hi = np.clip(np.searchsorted(_RATIOS, r), 1, _RATIOS.size - 1)
    lo = hi - 1
    take_hi = (_RATIOS[hi] - r) ** 2 < (_RATIOS[lo] - r) ** 2
    idx = np.where(take_hi, hi, lo)
    return np.where(np.isnan(r), 0, idx)


def aggd_fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Asymmetric generalised Gaussian fit of each row of ``x``: ``(alpha, beta_left, beta_right)``.

    Moment matching as the NIQE authors' ``estimateaggdparam``: the left
    scale from the negative values, the right from the positive ones (zeros
    count on neither side); a side without values gives NaN.
    """
    sq = x * x
    neg, pos = x < 0, x > 0
    left = np.einsum("ij,ij->i", sq, neg.astype(np.float64))
    right = np.einsum("ij,ij->i", sq, pos.astype(np.float64))
    n_left, n_right = neg.sum(axis=1), pos.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        std_left = np.where(n_left > 0, np.sqrt(left / np.maximum(n_left, 1)), np.nan)
        std_right = np.where(n_right > 0, np.sqrt(right / np.maximum(n_right, 1)), np.nan)
        g = std_left / std_right
        rhat = np.abs(x).mean(axis=1) ** 2 / sq.mean(axis=1)
        ratio = rhat * (g**3 + 1.0) * (g + 1.0) / ((g**2 + 1.0) ** 2)
    alpha = _ALPHAS[_nearest_ratio(ratio)]
    t = np.sqrt(gamma(1.0 / alpha) / gamma(3.0 / alpha))
    return alpha, std_left * t, std_right * t


_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))  # MATLAB circshift(block, [rows cols])


def block_features(blocks: np.ndarray) -> np.ndarray:
    """The 18 NSS features of each normalised block of ``blocks`` (N x h x w) -> N x 18."""
    n = blocks.shape[0]
    alpha, bl, br = aggd_fit(blocks.reshape(n, -1))
    feats = [alpha, (bl + br) / 2.0]
    for shift in _SHIFTS:
        pair = blocks * np.roll(blocks, shift, axis=(1, 2))
        alpha, bl, br = aggd_fit(pair.reshape(n, -1))
        feats += [alpha, (br - bl) * (gamma(2.0 / alpha) / gamma(1.0 / alpha)), bl, br]
    return np.stack(feats, axis=1)


def local_normalise(im: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mscn, sigma)``: ``(im - mu) / (sigma + 1)`` and ``sigma`` over a 7x7 Gaussian window, replicated borders.

    Computed literally as MATLAB's ``niqe`` does: ``mu = imfilter(im, w,
    'replicate')``, ``sigma = sqrt(abs(imfilter(im.^2, w, 'replicate') -
    mu.^2))``, in float64 with the pristine model's 2-D window.  On a
    perfectly flat neighbourhood (saturated sky, the white of heavy rain) the
    coefficient is 0 only up to rounding (~1e-14, of either sign), and which
    side of zero it falls on moves the AGGD fits; computing it the literal
    way keeps the same rounding as the reference implementations
    (docs/NIQE.md has the figures).
    """
    window = pristine_model().window
    mu = ndimage.convolve(im, window, mode="nearest")
    sigma = np.sqrt(np.abs(ndimage.convolve(im * im, window, mode="nearest") - mu * mu))
    return (im - mu) / (sigma + 1.0), sigma


def _blocks(img: np.ndarray, rows: int, cols: int) -> np.ndarray:
    h, w = img.shape
    return img.reshape(h // rows, rows, w // cols, cols).transpose(0, 2, 1, 3).reshape(-1, rows, cols)


def _round_matlab(x: float) -> int:
    return int(math.floor(x + 0.5))


def niqe_features(img: np.ndarray, model: NIQEModel | None = None) -> np.ndarray:
    """The 36 features (two scales) of every selected block of a 2-D image with values 0..255 -> N x 36."""
    model = model or pristine_model()
    im = np.asarray(img, dtype=np.float64)
    if im.ndim != 2:
        raise ValueError(f"niqe_features takes a 2-D image, got shape {im.shape}")
    if min(im.shape) < 2:
        raise NIQEError(f"NIQE needs an image of at least 2x2 pixels, got {im.shape[1]}x{im.shape[0]}")
    (h, w), (bh, bw) = im.shape, model.block_size
    nr, nc = max(h // bh, 1), max(w // bw, 1)
    bh, bw = (h if nr == 1 else bh), (w if nc == 1 else bw)
    im = im[: nr * bh, : nc * bw]
    per_scale = []
    for scale in (1, 2):
        mscn, sigma = local_normalise(im)
        rows, cols = _round_matlab(bh / scale), _round_matlab(bw / scale)
        per_scale.append(block_features(_blocks(mscn, rows, cols)))
        if scale == 1:
            sharpness = _blocks(sigma, rows, cols).mean(axis=(1, 2))
            im = imresize(im, 0.5)
    feats = np.concatenate(per_scale, axis=1)
    return feats[sharpness >= model.sharpness_threshold * sharpness.max()]


def to_channel(img: np.ndarray, channel: str = "y") -> np.ndarray:
    """The 8-bit channel NIQE scores: Y (default) or MATLAB's rgb2gray of a uint8 RGB image; 2-D passes through."""
    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {', '.join(CHANNELS)}, got {channel!r}")
    return rgb_to_y(img) if channel == "y" else rgb_to_gray(img)


def _pinv(a: np.ndarray) -> np.ndarray:
    """MATLAB's ``pinv``: singular values up to ``max(size) * eps(largest)`` count as zero."""
    u, s, vt = np.linalg.svd(a)
    keep = s > max(a.shape) * np.spacing(s.max())
    return (vt[keep].T / s[keep]) @ u[:, keep].T


def niqe_score(features: np.ndarray, model: NIQEModel | None = None) -> float:
    """NIQE of block features (N x 36, N >= 2) against a model."""
    model = model or pristine_model()
    if features.shape[0] < 2:
        raise NIQEError("NIQE needs at least two blocks (an image of at least 192 pixels one way)")
    if np.isnan(features).any():
        bad = int(np.isnan(features).any(axis=1).sum())
        raise NIQEError(f"NIQE is undefined: {bad} of {features.shape[0]} blocks are flat or saturated "
                        "(their coefficients are all of one sign; MATLAB's niqe returns NaN)")
    d = features.mean(axis=0) - model.mean
    cov = np.cov(features, rowvar=False)
    q = d @ _pinv((model.cov + cov) / 2.0) @ d
    return float(math.sqrt(max(q, 0.0)))


def niqe(img: np.ndarray, channel: str = "y", model: NIQEModel | None = None) -> float:
    """NIQE of a uint8 RGB (or 2-D uint8) image with the standard pristine model; lower is better."""
    return niqe_score(niqe_features(to_channel(img, channel), model), model)
