"""BRN: Bilateral Recurrent Network (Ren et al., "Single Image Deraining Using Bilateral Recurrent Network", TIP 2020).

Written from the project's specification of the authors' release
(RecDerain).  Module names and ``nn.Sequential`` indices match the release,
so its ``net_latest.pth`` files load strictly once DataParallel's
``module.`` prefix is stripped (the checkpoint loader does that).

Two coupled recurrent branches run ``stages`` times (8 at test time in the
release, although its class default is 4; the count is not stored in the
weights).  The *rain* branch sees ``[input, previous rain]`` and predicts
the rain layer ``r``; the *background* branch sees ``[input, previous
background, r]`` and predicts the clean image ``x`` directly (no residual
to the input).  Each branch has its own convolutional LSTM whose gates also
read the other branch's hidden state.  The rain branch uses three residual
blocks, the background branch five; ``res_conv4_r``/``res_conv5_r`` exist in
the released files (and here, for strict loading) but are never called.

``forward`` returns ``(x, [x per stage], r, [r per stage])`` like the
release; nothing is clamped.  412,518 parameters (36,992 of them unused).
"""
from __future__ import annotations

import torch
from torch import nn

from .spec import ModelSpec


def _conv(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, 1, 1)


def _res_block(width: int) -> nn.Sequential:
    """conv, ReLU, conv, ReLU (weights at indices 0 and 2, as in the release)."""
    return nn.Sequential(_conv(width, width), nn.ReLU(), _conv(width, width), nn.ReLU())


def _gate(in_channels: int, width: int, act: nn.Module) -> nn.Sequential:
    return nn.Sequential(_conv(in_channels, width), act)


class BRN(nn.Module):
    """Bilateral recurrent network: a rain branch and a background branch, ``stages`` recurrent steps.

    Args:
        stages: recurrent steps (8 in the release's test and training scripts).
        width: feature channels (32 in the release).
    """

    # The release reads with OpenCV, swaps to RGB, divides by 255, feeds torch.Tensor of the numpy-transposed
    # image, and saves np.uint8(255 * clip(x, 0, 1)) swapped back to BGR: truncation.
    spec = ModelSpec(quantize="truncate", input_layout="hwc_view")

    RAIN_BLOCKS = 3  # res_conv1_r .. res_conv3_r are called; res_conv4_r, res_conv5_r are not
    BACKGROUND_BLOCKS = 5

    def __init__(self, stages: int = 8, width: int = 32):
        super().__init__()
        if stages < 1 or width < 1:
            raise ValueError(f"stages and width must be positive, got {stages} and {width}")
        self.stages = stages
        self.width = width
        # Attribute order = the release's state-dict order (background branch first).
        # The background branch sees [input, x, r] (9 channels), the rain branch [input, r] (6).
        for suffix, in_channels in (("", 9), ("_r", 6)):
            self.add_module(f"conv0{suffix}", nn.Sequential(_conv(in_channels, width), nn.ReLU()))
            for k in range(1, 6):
                self.add_module(f"res_conv{k}{suffix}", _res_block(width))
            for gate, act in (("i", nn.Sigmoid()), ("f", nn.Sigmoid()), ("g", nn.Tanh()), ("o", nn.Sigmoid())):
                self.add_module(f"conv_{gate}{suffix}", _gate(3 * width, width, act))
            self.add_module(f"conv{suffix}", nn.Sequential(_conv(width, 3)))

    def _lstm(self, z: torch.Tensor, cell: torch.Tensor, suffix: str) -> tuple[torch.Tensor, torch.Tensor]:
        """One convolutional LSTM step on the concatenated gate input ``z``; returns ``(hidden, cell)``."""
        i = getattr(self, f"conv_i{suffix}")(z)
        f = getattr(self, f"conv_f{suffix}")(z)
        g = getattr(self, f"conv_g{suffix}")(z)
        o = getattr(self, f"conv_o{suffix}")(z)
        cell = f * cell + i * g
        return o * torch.tanh(cell), cell

    def _residual(self, y: torch.Tensor, names: list[str]) -> torch.Tensor:
        for name in names:
            y = torch.relu(getattr(self, name)(y) + y)
        return y

    def forward(
        self, inp: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor, list[torch.Tensor]]:
        b, _, h, w = inp.shape
        hidden = cell = hidden_r = cell_r = inp.new_zeros(b, self.width, h, w)
        x = r = inp
        rain_blocks = [f"res_conv{k}_r" for k in range(1, self.RAIN_BLOCKS + 1)]
        background_blocks = [f"res_conv{k}" for k in range(1, self.BACKGROUND_BLOCKS + 1)]
        xs, rs = [], []
        for _ in range(self.stages):
            # Rain branch: gates read [features, own hidden, background hidden of the previous stage].
            a = self.conv0_r(torch.cat([inp, r], dim=1))
            hidden_r, cell_r = self._lstm(torch.cat([a, hidden_r, hidden], dim=1), cell_r, "_r")
            r = self.conv_r(self._residual(hidden_r, rain_blocks))
            rs.append(r)
            # Background branch: sees this stage's rain; gates read [features, own hidden, new rain hidden].
            a = self.conv0(torch.cat([inp, x, r], dim=1))
            hidden, cell = self._lstm(torch.cat([a, hidden, hidden_r], dim=1), cell, "")
            x = self.conv(self._residual(hidden, background_blocks))
            xs.append(x)
        return x, xs, r, rs
