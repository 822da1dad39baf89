"""DMSR's loss: L1 at the three output scales plus 0.1 x L1 between their 2-D FFTs."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.options import check_number

from .terms import fft_features


class DMSRLoss(nn.Module):
    """L = l1_weight * sum_s L1(out_s, gt_s) + fft_weight * sum_s L1(F(out_s), F(gt_s)).

    ``output`` is DMSR's list [full, half, quarter] (any number of scales,
    or a single tensor).  ``gt_s`` is the clean image resized bilinearly
    (``align_corners=False``, no antialiasing) to each output's size, which
    for sizes divisible by 4 is exactly ``F.interpolate`` with scale 0.5 and
    0.25.  Everything is computed in float32 with autocast off, so the FFT
    works under mixed precision.
    """

    def __init__(self, l1_weight: float = 1.0, fft_weight: float = 0.1):
        super().__init__()
        self.l1_weight = check_number("l1_weight", l1_weight)
        self.fft_weight = check_number("fft_weight", fft_weight)

    def forward(self, output, target: torch.Tensor) -> torch.Tensor:
        outputs = list(output) if isinstance(output, (list, tuple)) else [output]
        with torch.autocast(device_type=target.device.type, enabled=False):
            target = target.float()
            loss = target.new_zeros(())
            for out in outputs:
                out = out.float()
                if out.shape[-2:] == target.shape[-2:]:
                    gt = target
                else:
                    gt = F.interpolate(target, size=out.shape[-2:], mode="bilinear", align_corners=False)
                if self.l1_weight:
                    loss = loss + self.l1_weight * F.l1_loss(out, gt)
                if self.fft_weight:
                    loss = loss + self.fft_weight * F.l1_loss(fft_features(out), fft_features(gt))
        return loss
