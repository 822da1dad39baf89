"""PReNet's loss (Ren et al., CVPR 2019): negative SSIM of the final (or every) stage."""
from __future__ import annotations

import torch
from torch import nn

from models.options import check_bool, check_int, check_number

from .terms import ssim


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
