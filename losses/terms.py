"""The terms the papers' losses are made of: L1, Charbonnier, Laplacian edges, FFT features, SSIM.

Every loss module takes ``(output, target)`` where ``output`` may be a
model's raw output; a list/tuple is reduced to its first (full-resolution)
item.  The SSIM here is a training loss, not the evaluation metric: it works
on float images in [0, 1] over all channels and pads the Gaussian window
with zeros to keep the image size (as the ``pytorch_ssim`` module PReNet's
release trains with); scores for papers come from ``metrics/``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models import primary_output
from models.options import check_number


def charbonnier(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """mean(sqrt((x - y)^2 + eps^2)); eps = 1e-3 gives MSPFN's sqrt((x - y)^2 + 1e-6)."""
    diff = x.float() - y.float()
    return torch.sqrt(diff * diff + eps * eps).mean()


def laplacian_kernel(channels: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """The 3x3 Laplacian (centre 8, neighbours -1) as a depthwise kernel (channels, 1, 3, 3)."""
    k = -torch.ones(3, 3, dtype=dtype, device=device)
    k[1, 1] = 8.0
    return k.expand(channels, 1, 3, 3).contiguous()


def laplacian(x: torch.Tensor) -> torch.Tensor:
    """Filter each channel with the 3x3 Laplacian, zero padding ('same' size, as TF 'SAME')."""
    x = x.float()
    return F.conv2d(x, laplacian_kernel(x.shape[1], x.dtype, x.device), padding=1, groups=x.shape[1])


class L1Loss(nn.Module):
    """Mean absolute error on the full-resolution output."""

    def forward(self, output, target: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(primary_output(output).float(), target.float())


class CharbonnierLoss(nn.Module):
    """Charbonnier loss mean(sqrt((x - y)^2 + eps^2)) on the full-resolution output."""

    def __init__(self, eps: float = 1e-3):
        super().__init__()
        self.eps = check_number("eps", eps)

    def forward(self, output, target: torch.Tensor) -> torch.Tensor:
        return charbonnier(primary_output(output), target, self.eps)


class EdgeLoss(nn.Module):
    """Charbonnier loss between the per-channel 3x3 Laplacians of output and target."""

    def __init__(self, eps: float = 1e-3):
        super().__init__()
        self.eps = check_number("eps", eps)

    def forward(self, output, target: torch.Tensor) -> torch.Tensor:
        return charbonnier(laplacian(primary_output(output)), laplacian(target), self.eps)


def fft_features(x: torch.Tensor) -> torch.Tensor:
    """Real and imaginary parts of the 2-D FFT (default norm) stacked in a last axis, in float32."""
    return torch.view_as_real(torch.fft.fft2(x.float()))


def gaussian_window(size: int = 11, sigma: float = 1.5, dtype=torch.float32, device=None) -> torch.Tensor:
    """Normalised 2-D Gaussian window (size, size)."""
    coords = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g).to(dtype)


def ssim_map(x: torch.Tensor, y: torch.Tensor, window_size: int = 11, sigma: float = 1.5,
             data_range: float = 1.0, k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Per-pixel, per-channel SSIM of (B, C, H, W) images; Gaussian window, zero 'same' padding."""
    dtype = torch.promote_types(torch.promote_types(x.dtype, y.dtype), torch.float32)  # half -> float32
    x, y = x.to(dtype), y.to(dtype)
    channels = x.shape[1]
    w = gaussian_window(window_size, sigma, x.dtype, x.device).expand(channels, 1, window_size, window_size)
    pad = window_size // 2

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, w, padding=pad, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x * mu_x
    var_y = blur(y * y) - mu_y * mu_y
    cov = blur(x * y) - mu_x * mu_y
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return num / den


def ssim(x: torch.Tensor, y: torch.Tensor, window_size: int = 11, sigma: float = 1.5,
         data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM over batch, channels and pixels (as ``pytorch_ssim.SSIM`` with size_average)."""
    return ssim_map(x, y, window_size, sigma, data_range).mean()
