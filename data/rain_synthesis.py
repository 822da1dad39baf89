"""Synthetic rain: streak layers composited over a clean image, with an optional veil.

The model, for a clean image ``B`` in [0, 1]::

    S_j = clip(brightness_j * G_sigma(L_j * N_j), 0, 1)     streak layer j (grey)
    S   = 1 - prod_j (1 - S_j)                               layers screened together
    R   = 1 - (1 - B)(1 - S)        ("screen", default)     or   R = clip(B + S, 0, 1)  ("add")
    O   = t * R + (1 - t) * A                                veil (haze / rain accumulation)

``N_j`` is sparse noise: each pixel starts a drop with probability
``density_j``, with an intensity drawn in [0.6, 1].  ``L_j *`` is a motion
blur by a line of length ``length_j`` and thickness ``width_j`` at angle
``angle_j`` from the vertical (a correlation with a line kernel whose values
are at most 1, so an isolated streak keeps its drop's intensity along its
length, fading at both ends).  ``G_sigma`` is a small Gaussian blur that
softens the streaks (defocus).  Layer 0 is the nearest; farther layers
(``j`` = 1, 2, ...) have more, shorter, thinner and dimmer streaks, at
nearly the same angle (one wind for the whole image).  ``A`` is the
atmospheric light (grey) and ``t`` the transmission, constant over the
image (``t`` = 1: no veil).  Screen blending only brightens, never past
white, as rain does; ``"add"`` is the additive model of Rain100H/L
(Yang et al., 2017, with the veil of their heavy-rain model).

Each image draws its parameters uniformly from the ranges of a
:class:`RainParams`; the presets ``light``, ``medium`` and ``heavy`` aim at
rainy inputs resembling Rain100L, something in between, and Rain100H.
Everything is deterministic given the ``numpy`` generator.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import cv2
import numpy as np

Range = tuple[float, float]


@dataclass(frozen=True)
class RainParams:
    """Ranges ``(low, high)`` from which each image's rain is drawn uniformly.

    Attributes:
        layers: number of streak layers (depth planes), integers, inclusive.
        density: probability that a pixel starts a streak, nearest layer.
        length: streak length in pixels, nearest layer.
        width: streak thickness in pixels, nearest layer (rounded, at least 1).
        angle: direction of fall in degrees from the vertical (positive leans right).
        angle_jitter: largest extra deviation of each layer from the image's angle, degrees.
        brightness: peak intensity of the nearest layer's streaks, in [0, 1].
        blur: sigma of the Gaussian that softens the streaks, pixels (0: none).
        transmission: veil transmission ``t`` (1: no veil).
        airlight: veil's atmospheric light ``A``, in [0, 1].
        blend: ``"screen"`` or ``"add"``.
    """

    layers: tuple[int, int] = (1, 2)
    density: Range = (0.002, 0.006)
    length: Range = (12.0, 30.0)
    width: Range = (1.0, 1.5)
    angle: Range = (-20.0, 20.0)
    angle_jitter: float = 3.0
    brightness: Range = (0.45, 0.75)
    blur: Range = (0.4, 0.8)
    transmission: Range = (1.0, 1.0)
    airlight: Range = (0.8, 0.95)
    blend: str = "screen"

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, tuple) and (len(value) != 2 or value[0] > value[1]):
                raise ValueError(f"RainParams.{field.name} must be a (low, high) range, got {value!r}")
        checks = {
            "layers": self.layers[0] >= 1,
            "density": 0 <= self.density[0] and self.density[1] <= 1,
            "length": self.length[0] >= 1,
            "width": self.width[0] > 0,
            "brightness": 0 <= self.brightness[0] and self.brightness[1] <= 1,
            "blur": self.blur[0] >= 0,
            "transmission": 0 < self.transmission[0] and self.transmission[1] <= 1,
            "airlight": 0 <= self.airlight[0] and self.airlight[1] <= 1,
            "angle_jitter": self.angle_jitter >= 0,
            "blend": self.blend in ("screen", "add"),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"RainParams out of range: {', '.join(f'{n}={getattr(self, n)!r}' for n in bad)}")

    def replace(self, **changes) -> RainParams:
        """A copy with some fields changed (a single number ``x`` means the range ``(x, x)``)."""
        for name, value in changes.items():
            if isinstance(value, (int, float)) and isinstance(getattr(self, name, None), tuple):
                changes[name] = (value, value)
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, RainParams] = {
    # Sparse, thin, faint streaks, no veil (about Rain100L).  RGB PSNR of the rainy image
    # on scikit-image's photos: light 25-33 dB (mean 29), medium 18-28 (22), heavy 10-16 (12;
    # Rain100H's inputs: 12.3 dB).
    "light": RainParams(
        layers=(1, 1), density=(0.002, 0.004), length=(10.0, 25.0), width=(1.0, 1.4),
        brightness=(0.4, 0.65), blur=(0.4, 0.7),
    ),
    # Between the two: the built-in demo dataset's rain.
    "medium": RainParams(),
    # Dense, long, wide, bright streaks in several layers under a veil (about Rain100H).
    "heavy": RainParams(
        layers=(2, 3), density=(0.0015, 0.004), length=(25.0, 60.0), width=(1.5, 2.5), angle=(-30.0, 30.0),
        brightness=(0.6, 0.9), blur=(0.6, 1.2), transmission=(0.8, 0.95), airlight=(0.75, 0.95),
    ),
}


def get_preset(name: str) -> RainParams:
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown rain preset {name!r}; valid names: {', '.join(PRESETS)}") from None


def line_kernel(length: float, width: float, angle: float) -> np.ndarray:
    """A float32 kernel holding a streak of ``length`` x ``width`` pixels at ``angle`` degrees from vertical.

    Values are at most 1 (anti-aliased edges are partial) and fall off over
    the last quarter of the length at each end.
    """
    theta = math.radians(angle)
    dy, dx = math.cos(theta), math.sin(theta)
    half = length / 2.0
    radius = int(math.ceil(half + width))
    size = 2 * radius + 1
    kernel = np.zeros((size, size), np.float32)
    shift = 4  # sub-pixel end points (1/16 pixel)
    scale = 1 << shift
    p1 = (round((radius - dx * half) * scale), round((radius - dy * half) * scale))
    p2 = (round((radius + dx * half) * scale), round((radius + dy * half) * scale))
    cv2.line(kernel, p1, p2, 1.0, thickness=max(1, round(width)), lineType=cv2.LINE_AA, shift=shift)
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1].astype(np.float32)
    along = np.abs(xx * dx + yy * dy) / max(half, 1e-6)  # 0 at the centre, 1 at the ends
    taper = np.clip((1.0 - along) / 0.5, 0.0, 1.0)  # flat over the middle half, linear fade to the ends
    return np.minimum(kernel, 1.0) * taper


def streak_layer(
    shape: tuple[int, int],
    rng: np.random.Generator,
    density: float,
    length: float,
    width: float,
    angle: float,
    brightness: float,
    blur: float,
) -> np.ndarray:
    """One float32 (H, W) streak layer in [0, 1] (streaks may enter from outside the frame)."""
    h, w = shape
    kernel = line_kernel(length, width, angle)
    margin = kernel.shape[0] // 2
    noise = rng.random((h + 2 * margin, w + 2 * margin), dtype=np.float32)
    drops = np.where(noise < density, 0.6 + 0.4 * noise / max(density, 1e-12), 0.0).astype(np.float32)
    streaks = cv2.filter2D(drops, -1, kernel, borderType=cv2.BORDER_CONSTANT)
    streaks = streaks[margin : margin + h, margin : margin + w]
    if blur > 0:
        streaks = cv2.GaussianBlur(streaks, (0, 0), blur)
    return np.clip(streaks * brightness, 0.0, 1.0)


def rain_layer(shape: tuple[int, int], rng: np.random.Generator, params: RainParams) -> np.ndarray:
    """All streak layers of one image screened together: float32 (H, W) in [0, 1]."""
    n_layers = int(rng.integers(params.layers[0], params.layers[1] + 1))
    density = rng.uniform(*params.density)
    length = rng.uniform(*params.length)
    width = rng.uniform(*params.width)
    angle = rng.uniform(*params.angle)
    brightness = rng.uniform(*params.brightness)
    blur = rng.uniform(*params.blur)
    clear = np.ones(shape, np.float32)  # product of (1 - S_j)
    for j in range(n_layers):
        depth = 1.0 / (1.0 + 0.6 * j)  # 1 for the nearest layer, smaller farther away
        layer = streak_layer(
            shape,
            rng,
            density=min(1.0, density * (1.0 + j)),
            length=max(2.0, length * depth),
            width=max(1.0, width * depth),
            angle=angle + rng.uniform(-params.angle_jitter, params.angle_jitter),
            brightness=brightness * (0.5 + 0.5 * depth),
            blur=blur * depth,
        )
        clear *= 1.0 - layer
    return 1.0 - clear


def synthesize_rain(
    clean: np.ndarray, rng: np.random.Generator, params: RainParams | str = "medium", **overrides
) -> np.ndarray:
    """A rainy version of ``clean`` (see the module docstring for the model).

    Args:
        clean: (H, W, C) or (H, W) image, uint8, or float in [0, 1].
        rng: the generator every random choice comes from.
        params: a :class:`RainParams` or the name of a preset.
        overrides: fields of ``params`` to change, e.g. ``density=(0.01, 0.02)`` or ``blend="add"``
            (see :meth:`RainParams.replace`).

    Returns:
        The rainy image with the shape and dtype of ``clean``.
    """
    if isinstance(params, str):
        params = get_preset(params)
    if overrides:
        params = params.replace(**overrides)
    if clean.ndim not in (2, 3) or min(clean.shape[:2]) < 1:
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {clean.shape}")
    if clean.dtype == np.uint8:
        base = clean.astype(np.float32) / 255.0
    elif np.issubdtype(clean.dtype, np.floating):
        base = np.clip(clean.astype(np.float32), 0.0, 1.0)
    else:
        raise TypeError(f"expected a uint8 or float image, got {clean.dtype}")
    streaks = rain_layer(clean.shape[:2], rng, params)
    if base.ndim == 3:
        streaks = streaks[:, :, None]
    if params.blend == "screen":
        rainy = 1.0 - (1.0 - base) * (1.0 - streaks)
    else:
        rainy = np.clip(base + streaks, 0.0, 1.0)
    t = rng.uniform(*params.transmission)
    airlight = rng.uniform(*params.airlight)
    if t < 1.0:
        rainy = t * rainy + (1.0 - t) * airlight
    if clean.dtype == np.uint8:
        return np.round(rainy * 255.0).astype(np.uint8)
    return rainy.astype(clean.dtype)
