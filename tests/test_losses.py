"""Losses: values against hand computations, model-output handling, registry."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from losses import LOSSES, build_loss, loss_names
from losses.terms import charbonnier, gaussian_window, laplacian, laplacian_kernel, ssim, ssim_map


def _np_half(a: np.ndarray) -> np.ndarray:
    """Bilinear x0.5 (align_corners=False) of even sizes = mean of each 2x2 block."""
    return 0.25 * (a[..., 0::2, 0::2] + a[..., 1::2, 0::2] + a[..., 0::2, 1::2] + a[..., 1::2, 1::2])


def _np_quarter(a: np.ndarray) -> np.ndarray:
    """Bilinear x0.25 (align_corners=False): sample point 4d + 1.5, i.e. the mean of pixels 4d+1, 4d+2."""
    rows = 0.5 * (a[..., 1::4, :] + a[..., 2::4, :])
    return 0.5 * (rows[..., 1::4] + rows[..., 2::4])


def _np_fft_l1(a: np.ndarray, b: np.ndarray) -> float:
    fa, fb = np.fft.fft2(a), np.fft.fft2(b)
    return 0.5 * (np.abs(fa.real - fb.real).mean() + np.abs(fa.imag - fb.imag).mean())


def _outputs(shape=(2, 3, 8, 12)):
    b, c, h, w = shape
    return [torch.rand(b, c, h, w), torch.rand(b, c, h // 2, w // 2), torch.rand(b, c, h // 4, w // 4)]


def test_dmsr_loss_equals_hand_computation():
    torch.manual_seed(1)
    outs, gt = _outputs(), torch.rand(2, 3, 8, 12)
    g = gt.double().numpy()
    gts = [g, _np_half(g), _np_quarter(g)]
    o = [t.double().numpy() for t in outs]
    l1 = sum(np.abs(a - b).mean() for a, b in zip(o, gts))
    fft = sum(_np_fft_l1(a, b) for a, b in zip(o, gts))
    loss = build_loss("DMSRLoss")(outs, gt)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(l1 + 0.1 * fft, rel=1e-5)
    weighted = build_loss("DMSRLoss", l1_weight=2.0, fft_weight=0.0)(outs, gt)
    assert weighted.item() == pytest.approx(2 * l1, rel=1e-5)
    single = build_loss("DMSRLoss")(outs[0], gt)  # a plain tensor is one full-resolution scale
    assert single.item() == pytest.approx(np.abs(o[0] - g).mean() + 0.1 * _np_fft_l1(o[0], g), rel=1e-5)


def test_dmsr_loss_zero_for_identical_images_and_differentiable():
    gt = torch.rand(1, 3, 16, 16)
    targets = [gt, torch.from_numpy(_np_half(gt.numpy())), torch.from_numpy(_np_quarter(gt.numpy()))]
    assert build_loss("DMSRLoss")(targets, gt).item() == pytest.approx(0.0, abs=1e-6)
    outs = [t.clone().requires_grad_(True) for t in _outputs((1, 3, 16, 16))]
    build_loss("DMSRLoss")(outs, gt).backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in outs)


def test_dmsr_loss_runs_fft_in_float32_under_autocast():
    outs, gt = _outputs(), torch.rand(2, 3, 8, 12)
    ref = build_loss("DMSRLoss")(outs, gt)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = build_loss("DMSRLoss")([t.bfloat16() for t in outs], gt)
    assert low.dtype == torch.float32
    assert low.item() == pytest.approx(ref.item(), rel=2e-2)  # only the bf16 rounding of the inputs differs


def test_charbonnier_on_known_numbers():
    x = torch.tensor([0.0, 1e-3, 0.3, -0.4])
    y = torch.zeros(4)
    want = (1e-3 + math.sqrt(2e-6) + math.sqrt(0.09 + 1e-6) + math.sqrt(0.16 + 1e-6)) / 4
    assert charbonnier(x, y).item() == pytest.approx(want, rel=1e-6)
    assert build_loss("Charbonnier")(x.view(1, 1, 2, 2), y.view(1, 1, 2, 2)).item() == pytest.approx(want, rel=1e-6)
    assert build_loss("Charbonnier", eps=0.0)(x, y).item() == pytest.approx(0.701 / 4, rel=1e-6)  # = L1
    assert build_loss("Charbonnier")(y, y).item() == pytest.approx(1e-3, rel=1e-6)  # the floor is eps


def test_laplacian_kernel_and_filter():
    k = laplacian_kernel(2)
    assert k.shape == (2, 1, 3, 3)
    assert torch.equal(k[1, 0], torch.tensor([[-1.0, -1, -1], [-1, 8, -1], [-1, -1, -1]]))
    impulse = torch.zeros(1, 2, 5, 5)
    impulse[0, 1, 2, 2] = 1.0
    out = laplacian(impulse)
    assert torch.equal(out[0, 1, 1:4, 1:4], k[1, 0]) and out[0, 0].abs().sum() == 0  # channels do not mix
    const = torch.full((1, 3, 6, 7), 0.7)
    lap = laplacian(const)
    assert lap[..., 1:-1, 1:-1].abs().max() < 1e-6  # flat interior
    assert lap[0, 0, 0, 0].item() == pytest.approx(0.7 * 8 - 0.7 * 3)  # zero padding at the corner


def test_edge_and_mspfn_losses():
    torch.manual_seed(2)
    out, gt = torch.rand(2, 3, 9, 10), torch.rand(2, 3, 9, 10)
    edge = charbonnier(laplacian(out), laplacian(gt)).item()
    assert build_loss("EdgeLoss")(out, gt).item() == pytest.approx(edge, rel=1e-6)
    assert build_loss("EdgeLoss")(gt + 0.2, gt).item() < build_loss("EdgeLoss")(out, gt).item()
    want = charbonnier(out, gt).item() + 0.05 * edge
    assert build_loss("MSPFNLoss")(out, gt).item() == pytest.approx(want, rel=1e-6)
    assert build_loss("MSPFNLoss")([out, out[..., ::2, ::2]], gt).item() == pytest.approx(want, rel=1e-6)
    assert build_loss("MSPFNLoss", edge_weight=0.0)(out, gt).item() == pytest.approx(
        charbonnier(out, gt).item(), rel=1e-6
    )


def test_l1_uses_first_output():
    out, gt = torch.tensor([[[[0.0, 1.0]]]]), torch.tensor([[[[0.5, 0.5]]]])
    assert build_loss("L1")(out, gt).item() == pytest.approx(0.5)
    assert build_loss("L1")((out, [out]), gt).item() == pytest.approx(0.5)


def test_ssim_matches_skimage_away_from_borders():
    rng = np.random.default_rng(0)
    a = rng.random((24, 28, 3))
    b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1)
    _, ref = structural_similarity(
        a, b, channel_axis=2, data_range=1.0, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, full=True,
    )
    ta = torch.from_numpy(a.transpose(2, 0, 1))[None]
    tb = torch.from_numpy(b.transpose(2, 0, 1))[None]
    got = ssim_map(ta, tb).numpy()[0].transpose(1, 2, 0)
    np.testing.assert_allclose(got[5:-5, 5:-5], ref[5:-5, 5:-5], atol=1e-10)
    w = gaussian_window()
    assert w.shape == (11, 11) and w.sum().item() == pytest.approx(1.0) and w[5, 5] == w.max()
    assert ssim(ta, ta).item() == pytest.approx(1.0, abs=1e-6)


def test_prenet_loss_final_and_stagewise():
    torch.manual_seed(3)
    gt = torch.rand(1, 3, 20, 20)
    stages = [(gt + s * torch.randn_like(gt)).clamp(0, 1) for s in (0.3, 0.1, 0.0)]
    output = (stages[-1], stages)
    loss = build_loss("PReNetLoss")
    assert loss(output, gt).item() == pytest.approx(-1.0, abs=1e-6)  # final stage is the target
    want = -sum(ssim(s, gt).item() for s in stages) / 3
    assert build_loss("PReNetLoss", stagewise=True)(output, gt).item() == pytest.approx(want, rel=1e-6)
    assert -1.0 < want < -0.3
    x = stages[0].clone().requires_grad_(True)
    loss(x, gt).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_registry():
    assert loss_names() == sorted(["L1", "Charbonnier", "EdgeLoss", "MSPFNLoss", "DMSRLoss", "PReNetLoss"])
    assert all(isinstance(build_loss(n), torch.nn.Module) for n in LOSSES)
    with pytest.raises(KeyError) as err:
        build_loss("SSIM")
    assert "unknown loss 'SSIM'" in str(err.value)
    assert all(n in str(err.value) for n in loss_names())
    with pytest.raises(TypeError, match="bad options for loss L1"):
        build_loss("L1", weight=2.0)
