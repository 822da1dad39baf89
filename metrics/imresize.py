"""MATLAB's ``imresize(A, scale)`` (bicubic, with antialiasing) for 2-D float64 arrays.

NIQE's second scale is ``imresize(im, 0.5)`` of the double image, and no
library resize computes what MATLAB computes: MATLAB's bicubic kernel has
``a = -0.5`` (OpenCV's has -0.75), and when shrinking it *stretches* the
kernel by ``1 / scale`` (antialiasing), so halving an image averages 8
input pixels per output pixel, not 4.  Per dimension, for output pixel ``i``
(1-based) of ``ceil(scale * n)``:

* its centre in input coordinates is ``u = i / scale + (1 - 1 / scale) / 2``;
* the kernel is ``h(x) = scale * cubic(scale * x)`` when ``scale < 1``
  (else ``cubic(x)``), ``4 / scale`` pixels wide;
* it covers input pixels ``floor(u - width / 2) + (0 .. ceil(width) + 1)``,
  weighted by ``h(u - k)`` and normalised to sum 1;
* indices outside ``1..n`` are mirrored (``0 -> 1``, ``-1 -> 2``, ``n + 1 -> n``),
  and taps whose weight is zero for every output pixel are dropped.

Dimensions are resized one at a time, the one with the smaller scale first
(rows first when the scales are equal), each as a weighted sum of the taps in
order.  Values are neither rounded nor clipped (the input is double).
"""
from __future__ import annotations

import math

import numpy as np

_CUBIC_WIDTH = 4.0


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with ``a = -0.5`` (MATLAB's ``cubic``)."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    inner = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    outer = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return inner + outer


def contributions(in_len: int, out_len: int, scale: float, antialiasing: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(weights, indices)``, each ``out_len x taps``: output ``i`` = sum over ``t`` of ``w[i, t] * in[idx[i, t]]``.

    Indices are 0-based and already mirrored into ``0 .. in_len - 1``.
    """
    shrink = scale < 1 and antialiasing
    width = _CUBIC_WIDTH / scale if shrink else _CUBIC_WIDTH
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2.0)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]  # 1-based
    dist = u[:, None] - idx
    w = scale * cubic(scale * dist) if shrink else cubic(dist)
    w = w / w.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    idx = mirror[np.mod(idx.astype(np.int64) - 1, mirror.size)]
    keep = np.any(w != 0, axis=0)
    return w[:, keep], idx[:, keep]


def _resize_axis(img: np.ndarray, axis: int, out_len: int, scale: float) -> np.ndarray:
    w, idx = contributions(img.shape[axis], out_len, scale)
    moved = np.moveaxis(img, axis, 0)
    out = np.zeros((out_len,) + moved.shape[1:], dtype=np.float64)
    extra = (slice(None),) + (None,) * (moved.ndim - 1)
    for t in range(w.shape[1]):
        out += w[:, t][extra] * moved[idx[:, t]]
    return np.moveaxis(out, 0, axis)


def imresize(img: np.ndarray, scale: float) -> np.ndarray:
    """``imresize(img, scale)`` of MATLAB (bicubic, antialiasing) for a 2-D array, in float64."""
    img = np.asarray(img, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"imresize takes a 2-D array, got shape {img.shape}")
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    out_shape = [int(math.ceil(scale * n)) for n in img.shape]
    for axis in (0, 1):  # equal scales: MATLAB's stable sort of the scales puts rows first
        img = _resize_axis(img, axis, out_shape[axis], scale)
    return img
