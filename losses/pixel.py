"""Pixel-space losses: L1, Charbonnier, Laplacian-edge Charbonnier and MSPFN's combination.

Every loss takes ``(output, target)`` where ``output`` may be a model's raw
output; a list/tuple is reduced to its first (full-resolution) item.
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


class MSPFNLoss(nn.Module):
    """MSPFN's training loss: Charbonnier + 0.05 x Laplacian-edge Charbonnier on the derained image.

    The release computed it on pixels scaled to [-1, 1]; on [0, 1] images
    the same eps weighs small errors relatively more.
    """

    def __init__(self, charbonnier_weight: float = 1.0, edge_weight: float = 0.05, eps: float = 1e-3):
        super().__init__()
        self.charbonnier_weight = check_number("charbonnier_weight", charbonnier_weight)
        self.edge_weight = check_number("edge_weight", edge_weight)
        self.eps = check_number("eps", eps)

    def forward(self, output, target: torch.Tensor) -> torch.Tensor:
        out = primary_output(output)
        loss = self.charbonnier_weight * charbonnier(out, target, self.eps)
        if self.edge_weight:
            loss = loss + self.edge_weight * charbonnier(laplacian(out), laplacian(target), self.eps)
        return loss
