"""Gather a comparison: the rainy inputs, each method's results and the optional targets, checked and scored.

Files pair by name with the inputs (:func:`data.folders.pair_files`, so
``rain-001.png`` pairs with ``001.png``).  Every method folder must hold a
result for every input (a missing or extra file is a
:class:`~data.folders.PairingError` naming the method and the files), every
file must decode (:class:`~utils.image_io.ImageReadError` naming it), and all
the images of one scene must have one size (a ``PairingError`` naming both
files).  Scores are the papers': Y-channel PSNR/SSIM against the target (an
image too small for SSIM is an error naming it), or NIQE (lower is better)
without targets - NaN, with a warning naming the file, where NIQE is
undefined (as in every tool, :mod:`metrics.report`).
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data.folders import PairingError, pair_files
from metrics.psnr_ssim import rgb_to_y
from metrics.report import niqe_or_nan, score_arrays
from utils.errors import UsageError
from utils.image_io import read_image

INPUT, TARGET = "Input", "Target"


@dataclass
class Scene:
    """One test image: its panels (input, methods, target) in order, their files and scores."""

    key: str
    files: dict[str, Path]  # panel name -> file, in panel order
    images: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # dropped once no longer needed
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    size: tuple[int, int] = (0, 0)  # (width, height)


def parse_method(text: str) -> tuple[str, Path]:
    """``NAME=DIR`` -> ``(NAME, Path(DIR))``; a bare ``DIR`` is named by its parent folder (``results/PReNet/Rain100H``)."""
    name, sep, folder = text.partition("=")
    if not sep:
        folder, name = text, Path(text).resolve().parent.name
    name = name.strip()
    if not name or not folder:
        raise UsageError(f"method {text!r}: expected NAME=DIR")
    if name.lower() in (INPUT.lower(), TARGET.lower()):
        raise UsageError(f"method {text!r}: {INPUT} and {TARGET} are the names of the other panels")
    return name, Path(folder)


def slug(name: str) -> str:
    """A file-name-safe version of a panel name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "panel"


def collect(input_dir: Path, methods: list[tuple[str, Path]], target_dir: Path | None = None) -> list[Scene]:
    """Pair every method folder (and the targets) with the inputs by name -> one :class:`Scene` per input."""
    if not methods:
        raise UsageError("name at least one method as NAME=DIR")
    names = [n for n, _ in methods]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UsageError(f"method names must differ: {', '.join(dupes)} given twice")
    slugs = [slug(n) for n in [INPUT, *names, TARGET]]
    if len(set(slugs)) != len(slugs):
        raise UsageError(f"method names {', '.join(names)} clash once made file-name safe")
    folders = list(methods) + ([(TARGET, target_dir)] if target_dir is not None else [])
    per_input: dict[Path, dict[str, Path]] = {}
    for name, folder in folders:
        try:
            pairs = pair_files(input_dir, folder)
        except PairingError as err:
            raise PairingError(f"{name} ({folder}): {err}") from None
        for inp, other in pairs:
            per_input.setdefault(inp, {INPUT: inp})[name] = other
    return [Scene(key=inp.stem, files=files) for inp, files in per_input.items()]


def load(scene: Scene) -> Scene:
    """Read every panel of a scene (errors name the file); all must share the input's size."""
    for name, path in scene.files.items():
        img = read_image(path)
        first = scene.files[INPUT]
        if name != INPUT and img.shape != scene.images[INPUT].shape:
            h0, w0 = scene.images[INPUT].shape[:2]
            raise PairingError(f"size mismatch: {name} {path} is {img.shape[1]}x{img.shape[0]} "
                               f"but input {first} is {w0}x{h0}")
        scene.images[name] = img
    h, w = scene.images[INPUT].shape[:2]
    scene.size = (w, h)
    return scene


def score(scene: Scene) -> Scene:
    """PSNR/SSIM of every non-target panel against the target, or NIQE of each when there is none."""
    target = scene.images.get(TARGET)
    for name, img in scene.images.items():
        if name == TARGET:
            continue
        if target is not None:
            p, s = score_arrays(img, target, str(scene.files[name]), str(scene.files[TARGET]))
            scene.scores[name] = {"psnr": p, "ssim": s}
        else:
            scene.scores[name] = {"niqe": niqe_or_nan(img, str(scene.files[name]))}
    return scene


def caption(scene: Scene, name: str) -> str:
    """The score line under a panel: ``28.95 dB / 0.901``, ``NIQE 4.12``, or the target's label."""
    s = scene.scores.get(name)
    if s is None:
        return "ground truth"
    if "psnr" in s:
        return f"{s['psnr']:.2f} dB / {s['ssim']:.3f}"
    return "NIQE undefined" if np.isnan(s["niqe"]) else f"NIQE {s['niqe']:.3f}"


def auto_zoom(scene: Scene, method: str, frac: float = 0.25, step: int = 4) -> tuple[int, int, int, int]:
    """``(x, y, w, h)``: the square (a ``frac`` of the short side) where ``method`` changed the input most.

    That is where the rain it removed (or the damage it did) is; the same
    region is shown for every panel.
    """
    a = rgb_to_y(scene.images[INPUT]).astype(np.float64)
    b = rgb_to_y(scene.images[method]).astype(np.float64)
    h, w = a.shape
    side = max(8, int(round(min(h, w) * frac)))
    side = min(side, h, w)
    ii = np.pad(np.abs(a - b), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    ys, xs = np.arange(0, h - side + 1, step), np.arange(0, w - side + 1, step)
    sums = (ii[ys[:, None] + side, xs[None, :] + side] - ii[ys[:, None], xs[None, :] + side]
            - ii[ys[:, None] + side, xs[None, :]] + ii[ys[:, None], xs[None, :]])
    iy, ix = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(xs[ix]), int(ys[iy]), side, side


def check_zoom(zoom: Iterable[int], size: tuple[int, int], key: str) -> tuple[int, int, int, int]:
    """A user's ``x y w h`` must lie inside the image."""
    x, y, w, h = (int(v) for v in zoom)
    iw, ih = size
    if w < 1 or h < 1 or x < 0 or y < 0 or x + w > iw or y + h > ih:
        raise UsageError(f"--zoom {x} {y} {w} {h} is not inside {key} ({iw}x{ih})")
    return x, y, w, h
