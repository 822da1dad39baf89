"""Synthetic rain: determinism, the compositing model, presets' strength, shapes and dtypes."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from data.rain_synthesis import PRESETS, RainParams, get_preset, line_kernel, rain_layer, synthesize_rain


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * math.log10(255.0**2 / mse)


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    from skimage import data as skdata

    small = lambda img: cv2.resize(img, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)  # noqa: E731
    return [small(skdata.astronaut()), small(skdata.coffee())]


def test_deterministic_given_the_generator(photos):
    a = synthesize_rain(photos[0], np.random.default_rng(3), "medium")
    b = synthesize_rain(photos[0], np.random.default_rng(3), "medium")
    c = synthesize_rain(photos[0], np.random.default_rng(4), "medium")
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("preset,low,high", [("light", 24.0, 36.0), ("medium", 17.0, 30.0), ("heavy", 8.0, 18.0)])
def test_preset_strength(photos, preset, low, high):
    scores = [psnr(img, synthesize_rain(img, np.random.default_rng(seed), preset))
              for img in photos for seed in range(3)]
    assert low < min(scores) and max(scores) < high, scores


def test_presets_are_ordered(photos):
    mean = {name: np.mean([psnr(img, synthesize_rain(img, np.random.default_rng(s), name))
                           for img in photos for s in range(3)]) for name in PRESETS}
    assert mean["heavy"] + 5 < mean["medium"] < mean["light"] - 3, mean


def test_screen_blend_only_brightens_and_adds_streaks(photos):
    clean = photos[1]
    rainy = synthesize_rain(clean, np.random.default_rng(0), "light")
    assert (rainy >= clean).all()  # screen blending without a veil never darkens
    changed = (rainy.astype(int) - clean).max(axis=2) > 10
    assert 0.01 < changed.mean() < 0.5  # sparse streaks, not a uniform change
    added = synthesize_rain(clean, np.random.default_rng(0), "light", blend="add")
    assert (added >= clean).all() and (added.astype(int) - clean).sum() >= (rainy.astype(int) - clean).sum()


def test_no_drops_and_veil_follow_the_model():
    clean = np.random.default_rng(1).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    assert np.array_equal(synthesize_rain(clean, np.random.default_rng(0), density=0.0), clean)
    veiled = synthesize_rain(clean, np.random.default_rng(0), density=0.0, transmission=0.5, airlight=0.8)
    assert np.abs(veiled.astype(float) - (0.5 * clean + 0.5 * 0.8 * 255)).max() <= 0.5 + 1e-6


def test_shape_and_dtype_preserved():
    rng = np.random.default_rng(0)
    base = rng.random((37, 53, 3))
    for clean in (np.round(base * 255).astype(np.uint8), base.astype(np.float32), base, base[:, :, 0]):
        rainy = synthesize_rain(clean, np.random.default_rng(1), "heavy")
        assert rainy.shape == clean.shape and rainy.dtype == clean.dtype
        if rainy.dtype != np.uint8:
            assert 0.0 <= rainy.min() and rainy.max() <= 1.0 and not np.allclose(rainy, clean)
    with pytest.raises(TypeError):
        synthesize_rain(np.zeros((8, 8, 3), np.int32), rng)


def shifted_correlation(layer: np.ndarray, dy: int, dx: int) -> float:
    """Correlation of a zero-mean copy of ``layer`` with itself shifted by (dy, dx), away from the borders."""
    layer = layer - layer.mean()
    shifted = np.roll(layer, (dy, dx), axis=(0, 1))
    return float((layer[20:-20, 20:-20] * shifted[20:-20, 20:-20]).mean())


def test_streaks_follow_the_angle():
    for angle in (0.0, 30.0, -45.0):
        params = RainParams(layers=(1, 1), angle=(angle, angle), angle_jitter=0.0, length=(30.0, 30.0),
                            density=(0.002, 0.002), blur=(0.0, 0.0))
        layer = rain_layer((200, 200), np.random.default_rng(0), params)
        t = math.radians(angle)
        along = shifted_correlation(layer, round(6 * math.cos(t)), round(6 * math.sin(t)))
        across = shifted_correlation(layer, round(-6 * math.sin(t)), round(6 * math.cos(t)))
        assert along > 5 * abs(across), (angle, along, across)


def test_line_kernel():
    k = line_kernel(21, 1, 0.0)
    assert k.dtype == np.float32 and k.max() <= 1.0 and k.shape[0] % 2 == 1
    centre = k.shape[1] // 2
    assert k[:, centre].sum() > 0.9 * k.sum()  # vertical
    assert line_kernel(21, 1, 90.0)[centre].sum() > 0.9 * line_kernel(21, 1, 90.0).sum()  # horizontal
    assert k[centre, centre] == pytest.approx(1.0) and k[1, centre] < 0.5  # fades at the ends


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="density"):
        RainParams(density=(0.5, 0.1))
    with pytest.raises(ValueError, match="brightness"):
        RainParams(brightness=(0.5, 1.5))
    with pytest.raises(ValueError, match="blend"):
        RainParams(blend="multiply")
    with pytest.raises(KeyError) as err:
        get_preset("drizzle")
    assert all(name in str(err.value) for name in PRESETS)
    assert get_preset("heavy").replace(density=0.01).density == (0.01, 0.01)
