"""Paired rainy/clean datasets for training and validation.

A dataset folder holds ``input/`` (rainy) and ``target/`` (clean) images,
paired by file name through :func:`data.folders.pair_files` (``001.png`` with
``001.png``, or ``rain-001.png`` with ``norain-001.png``).

At construction every pair is checked, so that a broken dataset fails at
start-up with one message naming all the offending files instead of hours
into training: both files must exist, be readable images (by default the
file's structure is verified with Pillow and the file decoded once, about
2.5 ms a 480x320 PNG on threads; ``verify=False`` reads the headers only)
and have the same size.  A file that changes afterwards and can no longer be
decoded raises :class:`utils.image_io.ImageReadError` naming it when read.

Samples are cropped from the uint8 images and only the patch is converted
to float.  With ``store=PATH`` the training and validation datasets read
from a pre-decoded store (see :mod:`data.store`) instead of decoding files.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from utils.image_io import uint8_to_tensor

from .folders import DatasetError, ImagePair, read_pair, scan_pairs
from .loader import sample_rng
from .store import ImageStore
from .transforms import NUM_VARIANTS, augment, center_crop_origin, crop_patch, random_crop_origin

logger = logging.getLogger(__name__)


def _check_patch_size(value: int | None, allow_none: bool) -> int | None:
    if value is None or (allow_none and value == 0):
        if not allow_none:
            raise ValueError("patch_size is required")
        return None
    if int(value) != value or value < 1:
        raise ValueError(f"patch size must be a positive integer, got {value!r}")
    return int(value)


class _PairedImages(Dataset):
    """Pairs from a folder or a store, loaded as full uint8 images (shared by train and val)."""

    def __init__(self, root: str | os.PathLike | None, store: str | os.PathLike | None, verify: bool,
                 pairs: list[ImagePair] | None = None):
        if root is None and store is None:
            raise ValueError("give the dataset folder (root) or a pre-decoded store (store)")
        self.root = Path(root) if root is not None else None
        self.store = None
        if store is not None:
            self.store = ImageStore(store)
            if self.root is not None:
                self.store.check_matches(self.root)
            everything = self.store.pairs
        else:
            everything = scan_pairs(self.root, verify=verify) if pairs is None else None
        if pairs is None:
            self.pairs, self._index = everything, list(range(len(everything)))
        else:  # a subset (a validation split); with a store, found there by name
            self.pairs = list(pairs)
            if self.store is None:
                self._index = list(range(len(self.pairs)))
            else:
                where = {p.name: i for i, p in enumerate(everything)}
                missing = [p.name for p in self.pairs if p.name not in where]
                if missing:
                    raise DatasetError(f"{self.store.path}: no pairs named {', '.join(missing[:5])} in the store")
                self._index = [where[p.name] for p in self.pairs]

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Full uint8 (H, W, 3) input and target of pair ``i`` (views into the store when there is one)."""
        if self.store is not None:
            return self.store.pair(self._index[i])
        return read_pair(self.pairs[i])


class PairedTrainDataset(_PairedImages):
    """Random aligned patches of rainy/clean pairs with a random flip/rotation.

    Item ``i`` is ``(input, target, name)``: two float32 ``(3, P, P)`` tensors
    in [0, 1] cut from the same place of pair ``i % len(pairs)`` (reflect-padded
    at the bottom/right when the image is smaller than ``P``), both in the same
    one of the 8 flip/rotation variants, drawn uniformly.  The choices come
    from :func:`data.loader.sample_rng` ``(seed, epoch, i)``: call
    :meth:`set_epoch` (or :func:`data.loader.set_epoch` on the loader) before
    each epoch.  The epoch lives in shared memory, so persistent workers see it.

    Args:
        root: folder with ``input/`` and ``target/``; optional with ``store``
            (when both are given the store must match the folder).
        patch_size: side of the square patches (the release's 64).
        seed: base seed (the run's seed).
        store: path of a store written by ``scripts/build_store.py``.
        augment: draw one of the 8 variants (``False``: always the identity).
        repeat: patches per image per epoch (the dataset's length is
            ``repeat * len(pairs)``), for small datasets.
        verify: verify file structure at start-up, not only the headers.
        pairs: the checked pairs to use (a subset of ``root``'s, e.g. the
            training part of a validation split); ``root`` is then not scanned.
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        patch_size: int = 64,
        seed: int = 0,
        store: str | os.PathLike | None = None,
        augment: bool = True,
        repeat: int = 1,
        verify: bool = True,
        pairs: list[ImagePair] | None = None,
    ):
        super().__init__(root, store, verify, pairs)
        self.patch_size = _check_patch_size(patch_size, allow_none=False)
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        if repeat < 1:
            raise ValueError(f"repeat must be at least 1, got {repeat}")
        self.seed = int(seed)
        self.augment = bool(augment)
        self.repeat = int(repeat)
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def set_epoch(self, epoch: int) -> None:
        if epoch < 0:
            raise ValueError(f"epoch must be non-negative, got {epoch}")
        self._epoch[0] = int(epoch)

    def __len__(self) -> int:
        return len(self.pairs) * self.repeat

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        i = index % len(self.pairs)
        rng = sample_rng(self.seed, self.epoch, index)
        inp, tgt = self.load(i)
        y, x = random_crop_origin(inp.shape[0], inp.shape[1], self.patch_size, rng)
        mode = int(rng.integers(0, NUM_VARIANTS)) if self.augment else 0
        patches = [augment(crop_patch(a, y, x, self.patch_size), mode) for a in (inp, tgt)]
        return uint8_to_tensor(patches[0]), uint8_to_tensor(patches[1]), self.pairs[i].name


class PairedValDataset(_PairedImages):
    """Centre crops (the release's ``TRAINING.VAL_PS``) of rainy/clean pairs, no augmentation.

    Item ``i`` is ``(input, target, name)`` with float32 ``(3, P, P)`` tensors
    in [0, 1]; an image smaller than ``P`` is reflect-padded at the bottom/right
    so every item has the same shape.  ``patch_size`` None or 0 gives whole images.
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        patch_size: int | None = None,
        store: str | os.PathLike | None = None,
        verify: bool = True,
        pairs: list[ImagePair] | None = None,
    ):
        super().__init__(root, store, verify, pairs)
        self.patch_size = _check_patch_size(patch_size, allow_none=True)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        inp, tgt = self.load(index)
        if self.patch_size is not None:
            y, x = center_crop_origin(inp.shape[0], inp.shape[1], self.patch_size)
            inp, tgt = (crop_patch(a, y, x, self.patch_size) for a in (inp, tgt))
        return uint8_to_tensor(inp), uint8_to_tensor(tgt), self.pairs[index].name
