"""Pairing images of two folders by file name, never by position.

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
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from .image_io import list_images

# Keep in sync with pair_key() in evaluate_PSNR_SSIM.m.
_MARKER = r"(?:no)?rainy?|clean|gt"
_PREFIX = re.compile(rf"^(?:{_MARKER})[-_]", re.IGNORECASE)
_SUFFIX = re.compile(rf"[-_](?:{_MARKER})$", re.IGNORECASE)
_SHOW = 10


class PairingError(ValueError):
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
