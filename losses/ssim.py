"""Differentiable SSIM for training, and PReNet's negative-SSIM loss.

This is a training loss, not the evaluation metric: it works on float
images in [0, 1] over all channels, and pads the Gaussian window with zeros
to keep the image size (as the ``pytorch_ssim`` module PReNet's release
trains with).  Scores for papers come from the project's MATLAB-exact metric.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.options import check_bool, check_int, check_number


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


class PReNetLoss(nn.Module):
    """Negative SSIM, as PReNet's release trains: loss = -SSIM(final, target).

    ``output`` is PReNet's ``(final, [stage outputs])`` or a tensor.  With
    ``stagewise=True`` the loss is the mean of -SSIM over all stage outputs.
    """

    def __init__(self, stagewise: bool = False, window_size: int = 11, sigma: float = 1.5,
                 data_range: float = 1.0):
        super().__init__()
        self.stagewise = check_bool("stagewise", stagewise)
        self.window_size = check_int("window_size", window_size, 1, 63)
        self.sigma = check_number("sigma", sigma, low_open=True)
        self.data_range = check_number("data_range", data_range, low_open=True)

    def _ssim(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ssim(out, target, self.window_size, self.sigma, self.data_range)

    def forward(self, output, target: torch.Tensor) -> torch.Tensor:
        if isinstance(output, (list, tuple)):
            final = output[0]
            stages = output[1] if len(output) > 1 and isinstance(output[1], (list, tuple)) else [final]
        else:
            final, stages = output, [output]
        if not self.stagewise:
            return -self._ssim(final, target)
        return -torch.stack([self._ssim(s, target) for s in stages]).mean()
