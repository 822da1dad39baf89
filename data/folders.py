"""Dataset folders: pairing images of two folders by file name (never by position) and checking them.

Input and target (or result and target) files of a pair share a *key*: the
file stem with one rain/clean marker removed from its start or end, so all
of these pair up::

    001.png          001.jpg
    rain-001.png     norain-001.png
    rain_001.png     norain_001.png
    001_rain.png     001_clean.png      (also _rainy, _norain, _gt)

:func:`pair_files` raises :class:`PairingError` listing every file without a
partner (and every key claimed by two files), so a half-copied test set or a
stray file is reported instead of silently shifting the pairing.
``evaluate_PSNR_SSIM.m`` strips the same markers with the same patterns.

:func:`scan_pairs` checks a whole dataset folder at start-up (both files
exist, are readable images - by default verified with Pillow and decoded
once - and have the same size) and raises one :class:`DatasetError` naming
every offending file.
"""
from __future__ import annotations

import io
import logging
import os
import re
import struct
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from utils.errors import UserError
from utils.image_io import ImageReadError, decode_image, list_images, read_image

logger = logging.getLogger(__name__)

# Keep in sync with pair_key() in evaluate_PSNR_SSIM.m.
_MARKER = r"(?:no)?rainy?|clean|gt"
_PREFIX = re.compile(rf"^(?:{_MARKER})[-_]", re.IGNORECASE)
_SUFFIX = re.compile(rf"[-_](?:{_MARKER})$", re.IGNORECASE)
_SHOW = 10


class PairingError(UserError, ValueError):
    """Two folders do not hold matching images; the message lists the culprits."""


def pair_key(name: str | os.PathLike) -> str:
    """The key a file pairs by: its stem without a leading/trailing rain or clean marker.

    >>> pair_key("rain-001.png"), pair_key("norain-001.png"), pair_key("12_rain.jpg")
    ('001', '001', '12')
    """
    stem = Path(name).stem
    key = _SUFFIX.sub("", _PREFIX.sub("", stem, count=1), count=1)
    return key or stem


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOW])
    return shown + (f" ... and {len(items) - _SHOW} more" if len(items) > _SHOW else "")


def _keyed(files: list[Path], folder: Path) -> tuple[dict[str, Path], list[str]]:
    keyed: dict[str, Path] = {}
    clashes = []
    for path in files:
        key = pair_key(path.name)
        if key in keyed:
            clashes.append(f"{folder}: {keyed[key].name} and {path.name} both pair as {key!r}")
        else:
            keyed[key] = path
    return keyed, clashes


def pair_files(dir_a: str | os.PathLike, dir_b: str | os.PathLike) -> list[tuple[Path, Path]]:
    """Pair the images of ``dir_a`` with those of ``dir_b`` by :func:`pair_key`.

    Returns ``(a, b)`` tuples in the natural order of ``dir_a``.  Raises
    :class:`PairingError` when a folder is missing or empty, when two files
    of one folder share a key, or when any file of either folder has no
    partner; the message names them all (the first ten of each kind).
    """
    dir_a, dir_b = Path(dir_a), Path(dir_b)
    for folder in (dir_a, dir_b):
        if not folder.is_dir():
            raise PairingError(f"not a folder: {folder}")
    files_a, files_b = list_images(dir_a), list_images(dir_b)
    if not files_a:
        raise PairingError(f"no images in {dir_a}")
    if not files_b:
        raise PairingError(f"no images in {dir_b}")
    keyed_a, clashes_a = _keyed(files_a, dir_a)
    keyed_b, clashes_b = _keyed(files_b, dir_b)
    only_a = [p.name for k, p in keyed_a.items() if k not in keyed_b]
    only_b = [p.name for k, p in keyed_b.items() if k not in keyed_a]
    problems = clashes_a + clashes_b
    if only_a:
        problems.append(f"{len(only_a)} in {dir_a} without a partner in {dir_b}: {_listing(only_a)}")
    if only_b:
        problems.append(f"{len(only_b)} in {dir_b} without a partner in {dir_a}: {_listing(only_b)}")
    if problems:
        raise PairingError("images do not pair up by name:\n  " + "\n  ".join(problems))
    return [(path, keyed_b[key]) for key, path in keyed_a.items()]


MAX_LISTED = 20  # offending files listed in one error message
_EXIF_ORIENTATION = 0x0112
_SWAPPING_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that transpose the image
_HEADER_EXIF_SUFFIXES = (".jpg", ".jpeg", ".tif", ".tiff", ".webp")


class DatasetError(UserError, ValueError):
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
    structure and decodes it (:func:`load_checked`).  Without ``verify`` only
    the header is read; the size is the size ``read_image`` returns: EXIF
    orientation is applied for JPEG, TIFF and WebP (for PNG it would cost a
    full decode).
    """
    if verify:
        img, reason = load_checked(path)
        return (img.shape[:2], None) if img is not None else (None, reason)
    size, reason = _pillow_check(path, path.suffix, verify=False)
    if size is not None:
        return size, None
    try:  # a file Pillow rejects may still be one OpenCV reads
        return read_image(path).shape[:2], None
    except ImageReadError as err:
        return None, reason or str(err)


def load_checked(path: Path, data: bytes | None = None) -> tuple[np.ndarray | None, str | None]:
    """``(image, None)`` for a sound image file, ``(None, reason)`` otherwise: the check every dataset runs.

    Pillow checks the file's structure (chunk checksums for PNG), then the
    file is decoded as training decodes it (:func:`~utils.image_io.read_image`),
    so a file with valid checksums but a corrupt compressed stream is found
    too.  A file Pillow rejects is still accepted when OpenCV decodes it
    (Pillow lacks some formats and modes OpenCV reads).  ``data``: the file's
    bytes when the caller has read them already (the file is then not read again).
    """
    _, reason = _pillow_check(path if data is None else io.BytesIO(data), path.suffix, verify=True)
    try:
        img = read_image(path) if data is None else decode_image(data, path)
    except ImageReadError as err:
        return None, reason or str(err)
    return img, None


def _pillow_check(source: Path | io.BytesIO, suffix: str, verify: bool) -> tuple[tuple[int, int] | None, str | None]:
    """Pillow's view of an image file: ``((height, width), None)`` (EXIF orientation applied), or ``(None, reason)``."""
    try:
        with Image.open(source) as im:
            width, height = im.size
            if suffix.lower() in _HEADER_EXIF_SUFFIXES:
                if im.getexif().get(_EXIF_ORIENTATION, 1) in _SWAPPING_ORIENTATIONS:
                    width, height = height, width
            if verify:
                im.verify()
        return (height, width), None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError) as err:
        return None, f"{type(err).__name__}: {err}"


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
    :func:`data.folders.pair_files`.
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
    problems, records = check_pairs(pairs, [(results[2 * k], results[2 * k + 1]) for k in range(len(pairs))])
    if problems:
        raise DatasetError(format_problems(str(root), problems))
    logger.info("%s: %d pairs checked", root, len(records))
    return records


Inspection = tuple[tuple[int, int] | None, str | None]  # ((height, width), None) or (None, why unreadable)


def check_pairs(pairs: list[tuple[Path, Path]], results: list[tuple[Inspection, Inspection]]
                ) -> tuple[list[str], list[ImagePair]]:
    """``(problems, records)`` of paired files from their inspections (see :func:`inspect_image`).

    A problem is an unreadable image or a pair whose sizes differ; every
    sound pair becomes an :class:`ImagePair`.
    """
    problems, records = [], []
    for (inp, tgt), ((size_in, err_in), (size_tgt, err_tgt)) in zip(pairs, results):
        for path, err in ((inp, err_in), (tgt, err_tgt)):
            if err is not None:
                problems.append(f"unreadable image {path} ({err})")
        if size_in is None or size_tgt is None:
            continue
        if size_in != size_tgt:
            problems.append(f"size mismatch: {inp} is {_hw(size_in)} but {tgt} is {_hw(size_tgt)}")
            continue
        records.append(ImagePair(inp.stem, inp, tgt, *size_in))
    return problems, records


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
