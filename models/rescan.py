"""RESCAN: Recurrent Squeeze-and-Excitation Context Aggregation Net (Li et al., ECCV 2018).

Written from the project's specification of the authors' release and of the
weights the BRN authors retrained with it (RecDerain ``logs/*/RESCAN/latest``,
a ``{'net': state_dict, ...}`` dict the checkpoint loader unwraps).  The
configuration is the release's: width 24, five ConvGRU units with SE
(dilations 1, 1, 2, 4, 8), four stages, the ``'Full'`` frame.  None of the
stage count, frame or dilations is stored in the weights.

Each stage runs the five units (each keeping its own hidden state from the
previous stage; the first stage has *no* state, which is not the same as a
zero state) and a decoder that predicts the rain layer; the next stage sees
the input minus that rain.  The network sees **BGR** in [0, 1], as the
release reads images with OpenCV and never swaps channels.

The release's network returns the rain layers and its test script subtracts
them; here ``forward`` returns ``(derained, [derained per stage], [rain per
stage])`` so the restored image comes first (the output contract of
:mod:`models.spec`).  ``derained = input - rain`` is computed exactly as the
release's script does.  149,823 parameters.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .spec import ModelSpec

LRELU_SLOPE = 0.2


class SqueezeExcitation(nn.Module):
    """``v * sigmoid(fc2(relu(fc1(mean(v)))))``; the hidden width is ``hidden`` itself (6), as in the release."""

    def __init__(self, channels: int, hidden: int = 6):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels), nn.Sigmoid())

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        s = self.fc(F.adaptive_avg_pool2d(v, 1).flatten(1))
        return v * s[:, :, None, None]


class ConvGRU(nn.Module):
    """A convolutional GRU with SE and LeakyReLU on its output, which is also its new state.

    Input convolutions ``conv_x*`` are dilated by ``dilation``; the hidden
    convolutions ``conv_h*`` never are.
    """

    def __init__(self, in_channels: int, channels: int, dilation: int):
        super().__init__()

        def conv_x() -> nn.Conv2d:
            return nn.Conv2d(in_channels, channels, 3, padding=dilation, dilation=dilation)

        def conv_h() -> nn.Conv2d:
            return nn.Conv2d(channels, channels, 3, padding=1)

        self.conv_xz, self.conv_xr, self.conv_xn = conv_x(), conv_x(), conv_x()
        self.conv_hz, self.conv_hr, self.conv_hn = conv_h(), conv_h(), conv_h()
        self.se = SqueezeExcitation(channels)

    def forward(self, x: torch.Tensor, h: torch.Tensor | None) -> torch.Tensor:
        if h is None:  # first stage: no state at all (conv_xr and conv_h* unused)
            z = torch.sigmoid(self.conv_xz(x))
            n = torch.tanh(self.conv_xn(x))
            h = z * n
        else:
            z = torch.sigmoid(self.conv_xz(x) + self.conv_hz(h))
            r = torch.sigmoid(self.conv_xr(x) + self.conv_hr(h))
            n = torch.tanh(self.conv_xn(x) + self.conv_hn(r * h))
            h = (1 - z) * h + z * n
        return F.leaky_relu(self.se(h), LRELU_SLOPE)


class RESCAN(nn.Module):
    """RESCAN (GRU units, SE on, 'Full' frame).

    Args:
        stages: recurrent stages (4 in the release).
        channels: feature width (24).
        dilations: dilation of each unit's input convolutions; the unit count
            follows from it ((1, 1, 2, 4, 8): five units, the release's depth 7).
    """

    # cv2.imread -> BGR float / 255; saves clip((O - rain) * 255, 0, 255) with
    # cv2.imwrite of the float array, i.e. rounding half to even.
    spec = ModelSpec(channel_order="BGR", quantize="round")

    def __init__(self, stages: int = 4, channels: int = 24, dilations: tuple[int, ...] = (1, 1, 2, 4, 8)):
        super().__init__()
        if stages < 1 or channels < 1 or not dilations or min(dilations) < 1:
            raise ValueError(f"bad RESCAN options: stages={stages}, channels={channels}, dilations={dilations}")
        self.stages = stages
        self.rnns = nn.ModuleList(
            ConvGRU(3 if j == 0 else channels, channels, d) for j, d in enumerate(dilations)
        )
        self.dec = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            SqueezeExcitation(channels),
            nn.LeakyReLU(LRELU_SLOPE),
            nn.Conv2d(channels, 3, 1),
        )

    def forward(self, inp: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        states: list[torch.Tensor | None] = [None] * len(self.rnns)
        rains, derained = [], []
        x = inp
        for _ in range(self.stages):
            for j, unit in enumerate(self.rnns):
                x = states[j] = unit(x, states[j])
            rain = self.dec(x)
            rains.append(rain)
            x = inp - rain
            derained.append(x)
        return derained[-1], derained, rains
