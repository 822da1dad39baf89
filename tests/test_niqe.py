"""NIQE (metrics/niqe.py) and MATLAB's imresize (metrics/imresize.py): pieces, errors, and an independent reference."""
from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import require_shared

from metrics import niqe as N
from metrics.imresize import contributions, cubic, imresize
from metrics.psnr_ssim import _GRAY, rgb_to_gray, rgb_to_y
from utils.image_io import read_image

DATA = Path(__file__).resolve().parent / "data"


def test_imresize_half_is_matlabs_antialiased_bicubic():
    # Halving: 8 taps of 0.5 * cubic(0.5 * d) at d = +-0.5, +-1.5, +-2.5, +-3.5, summing to 1.
    w, idx = contributions(40, 20, 0.5)
    assert w.shape == (20, 8)
    taps = 0.5 * cubic(0.5 * np.array([3.5, 2.5, 1.5, 0.5, -0.5, -1.5, -2.5, -3.5]))
    np.testing.assert_allclose(w[5], taps / taps.sum(), rtol=0, atol=1e-15)
    assert list(idx[5]) == list(range(7, 15))  # output 6 (1-based) is centred at input 11.5 (1-based)
    assert list(idx[0]) == [2, 1, 0, 0, 1, 2, 3, 4]  # mirrored at the edge: 0 -> 1, -1 -> 2, ...
    # The kernel reproduces linear functions: the interior of a ramp lands on the output centres.
    ramp = np.tile(np.arange(64, dtype=np.float64), (9, 1))
    out = imresize(ramp, 0.5)
    assert out.shape == (5, 32)  # ceil(9 / 2) x 32
    np.testing.assert_allclose(out[:, 2:-2], np.tile(2 * np.arange(2, 30) + 0.5, (5, 1)), atol=1e-12)
    np.testing.assert_allclose(imresize(np.full((7, 10), 93.0), 0.5), 93.0, atol=1e-12)
    with pytest.raises(ValueError):
        imresize(np.zeros((4, 4, 3)), 0.5)


def test_aggd_table_lookup_and_side_rule():
    rng = np.random.default_rng(0)
    k = rng.integers(0, N._RATIOS.size - 1, 300)
    mid = (N._RATIOS[k] + N._RATIOS[k + 1]) / 2  # near-ties between neighbours
    r = np.concatenate([rng.uniform(N._RATIOS[0] - 0.01, N._RATIOS[-1] + 0.01, 300), mid, [np.nan] * 3])
    brute = np.argmin((N._RATIOS[None, :] - r[:, None]) ** 2, axis=1)  # MATLAB min(): first of ties, NaN -> 1
    assert np.array_equal(N._nearest_ratio(r), brute)
    assert N._ALPHAS.size == 9801 and N._ALPHAS[0] == 0.2 and N._ALPHAS[-1] == 10.0
    # A Gaussian sample fits alpha = 2 with beta = sigma * sqrt(2) on both sides.
    x = np.random.default_rng(1).normal(0, 3.0, (1, 400_000))
    alpha, bl, br = N.aggd_fit(x)
    assert alpha[0] == pytest.approx(2.0, abs=0.03)
    assert bl[0] == pytest.approx(3 * math.sqrt(2), rel=0.01) and br[0] == pytest.approx(3 * math.sqrt(2), rel=0.01)
    # The NIQE authors' rule: zeros count on neither side; a side without values gives NaN.
    alpha, bl, br = N.aggd_fit(np.array([[-1.0, 1.0, 0.0, 0.0], [1.0, 2.0, 0.0, 3.0]]))
    t = math.sqrt(math.gamma(1 / alpha[0]) / math.gamma(3 / alpha[0]))
    assert bl[0] == pytest.approx(1.0 * t) and br[0] == pytest.approx(1.0 * t)
    assert np.isnan(bl[1]) and not np.isnan(br[1])


def test_local_normalisation_is_the_literal_formula():
    rng = np.random.default_rng(2)
    im = rng.integers(0, 256, (40, 50)).astype(np.float64)
    im[10:30, 5:25] = 235.0  # flat, like the saturated white of heavy rain
    mscn, sigma = N.local_normalise(im)
    # Same as the textbook formula (Gaussian-filtered mean and second moment, replicated borders)...
    g = np.outer(N._WINDOW, N._WINDOW)
    pad = np.pad(im, 3, mode="edge")
    win = np.lib.stride_tricks.sliding_window_view(pad, (7, 7))
    mu = np.einsum("ijkl,kl->ij", win, g)
    sd = np.sqrt(np.abs(np.einsum("ijkl,kl->ij", win * win, g) - mu * mu))
    np.testing.assert_allclose(mscn, (im - mu) / (sd + 1), atol=1e-9)
    np.testing.assert_allclose(sigma, sd, atol=1e-4)  # sqrt of the rounding noise where flat
    # Where the 7x7 neighbourhood is flat the coefficient is 0 up to rounding noise (kept, as MATLAB keeps it).
    assert np.abs(mscn[13:27, 8:22]).max() < 1e-12 and sigma[13:27, 8:22].max() < 1e-5


def test_rgb_to_gray_is_matlabs():
    np.testing.assert_allclose(_GRAY,
                               [0.298936021293775, 0.587043074451121, 0.114020904255103], atol=1e-14)
    img = np.array([[[255, 255, 255], [0, 0, 0], [10, 200, 30], [255, 0, 0]]], np.uint8)
    assert rgb_to_gray(img).tolist() == [[255, 0, 124, 76]]


def test_pristine_model_is_the_shipped_file():
    readme = (N.MODEL_FILE.parent / "README.md").read_text()
    digest = hashlib.sha256(N.MODEL_FILE.read_bytes()).hexdigest()
    assert digest in readme and re.search(r"Apache", readme)
    model = N.pristine_model()
    assert model.mean.shape == (36,) and model.cov.shape == (36, 36)
    assert np.array_equal(model.cov, model.cov.T) and np.all(np.linalg.eigvalsh(model.cov) > 0)
    assert model.mean[0] == pytest.approx(2.6013, abs=1e-4)  # first-scale AGGD shape of pristine photos
    assert model.block_size == (96, 96) and model.sharpness_threshold == 0.0


def test_undefined_images_are_named_errors():
    rng = np.random.default_rng(3)
    with pytest.raises(N.NIQEError, match="at least two blocks"):
        N.niqe(rng.integers(0, 256, (150, 180, 3), dtype=np.uint8))  # one block
    flat = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
    flat[:110, :110] = 128  # a whole block (and its border) flat: no negative coefficients
    with pytest.raises(N.NIQEError, match="flat or saturated"):
        N.niqe(flat)
    with pytest.raises(ValueError, match="channel"):
        N.niqe(flat, channel="r")
    with pytest.raises(TypeError):
        N.niqe(flat.astype(np.float32))


def test_sharpness_threshold_drops_blurry_blocks():
    rng = np.random.default_rng(4)
    im = np.full((192, 288), 100.0) + rng.normal(0, 1, (192, 288))
    im[:, 192:] += rng.normal(0, 40, (192, 96))  # one column of sharp blocks
    every = N.niqe_features(im)
    sharp = N.niqe_features(im, N.NIQEModel(N.pristine_model().mean, N.pristine_model().cov, N.pristine_model().window, (96, 96), 0.5))
    assert every.shape == (6, 36) and sharp.shape == (2, 36)


@pytest.mark.parametrize("name", json.loads((DATA / "niqe_reference.json").read_text())["niqe"])
def test_equals_independent_reference(name):
    """BasicSR's NIQE (float64) on real rainy images as they are: equal to 1e-9 (provenance in the JSON)."""
    ref = json.loads((DATA / "niqe_reference.json").read_text())["niqe"][name]
    img = read_image(require_shared("data", *name.split("/")))
    y = rgb_to_y(img).astype(np.float64)
    assert N.niqe_score(N.niqe_features(y)) == pytest.approx(ref, abs=1e-9)
    # Y by default, gray on request; both in a plausible range for photos.
    assert N.niqe(img) == N.niqe_score(N.niqe_features(y))
    assert 2 < N.niqe(img, channel="gray") < 25
