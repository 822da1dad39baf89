"""PReNet and its variants (Ren et al., "Progressive Image Deraining Networks", CVPR 2019).

Written from the facts of the authors' release (``docs/ARCHITECTURE.md``).  Module names and ``nn.Sequential`` indices match the
release, so its ``net_latest.pth`` files load strictly:

=============  ========  ======================================  ==========
class          LSTM      residual blocks                         parameters
=============  ========  ======================================  ==========
``PReNet``     yes       ``res_conv1`` ... ``res_conv5``          168,963
``PReNet_r``   yes       ``res_conv1`` applied five times          94,979
``PRN``        no        ``res_conv1`` ... ``res_conv5``           95,107
``PRN_r``      no        ``res_conv1`` applied five times          21,123
=============  ========  ======================================  ==========

Each stage sees concat[input, previous estimate] and predicts a residual
added to the input.  ``forward`` returns ``(final, [stage_1, ..., stage_T])``
like the release; the outputs are not clamped (the release's test script
clamps to [0, 1]).
"""
from __future__ import annotations

import torch
from torch import nn

from .options import check_int
from .spec import ModelSpec


def _conv(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, 1, 1)


def _res_block(width: int) -> nn.Sequential:
    """conv, ReLU, conv, ReLU (indices 0 and 2 hold the weights, as in the release)."""
    return nn.Sequential(_conv(width, width), nn.ReLU(), _conv(width, width), nn.ReLU())


class _Progressive(nn.Module):
    """Shared body of the four variants; ``recurrent`` adds the LSTM, ``shared`` reuses one block."""

    # The release's test script feeds torch.Tensor of a numpy-transposed HWC image and saves
    # np.uint8(255 * clip(x, 0, 1)): truncation.
    spec = ModelSpec(quantize="truncate", input_layout="hwc_view")
    recurrent = True
    shared = False

    def __init__(self, stages: int = 6, width: int = 32, num_blocks: int = 5, in_channels: int = 3):
        super().__init__()
        stages = check_int("stages", stages, 1, 100)
        width = check_int("width", width, 1, 512)
        num_blocks = check_int("num_blocks", num_blocks, 1, 64)
        in_channels = check_int("in_channels", in_channels, 3, 3)
        self.stages = stages
        self.num_blocks = num_blocks
        self.conv0 = nn.Sequential(_conv(2 * in_channels, width), nn.ReLU())
        for k in range(1, (1 if self.shared else num_blocks) + 1):
            self.add_module(f"res_conv{k}", _res_block(width))
        if self.recurrent:
            self.conv_i = nn.Sequential(_conv(2 * width, width), nn.Sigmoid())
            self.conv_f = nn.Sequential(_conv(2 * width, width), nn.Sigmoid())
            self.conv_g = nn.Sequential(_conv(2 * width, width), nn.Tanh())
            self.conv_o = nn.Sequential(_conv(2 * width, width), nn.Sigmoid())
        self.conv = nn.Sequential(_conv(width, in_channels))

    def _blocks(self) -> list[nn.Module]:
        if self.shared:
            return [self.res_conv1] * self.num_blocks
        return [getattr(self, f"res_conv{k}") for k in range(1, self.num_blocks + 1)]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        inp = x
        b, _, h, w = x.shape
        width = self.conv0[0].out_channels
        hidden = cell = x.new_zeros(b, width, h, w) if self.recurrent else None
        outputs = []
        blocks = self._blocks()
        for _ in range(self.stages):
            x = self.conv0(torch.cat([inp, x], dim=1))
            if self.recurrent:
                z = torch.cat([x, hidden], dim=1)
                cell = self.conv_f(z) * cell + self.conv_i(z) * self.conv_g(z)
                hidden = self.conv_o(z) * torch.tanh(cell)
                x = hidden
            for block in blocks:
                x = torch.relu(block(x) + x)
            x = self.conv(x) + inp
            outputs.append(x)
        return x, outputs


class PReNet(_Progressive):
    """PReNet: T recurrent stages with a convolutional LSTM and five residual blocks."""


class PReNet_r(_Progressive):  # noqa: N801 - the release's name
    """PReNet with one residual block applied ``num_blocks`` times."""

    shared = True


class PRN(_Progressive):
    """PRN: PReNet without the LSTM."""

    recurrent = False


class PRN_r(_Progressive):  # noqa: N801 - the release's name
    """PRN with one residual block applied ``num_blocks`` times."""

    recurrent = False
    shared = True
