"""Duplicate and near-duplicate images: the same scene twice in a set, or in training and test sets.

Two clean images are

* ``exact`` duplicates when their bytes or their decoded pixels are the same
  (SHA-256 of each);
* ``near`` duplicates when their perceptual hashes are within
  :data:`NEAR_BITS` bits of each other, their grey 16x16 thumbnails
  correlate by at least :data:`NEAR_CORRELATION` and their aspect ratios
  agree within :data:`NEAR_ASPECT` (log ratio).

The perceptual hash is the DCT hash (pHash): the grey image shrunk to 32x32
by area averaging, its 2-D DCT, and one bit per low frequency of the 8x8
top-left block (DC left out, 63 bits): above the block's median or not.  It
ignores brightness and contrast and barely moves under re-encoding, rescaling
or a crop of a few pixels - what separates the 481x321 originals of
Rain100H/L from their 480x320 crops.  The thumbnail correlation (Pearson's r
of the two 16x16 grey thumbnails) is a second, independent test that keeps
unrelated images whose hashes happen to be close apart.

Thresholds measured on the clean images of Rain100H (480x320) and RainTrainL
and on the 147 real rainy photos (447 images, 99,681 pairs; see
``docs/DATA.md``): the 58 pairs that are the same scene (pixel-identical,
re-saved or re-cropped copies) are within 10 bits; no other pair is closer
than 14 bits, and the four at 14 correlate at most 0.54.  Every RainTrainL and
Rain100H image cropped by one row and column and saved as JPEG (quality 75)
stays within 4 bits and 0.996.  Crops of 10 % or more of the image are not
near duplicates by this definition.

Written with NumPy and OpenCV; a pHash library (``imagehash``) would add a
dependency for 15 lines.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

NEAR_BITS = 12  # at most this many of the 63 pHash bits differ
NEAR_CORRELATION = 0.85  # thumbnails correlate at least this much
NEAR_ASPECT = 0.1  # |log(aspect ratio a / aspect ratio b)| at most this
_HASH_SIDE, _DCT_SIDE, _THUMB_SIDE = 32, 8, 16
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
_BIT_WEIGHTS = np.left_shift(np.uint64(1), np.arange(_DCT_SIDE * _DCT_SIDE - 1, dtype=np.uint64))
_CHUNK = 512  # rows of the distance matrix computed at a time


def perceptual(img: np.ndarray) -> tuple[np.uint64, np.ndarray]:
    """``(phash, thumbnail)`` of a uint8 image (RGB or grey): the 63-bit DCT hash and a unit 16x16 grey thumbnail."""
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img
    small = cv2.resize(grey.astype(np.float32), (_HASH_SIDE, _HASH_SIDE), interpolation=cv2.INTER_AREA)
    low = cv2.dct(small)[:_DCT_SIDE, :_DCT_SIDE].ravel()[1:]
    bits = (low > np.median(low)).astype(np.uint64)
    phash = np.bitwise_or.reduce(bits * _BIT_WEIGHTS)
    # Area averages nest: the 16x16 thumbnail of the 32x32 one is the image's own 16x16 area average.
    thumb = cv2.resize(small, (_THUMB_SIDE, _THUMB_SIDE), interpolation=cv2.INTER_AREA).ravel()
    thumb = thumb - thumb.mean()
    norm = float(np.linalg.norm(thumb))
    return np.uint64(phash), (thumb / norm if norm > 1e-6 else np.zeros_like(thumb))


@dataclass
class Fingerprints:
    """Fingerprints of a list of images, as arrays (one row per image)."""

    names: list[str]
    sha256: list[str | None]  # of the file's bytes; None where unknown (images from a store)
    pixels: list[str]  # SHA-256 of the decoded pixels
    sizes: np.ndarray  # (N, 2) height, width
    phash: np.ndarray  # (N,) uint64
    thumbs: np.ndarray  # (N, 256) float32, unit norm (zero for a flat image)

    @classmethod
    def build(cls, items: list[tuple[str, str | None, str, tuple[int, int], np.uint64, np.ndarray]]) -> Fingerprints:
        """From ``(name, sha256, pixels, (height, width), phash, thumbnail)`` tuples."""
        return cls([i[0] for i in items], [i[1] for i in items], [i[2] for i in items],
                   np.array([i[3] for i in items], dtype=np.int64).reshape(-1, 2),
                   np.array([i[4] for i in items], dtype=np.uint64),
                   np.array([i[5] for i in items], dtype=np.float32).reshape(-1, _THUMB_SIDE * _THUMB_SIDE))

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, rows: list[int]) -> Fingerprints:
        return Fingerprints([self.names[i] for i in rows], [self.sha256[i] for i in rows],
                            [self.pixels[i] for i in rows], self.sizes[rows], self.phash[rows], self.thumbs[rows])


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits that differ between every hash of ``a`` (N,) and every hash of ``b`` (M,): (N, M) uint8."""
    x = np.bitwise_xor(a[:, None], b[None, :])
    return _POPCOUNT[x.view(np.uint8)].reshape(*x.shape, 8).sum(axis=-1, dtype=np.uint8)


def find_duplicates(a: Fingerprints, b: Fingerprints | None = None) -> list[tuple[int, int, str]]:
    """``(i, j, kind)`` for each duplicate pair: within ``a`` (i < j) or between ``a`` and ``b`` (row i of a, j of b).

    ``kind`` is ``"exact"`` (same bytes or same pixels) or ``"near"`` (see the module docstring).
    """
    within = b is None
    b = a if within else b
    found = []
    for start in range(0, len(a), _CHUNK):
        rows = slice(start, min(start + _CHUNK, len(a)))
        close = hamming(a.phash[rows], b.phash) <= NEAR_BITS
        for i, j in zip(*np.nonzero(close)):
            i = int(i) + start
            j = int(j)
            if within and j <= i:
                continue
            kind = _kind(a, i, b, j)
            if kind:
                found.append((i, j, kind))
    return sorted(found)


def _kind(a: Fingerprints, i: int, b: Fingerprints, j: int) -> str | None:
    if (a.sha256[i] is not None and a.sha256[i] == b.sha256[j]) or a.pixels[i] == b.pixels[j]:
        return "exact"
    (ha, wa), (hb, wb) = a.sizes[i], b.sizes[j]
    if abs(np.log((wa / ha) / (wb / hb))) > NEAR_ASPECT:
        return None
    return "near" if float(a.thumbs[i] @ b.thumbs[j]) >= NEAR_CORRELATION else None

