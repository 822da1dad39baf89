"""The built-in demo dataset: synthetic rain over the photos scikit-image ships.

It lets anyone train and test end to end in minutes on a CPU, without
downloading anything.  Layout (the standard one)::

    <out>/train/input/<photo>_<k>.png   rainy crops      <out>/train/target/<photo>_<k>.png   clean
    <out>/test/input/<photo>.png        rainy images     <out>/test/target/<photo>.png        clean
    <out>/manifest.json                 the settings and where every image comes from

Training pairs are square crops (``patch`` pixels, 128 by default) of four
colour photos (astronaut, coffee, rocket, the left motorcycle view) at
scales 1, 3/4 and 1/2, each with its own rain.  The test set holds back a
whole photo (chelsea, 300x451) and a 240x320 region of each training photo
(two of the motorcycle's) that no training crop overlaps, with rain drawn
from seeds no training image uses.  Everything is a function of the seed.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import cv2
import numpy as np

from utils.errors import UsageError, UserError
from utils.files import atomic_write
from utils.image_io import write_image

from .rain_synthesis import PRESETS, synthesize_rain

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
TRAIN_PHOTOS = ("astronaut", "coffee", "rocket", "motorcycle")
TEST_PHOTO = "chelsea"
SCALES = (1.0, 0.75, 0.5)
HELD_OUT_SIZE = (240, 320)  # (height, width) of each held-out test region
_TRAIN, _TEST = 0, 1  # seed-sequence tags: the two splits never share a rain seed
MAX_TRAIN = 100_000  # training pairs (about 20 minutes on one core)


def load_photo(name: str) -> np.ndarray:
    """A colour photo from ``skimage.data`` as uint8 RGB (bundled with scikit-image, no download)."""
    from skimage import data as skdata

    if name == "motorcycle":
        return np.ascontiguousarray(skdata.stereo_motorcycle()[0])
    return np.ascontiguousarray(getattr(skdata, name)())


def held_out_boxes(name: str, height: int, width: int) -> list[tuple[int, int, int, int]]:
    """Test regions ``(y0, x0, y1, x1)`` of a training photo: its bottom-right corner (and bottom-left for the motorcycle)."""
    bh, bw = HELD_OUT_SIZE
    boxes = [(height - bh, width - bw, height, width)]
    if name == "motorcycle":
        boxes.append((height - bh, 0, height, bw))
    return boxes


def _valid_origins(shape: tuple[int, int], size: int, scale: float, boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    """Boolean map over top-left corners of ``size`` crops of the scaled photo that miss every box.

    Boxes are in the photo's original coordinates; a crop at ``(y, x)`` covers
    ``[y / scale, (y + size) / scale)`` there.
    """
    h, w = shape
    ys = np.arange(h - size + 1, dtype=np.float64)[:, None]
    xs = np.arange(w - size + 1, dtype=np.float64)[None, :]
    valid = np.ones((ys.size, xs.size), bool)
    for y0, x0, y1, x1 in boxes:
        overlap_y = (ys / scale < y1) & ((ys + size) / scale > y0)
        overlap_x = (xs / scale < x1) & ((xs + size) / scale > x0)
        valid &= ~(overlap_y & overlap_x)
    return valid


def _rng(seed: int, split: int, k: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence((seed, split, k)))


def _settings(seed: int, num_train: int, patch: int, preset: str) -> dict:
    return {"version": FORMAT_VERSION, "seed": seed, "num_train": num_train, "patch": patch, "preset": preset}


class DemoExistsError(UserError, FileExistsError):
    """The output folder holds another build, or files this builder did not write."""


def _train_counts(num_train: int) -> list[int]:
    return [num_train // len(TRAIN_PHOTOS) + (p < num_train % len(TRAIN_PHOTOS)) for p in range(len(TRAIN_PHOTOS))]


def _planned(num_train: int) -> dict[str, list[str]]:
    """The stems a build writes, per split (a function of ``num_train`` alone)."""
    train = [f"{name}_{j:03d}" for name, count in zip(TRAIN_PHOTOS, _train_counts(num_train)) for j in range(count)]
    test = [TEST_PHOTO] + [name if b == 0 else f"{name}_{b}" for name in TRAIN_PHOTOS
                           for b in range(2 if name == "motorcycle" else 1)]
    return {"train": train, "test": test}


def _owned(manifest: dict) -> set[str]:
    """Files (relative paths) a build recorded in its manifest: the only ones this builder ever deletes."""
    return {f"{split}/{kind}/{stem}.png" for split in ("train", "test") for stem in manifest[split]
            for kind in ("input", "target")}


def _read_manifest(path: Path) -> dict | None:
    """A manifest this builder wrote (finished or not), or None."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = (isinstance(manifest, dict) and isinstance(manifest.get("settings"), dict)
          and all(isinstance(manifest.get(split), dict) for split in ("train", "test")))
    return manifest if ok else None


def _clear_previous_build(out: Path, settings: dict, force: bool) -> bool:
    """Make way for a build in ``out``; False when ``out`` already holds this very build.

    Only files listed in the previous build's manifest are deleted (with
    ``force``); a folder holding anything else is an error naming it.
    """
    if out.exists() and not out.is_dir():
        raise DemoExistsError(f"--out {out} is a file, not a folder")
    manifest_path = out / MANIFEST
    existing = [p for p in (out / "train", out / "test", manifest_path) if p.exists()]
    if not existing:
        return True
    manifest = _read_manifest(manifest_path)
    if manifest is None:
        raise DemoExistsError(
            f"{out} holds {', '.join(p.name for p in existing)} but no manifest of a demo build: make_demo_data.py "
            "only ever deletes files it wrote itself; choose another --out")
    if manifest["settings"] == settings and not manifest.get("building"):
        logger.info("%s already holds the demo dataset with these settings; nothing to do", out)
        return False
    if not force:
        raise DemoExistsError(f"{out} already holds a demo dataset built with other settings, or an unfinished "
                              "one; pass --force to rebuild it")
    owned = _owned(manifest)
    present = [p for split in ("train", "test") for p in sorted((out / split).rglob("*"))]
    foreign = [str(p) for p in present if (p.is_symlink() or not p.is_dir())
               and p.relative_to(out).as_posix() not in owned]
    if foreign:
        shown = ", ".join(foreign[:10]) + (f" ... and {len(foreign) - 10} more" if len(foreign) > 10 else "")
        raise DemoExistsError(f"{out} holds files make_demo_data.py did not write ({shown}); it never deletes "
                              "those: move them away or choose another --out")
    for path in present:
        if path.is_symlink() or not path.is_dir():
            path.unlink()
    for folder in sorted((p for p in present if p.is_dir() and not p.is_symlink()), key=lambda p: len(p.parts),
                         reverse=True):
        folder.rmdir()
    for split in ("train", "test"):
        if (out / split).is_dir():
            (out / split).rmdir()
    manifest_path.unlink()
    return True


def _check_crops(photos: dict[str, np.ndarray], patch: int) -> None:
    """Every photo must hold a ``patch`` crop avoiding its test regions at every scale."""
    for name, img in photos.items():
        boxes = held_out_boxes(name, *img.shape[:2])
        for scale in SCALES:
            shape = (round(img.shape[0] * scale), round(img.shape[1] * scale))
            if not _valid_origins(shape, patch, scale, boxes).any():
                raise UsageError(f"--patch {patch} is too large: no {patch}-pixel crop of {name} at scale {scale} "
                                 "avoids the test regions")


def build_demo_dataset(
    out: str | os.PathLike, seed: int = 0, num_train: int = 320, patch: int = 128, preset: str = "medium",
    force: bool = False,
) -> bool:
    """Write the demo dataset under ``out``; returns False when an identical one is already there.

    A folder built with other settings, or an unfinished build, is an error
    unless ``force``, which deletes the files the previous build's manifest
    lists (and nothing else: a folder holding other files is an error).
    """
    if not 1 <= num_train <= MAX_TRAIN:
        raise UsageError(f"--num-train must be between 1 and {MAX_TRAIN}, got {num_train}")
    if patch < 16:
        raise UsageError(f"--patch must be at least 16, got {patch}")
    if seed < 0:
        raise UsageError(f"--seed must be non-negative, got {seed}")
    if preset not in PRESETS:
        raise UsageError(f"unknown rain preset {preset!r}; valid names: {', '.join(PRESETS)}")
    out = Path(out)
    settings = _settings(seed, num_train, patch, preset)
    photos = {name: load_photo(name) for name in TRAIN_PHOTOS}
    _check_crops(photos, patch)
    if not _clear_previous_build(out, settings, force):
        return False
    manifest_path = out / MANIFEST
    # Written first: an interrupted build is known to be this builder's, so --force may clear it.
    atomic_write(manifest_path, json.dumps({"settings": settings, "building": True,
                                            **{k: dict.fromkeys(v) for k, v in _planned(num_train).items()}}))

    manifest = {"settings": settings, "held_out": {}, "train": {}, "test": {}}
    for name, img in photos.items():
        manifest["held_out"][name] = held_out_boxes(name, *img.shape[:2])

    def save(split: str, stem: str, clean: np.ndarray, rng: np.random.Generator) -> None:
        write_image(out / split / "target" / f"{stem}.png", clean)
        write_image(out / split / "input" / f"{stem}.png", synthesize_rain(clean, rng, preset))

    k = 0
    for (name, img), count in zip(photos.items(), _train_counts(num_train)):
        for j in range(count):
            rng = _rng(seed, _TRAIN, k)
            scale = SCALES[int(rng.integers(len(SCALES)))]
            scaled = img if scale == 1.0 else cv2.resize(
                img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA
            )
            valid = _valid_origins(scaled.shape[:2], patch, scale, manifest["held_out"][name])
            if not valid.any():
                raise ValueError(f"no {patch}-pixel crop of {name} at scale {scale} avoids the test regions")
            y, x = np.unravel_index(rng.choice(np.flatnonzero(valid)), valid.shape)
            y, x = int(y), int(x)
            stem = f"{name}_{j:03d}"
            save("train", stem, np.ascontiguousarray(scaled[y : y + patch, x : x + patch]), rng)
            box = [y / scale, x / scale, (y + patch) / scale, (x + patch) / scale]
            manifest["train"][stem] = {"photo": name, "scale": scale, "box": box}
            k += 1

    tests = [(TEST_PHOTO, TEST_PHOTO, load_photo(TEST_PHOTO), None)]
    for name, img in photos.items():
        for b, box in enumerate(manifest["held_out"][name]):
            y0, x0, y1, x1 = box
            tests.append((name if b == 0 else f"{name}_{b}", name, img[y0:y1, x0:x1], box))
    for k, (stem, name, clean, box) in enumerate(tests):
        save("test", stem, np.ascontiguousarray(clean), _rng(seed, _TEST, k))
        manifest["test"][stem] = {"photo": name, "box": box}

    atomic_write(manifest_path, json.dumps(manifest, indent=1))  # written last: marks a finished build
    logger.info("wrote %d training and %d test pairs under %s", len(manifest["train"]), len(tests), out)
    return True
