"""Crops, padding and the 8 flip/rotation variants on uint8 ``(H, W, C)`` arrays.

The functions work on ``numpy`` arrays (or memory-mapped views) *before* any
conversion to float, so a training sample only ever converts its small patch.
The same box and the same variant are applied to an input and its target by
calling the functions twice with the same arguments.
"""
from __future__ import annotations

import numpy as np

NUM_VARIANTS = 8


def augment(img: np.ndarray, mode: int) -> np.ndarray:
    """Return variant ``mode`` (0-7) of the dihedral group of the square, as a view.

    ``mode = 4 * flip + k``: rotate by ``k`` quarter turns counter-clockwise,
    then mirror left-right when ``flip`` is 1.  Mode 0 is the identity; the
    eight modes are the eight distinct flips/rotations.
    """
    mode = int(mode)
    if not 0 <= mode < NUM_VARIANTS:
        raise ValueError(f"augmentation mode must be in 0..{NUM_VARIANTS - 1}, got {mode}")
    k = mode % 4
    out = np.rot90(img, k, axes=(0, 1)) if k else img
    return out[:, ::-1] if mode >= 4 else out


def pad_to_size(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Reflect-pad the bottom and right edges so the image is at least ``height`` x ``width``.

    Reflection repeats as often as needed (a 10-pixel image padded to 64
    works); a 1-pixel side is repeated.  Returns ``img`` itself when no
    padding is needed.
    """
    h, w = img.shape[:2]
    ph, pw = max(0, height - h), max(0, width - w)
    if ph == 0 and pw == 0:
        return img
    pad = ((0, ph), (0, pw)) + ((0, 0),) * (img.ndim - 2)
    return np.pad(img, pad, mode="reflect")


def random_crop_origin(height: int, width: int, size: int, rng: np.random.Generator) -> tuple[int, int]:
    """Top-left corner of a uniformly random ``size`` x ``size`` box (0 along a side shorter than ``size``)."""
    y = int(rng.integers(0, max(height - size, 0) + 1))
    x = int(rng.integers(0, max(width - size, 0) + 1))
    return y, x


def center_crop_origin(height: int, width: int, size: int) -> tuple[int, int]:
    """Top-left corner of the centred ``size`` x ``size`` box (rounding towards the top-left)."""
    return max(height - size, 0) // 2, max(width - size, 0) // 2


def crop_patch(img: np.ndarray, y: int, x: int, size: int) -> np.ndarray:
    """The ``size`` x ``size`` patch at ``(y, x)``, reflect-padded when the image is smaller."""
    return pad_to_size(img[y : y + size, x : x + size], size, size)
