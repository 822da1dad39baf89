"""JORDER-E, the authors' "practical" model (Yang et al., "Joint Rain Detection and Removal from a Single
Image with Contextualized Deep Networks", IEEE TPAMI 2020).

Written from the project's zoo specification (``spec/ZOO.md`` section 4).
Only the ``testing_practical`` architecture of the release (32 features,
3 residual blocks, 2 stages with separate weights) matches the released
``model_practical.pt``; module names follow it, so the bare state dict (132
tensors, 406,784 parameters) loads strictly.

Conventions of the release (in :attr:`JORDER_E.spec`): **RGB on the 0-255
scale** as float32; the output is ``x2 = decoder(...) + X`` (unclamped), which
the test script saves as ``x2.clamp(0, 255).round()`` (half to even).
``forward`` returns ``(x2, x1, mask, level)`` like the release.

Float order matters: every sum is evaluated left to right as written
(``((v + A) + 0.1 Bv) + 0.1 C``); regrouping changes the outputs by ~1e-4.
"""
from __future__ import annotations

import torch
from torch import nn

from .spec import ModelSpec


def _conv(cin: int, cout: int, dilation: int = 1, kernel: int = 3) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, padding=dilation * (kernel // 2), dilation=dilation)


class _ResBlock(nn.Module):
    """Three parallel paths: plain (dilation 1), dilated 2, dilated 2 then 4; the dilated ones weighted 0.1."""

    def __init__(self, width: int, kernel: int = 3):
        super().__init__()
        self.conv1 = _conv(width, width, 1, kernel)
        self.conv2 = _conv(width, width, 1, kernel)
        self.conv3 = _conv(width, width, 2, kernel)
        self.conv4 = _conv(width, width, 2, kernel)
        self.conv5 = _conv(width, width, 2, kernel)
        self.conv6 = _conv(width, width, 4, kernel)

    def forward(self, v: torch.Tensor, link: torch.Tensor | None = None) -> torch.Tensor:
        a = torch.relu(self.conv2(torch.relu(self.conv1(v))))
        b = torch.relu(self.conv4(torch.relu(self.conv3(v))))
        c = torch.relu(self.conv6(torch.relu(self.conv5(v))))
        out = v + a + b * 0.1 + c * 0.1
        return out if link is None else out + link


class _Updater(nn.Module):
    def __init__(self, width: int, num_blocks: int, kernel: int):
        super().__init__()
        for k in range(1, num_blocks + 1):
            self.add_module(f"res{k}", _ResBlock(width, kernel))
        self.num_blocks = num_blocks

    def forward(self, v: torch.Tensor, links: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
        """The outputs of all blocks; block k of stage 2 also adds ``links[k]`` (block k's output in stage 1)."""
        outs = []
        for k in range(self.num_blocks):
            v = getattr(self, f"res{k + 1}")(v, None if links is None else links[k])
            outs.append(v)
        return outs


class _Stage(nn.Module):
    """One stage: encoder, residual updater, rain mask and level estimators that modulate the features, decoder."""

    def __init__(self, width: int = 32, num_blocks: int = 3, kernel: int = 3, channels: int = 3):
        super().__init__()
        quarter, half = width // 4, width // 2
        self.encoder = _conv(2 * channels, width, kernel=kernel)
        self.updater = _Updater(width, num_blocks, kernel)
        self.mask_estimator1 = _conv(width, quarter, kernel=kernel)
        self.mask_estimator2 = _conv(quarter, 2, kernel=kernel)
        self.level_estimator1 = _conv(width, quarter, kernel=kernel)
        self.level_estimator2 = _conv(quarter, channels, kernel=kernel)
        for kind, cin in (("mask", 2), ("level", channels)):
            for wb in ("w", "b"):
                self.add_module(f"{kind}_F_{wb}_encoder1", _conv(cin, half, kernel=kernel))
                self.add_module(f"{kind}_F_{wb}_encoder2", _conv(half, width, kernel=kernel))
        self.decoder = nn.Sequential(_conv(width, width, kernel=kernel), _conv(width, channels, kernel=kernel))

    def _modulation(self, name: str, x: torch.Tensor) -> torch.Tensor:
        enc1, enc2 = getattr(self, f"{name}_encoder1"), getattr(self, f"{name}_encoder2")
        return enc2(torch.relu(enc1(x)))

    def forward(self, x: torch.Tensor, prev: torch.Tensor, previous: tuple | None = None):
        """``previous`` = (block outputs, mask, level) of stage 1, for stage 2; returns (out, feats, mask, level)."""
        links, mask_1, level_1 = previous if previous is not None else (None, None, None)
        feats = self.updater(self.encoder(torch.cat([x, prev], dim=1)), links)
        f = feats[-1]
        mask = self.mask_estimator2(self.mask_estimator1(f))
        level = self.level_estimator2(self.level_estimator1(f))
        if previous is not None:
            mask = mask + mask_1
            level = level + level_1
        f1 = self._modulation("mask_F_b", mask) + f + self._modulation("level_F_b", level)
        f2 = self._modulation("mask_F_w", mask) * f * self._modulation("level_F_w", level)
        return self.decoder(f1 + f2) + x, feats, mask, level


class JORDER_E(nn.Module):  # noqa: N801 - the release's name
    """JORDER-E practical: two stages; stage 2 refines stage 1's output with its features, mask and level.

    ``forward(x)`` takes RGB on the 0-255 scale (any size) and returns
    ``(x2, x1, mask, level)``: the derained image (0-255, unclamped), stage 1's
    image, and stage 2's accumulated rain mask (2 channels) and rain level (3).
    """

    # RGB 0-255 input; the test script saves x2.clamp(0, 255).round() (half to even).
    spec = ModelSpec(input_range=(0.0, 255.0), quantize="round")

    def __init__(self, width: int = 32, num_blocks: int = 3, kernel: int = 3):
        super().__init__()
        self.jorder1 = _Stage(width, num_blocks, kernel)
        self.jorder2 = _Stage(width, num_blocks, kernel)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        x1, feats1, mask1, level1 = self.jorder1(x, x)
        x2, _, mask2, level2 = self.jorder2(x, x1, (feats1, mask1, level1))
        return x2, x1, mask2, level2
