"""Paired rainy/clean datasets for training, validation and testing.

A dataset folder holds ``input/`` (rainy) and ``target/`` (clean) images,
paired by file name through :func:`utils.pairing.pair_files` (``001.png`` with
``001.png``, or ``rain-001.png`` with ``norain-001.png``).

At construction every pair is checked, so that a broken dataset fails at
start-up with one message naming all the offending files instead of hours
into training: both files must exist, be readable images (the header is
read and, by default, the file's structure verified with Pillow, which does
not decode pixels: about 0.5 ms a file) and have the same size.  A file that
passes these checks but still cannot be decoded raises
:class:`utils.image_io.ImageReadError` naming it when first read.

Samples are cropped from the uint8 images and only the patch is converted
to float.  With ``store=PATH`` the training and validation datasets read
from a pre-decoded store (see :mod:`data.store`) instead of decoding files.
"""
from __future__ import annotations

import logging
import os
import struct
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm import tqdm

from utils.image_io import ImageReadError, list_images, read_image, uint8_to_tensor
from utils.pairing import pair_files

from .loader import sample_rng
from .transforms import NUM_VARIANTS, augment, center_crop_origin, crop_patch, random_crop_origin

logger = logging.getLogger(__name__)

MAX_LISTED = 20  # offending files listed in one error message
_EXIF_ORIENTATION = 0x0112
_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that transpose the image
_HEADER_EXIF_SUFFIXES = (".jpg", ".jpeg", ".tif", ".tiff", ".webp")


class DatasetError(ValueError):
    """A dataset folder or store is unusable; the message names every offending file (up to a limit)."""


@dataclass(frozen=True)
class ImagePair:
    """One sample of a dataset: an input file, its target (or None) and their size."""

    name: str  # stem of the input file; results are saved under this name
    input: Path
    target: Path | None
    height: int
    width: int


def format_problems(what: str, problems: list[str]) -> str:
    """``what`` followed by up to :data:`MAX_LISTED` problems, one a line, and how many were left out."""
    lines = [f"{what}: {len(problems)} problem(s):"] + [f"  {p}" for p in problems[:MAX_LISTED]]
    if len(problems) > MAX_LISTED:
        lines.append(f"  ... and {len(problems) - MAX_LISTED} more")
    return "\n".join(lines)


def inspect_image(path: Path, verify: bool = True) -> tuple[tuple[int, int] | None, str | None]:
    """``((height, width), None)`` for a readable image, ``(None, reason)`` otherwise.

    Reads the header with Pillow and, with ``verify``, checks the file's
    structure (chunk checksums for PNG) without decoding pixels.  The size is
    the size :func:`utils.image_io.read_image` returns: EXIF orientation is
    applied for JPEG, TIFF and WebP (for PNG it would cost a full decode).  A
    file Pillow rejects is decoded with :func:`~utils.image_io.read_image`, the
    reader training uses, before it is reported (Pillow lacks some formats
    and modes OpenCV reads).
    """
    try:
        with Image.open(path) as im:
            width, height = im.size
            if path.suffix.lower() in _HEADER_EXIF_SUFFIXES:
                if im.getexif().get(_EXIF_ORIENTATION, 1) in _SWAPPING_ORIENTATIONS:
                    width, height = height, width
            if verify:
                im.verify()
        return (height, width), None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError) as err:
        reason = f"{type(err).__name__}: {err}"
    try:
        img = read_image(path)
    except ImageReadError:
        return None, reason
    return img.shape[:2], None


def _inspect_all(paths: list[Path], verify: bool) -> list[tuple[tuple[int, int] | None, str | None]]:
    if not paths:
        return []
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda p: inspect_image(p, verify), paths)  # threads hide disk latency
        show = len(paths) >= 2000 and sys.stderr.isatty()
        return list(tqdm(results, total=len(paths), desc="checking images", disable=not show))


def scan_pairs(root: str | os.PathLike, verify: bool = True) -> list[ImagePair]:
    """Pair ``root/input`` with ``root/target`` and check every pair (see the module docstring).

    Raises :class:`DatasetError` listing every unreadable file and every pair
    whose sizes differ; pairing errors (missing or extra files) come from
    :func:`utils.pairing.pair_files`.
    """
    root = Path(root)
    input_dir, target_dir = root / "input", root / "target"
    for folder in (input_dir, target_dir):
        if not folder.is_dir():
            raise DatasetError(f"{root}: expected the folders input/ and target/, missing {folder}")
    pairs = [(Path(a), Path(b)) for a, b in pair_files(input_dir, target_dir)]
    if not pairs:
        raise DatasetError(f"{root}: no image pairs in {input_dir} and {target_dir}")
    results = _inspect_all([p for pair in pairs for p in pair], verify)
    problems, records = [], []
    for k, (inp, tgt) in enumerate(pairs):
        (size_in, err_in), (size_tgt, err_tgt) = results[2 * k], results[2 * k + 1]
        for path, err in ((inp, err_in), (tgt, err_tgt)):
            if err is not None:
                problems.append(f"unreadable image {path} ({err})")
        if size_in is None or size_tgt is None:
            continue
        if size_in != size_tgt:
            problems.append(f"size mismatch: {inp} is {_hw(size_in)} but {tgt} is {_hw(size_tgt)}")
            continue
        records.append(ImagePair(inp.stem, inp, tgt, *size_in))
    if problems:
        raise DatasetError(format_problems(str(root), problems))
    logger.info("%s: %d pairs checked", root, len(records))
    return records


def scan_images(folder: str | os.PathLike, verify: bool = True) -> list[ImagePair]:
    """Every image in ``folder`` as a target-less :class:`ImagePair`, checked like :func:`scan_pairs`."""
    paths = list_images(folder)
    if not paths:
        raise DatasetError(f"no images in {folder}")
    problems, records = [], []
    for path, (size, err) in zip(paths, _inspect_all(paths, verify)):
        if err is not None:
            problems.append(f"unreadable image {path} ({err})")
        else:
            records.append(ImagePair(path.stem, path, None, *size))
    if problems:
        raise DatasetError(format_problems(str(folder), problems))
    return records


def _hw(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]} (HxW)"


def read_pair(pair: ImagePair) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode a pair as uint8 RGB (target None when the pair has none); differing sizes are an error."""
    inp = read_image(pair.input)
    if pair.target is None:
        return inp, None
    tgt = read_image(pair.target)
    if inp.shape != tgt.shape:
        raise DatasetError(
            f"size mismatch: {pair.input} is {_hw(inp.shape[:2])} but {pair.target} is {_hw(tgt.shape[:2])}"
        )
    return inp, tgt


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

    def __init__(self, root: str | os.PathLike | None, store: str | os.PathLike | None, verify: bool):
        if root is None and store is None:
            raise ValueError("give the dataset folder (root) or a pre-decoded store (store)")
        self.root = Path(root) if root is not None else None
        self.store = None
        if store is not None:
            from .store import ImageStore  # here: data.store imports this module

            self.store = ImageStore(store)
            if self.root is not None:
                self.store.check_matches(self.root)
            self.pairs = self.store.pairs
        else:
            self.pairs = scan_pairs(self.root, verify=verify)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Full uint8 (H, W, 3) input and target of pair ``i`` (views into the store when there is one)."""
        if self.store is not None:
            return self.store.pair(i)
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
    ):
        super().__init__(root, store, verify)
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
    ):
        super().__init__(root, store, verify)
        self.patch_size = _check_patch_size(patch_size, allow_none=True)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        inp, tgt = self.load(index)
        if self.patch_size is not None:
            y, x = center_crop_origin(inp.shape[0], inp.shape[1], self.patch_size)
            inp, tgt = (crop_patch(a, y, x, self.patch_size) for a in (inp, tgt))
        return uint8_to_tensor(inp), uint8_to_tensor(tgt), self.pairs[index].name


class PairedTestDataset(Dataset):
    """Whole test images, with their targets when the folder has them.

    ``root`` is a folder with ``input/`` (and optionally ``target/``), or a
    folder of images itself (no targets).  ``with_target``: ``"auto"`` uses
    ``target/`` when it exists; ``True`` requires it; ``False`` ignores it.

    Item ``i`` is a dict: ``"input"`` float32 ``(3, H, W)`` in [0, 1],
    ``"name"`` (the input file's stem, under which results are saved),
    ``"path"`` (the input file, as a string) and, when there are targets,
    ``"target"``.  Images differ in size: use ``batch_size=1``.
    """

    def __init__(self, root: str | os.PathLike, with_target: bool | str = "auto", verify: bool = True):
        if with_target not in (True, False, "auto"):
            raise ValueError(f"with_target must be True, False or 'auto', got {with_target!r}")
        self.root = Path(root)
        input_dir, target_dir = self.root / "input", self.root / "target"
        if not input_dir.is_dir():
            if with_target is True:
                raise DatasetError(f"{self.root}: with_target=True needs input/ and target/ folders")
            input_dir = self.root
        if with_target is True and not target_dir.is_dir():
            raise DatasetError(f"{self.root}: with_target=True but {target_dir} does not exist")
        self.has_target = with_target is not False and input_dir != self.root and target_dir.is_dir()
        self.pairs = scan_pairs(self.root, verify) if self.has_target else scan_images(input_dir, verify)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        pair = self.pairs[index]
        inp, tgt = read_pair(pair)
        item = {"input": uint8_to_tensor(inp), "name": pair.name, "path": str(pair.input)}
        if tgt is not None:
            item["target"] = uint8_to_tensor(tgt)
        return item
