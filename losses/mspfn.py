"""MSPFN's loss (Jiang et al., CVPR 2020): Charbonnier plus 0.05 x Laplacian-edge Charbonnier."""
from __future__ import annotations

import torch
from torch import nn

from models import primary_output
from models.options import check_number

from .terms import charbonnier, laplacian


class MSPFNLoss(nn.Module):
    """MSPFN's training loss: Charbonnier + 0.05 x Laplacian-edge Charbonnier on the derained image.

    The release computed it on pixels scaled to [-1, 1]; on [0, 1] images
    the same eps weighs small errors relatively more.  On the release's own
    (x_clean, imitation) it gives the release's ``train_loss``, and with
    ``charbonnier_weight=0, edge_weight=1`` its ``edge_loss`` (golden test).
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
