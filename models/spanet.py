"""SPANet (Wang et al., "Spatial Attentive Single-Image Deraining with a High Quality Real Rain Dataset", CVPR 2019).

Written from the project's zoo specification (``spec/ZOO.md`` section 3).
Module names match the release, so its checkpoints (``{'net': ...}``, with or
without ``module.``) load strictly: 79 tensors, 283,716 parameters.

Conventions of the release (in :attr:`SPANet.spec`): the network takes
**BGR** in [0, 1] and returns the derained BGR image directly (no global
residual); the test script saves ``cv2.imwrite(np.clip(out, 0, 1) * 255)``,
i.e. round-half-to-even.  The release's forward returns ``(mask, out)``;
this one returns ``(out, mask)`` so the image comes first (the output
contract of :mod:`models.spec`); ``mask`` is the first spatial-attention map.

The IRNN - a CUDA kernel in the release - is :func:`irnn` here: plain
PyTorch that scans one spatial axis and is vectorised over the others, with
the CPU arithmetic of separate ops, ``relu((prev * w + b) + x)`` rounded after
each operation.  (The release's kernel fuses ``prev * w + b`` into one FMA on
the GPU, so its GPU outputs differ from these by up to ~2e-6.)
"""
from __future__ import annotations

import torch
from torch import nn

from .spec import ModelSpec

DIRECTIONS = ("up", "right", "down", "left")  # the IRNN's output (and concatenation) order


def _scan(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, reverse: bool,
          out: torch.Tensor | None = None) -> torch.Tensor:
    """One direction along dim -2 of ``x`` (..., L, N); ``w``, ``b`` broadcast over a step's (..., N) slice.

    ``h[first] = relu(x[first])``, then ``h[k] = relu((h[prev] * w + b) + x[k])``
    from the first row to the last (``reverse``: last to first), every op
    rounded on its own.  Each step is a few ops on one whole row of every
    channel (rows are contiguous).  With ``out`` (no autograd) the rows are
    written into it in place; otherwise they are stacked.
    """
    order = range(x.shape[-2] - 1, -1, -1) if reverse else range(x.shape[-2])
    if out is None:
        rows: list = [None] * len(order)
        prev = None
        for k in order:
            prev = torch.relu(x[..., k, :]) if prev is None else torch.relu(prev * w + b + x[..., k, :])
            rows[k] = prev
        return torch.stack(rows, dim=-2)
    prev = None
    for k in order:
        row = out[..., k, :]
        if prev is None:
            row.copy_(x[..., k, :]).relu_()
        else:
            torch.mul(prev, w, out=row).add_(b).add_(x[..., k, :]).relu_()
        prev = row
    return out


def irnn(x: torch.Tensor, weight: dict[str, torch.Tensor], bias: dict[str, torch.Tensor]) -> torch.Tensor:
    """SPANet's four directional ReLU recurrences over (B, C, H, W), concatenated: (B, 4C, H, W).

    The channel blocks are, in the release's order, up, right, down, left:
    "up" runs from the bottom edge upwards, "right" from the left edge,
    "down" from the top, "left" from the right edge.  ``weight[d]`` and
    ``bias[d]`` hold direction d's C per-channel scalars.  Vertical scans loop
    over the rows, horizontal ones over the rows of the transposed image.
    """
    c = x.shape[1]
    w = {d: v.reshape(c, 1) for d, v in weight.items()}
    b = {d: v.reshape(c, 1) for d, v in bias.items()}
    xt = x.transpose(-1, -2).contiguous()
    grad = torch.is_grad_enabled() and (x.requires_grad or any(v.requires_grad for v in (*w.values(), *b.values())))
    if grad:
        return torch.cat([
            _scan(x, w["up"], b["up"], reverse=True),
            _scan(xt, w["right"], b["right"], reverse=False).transpose(-1, -2),
            _scan(x, w["down"], b["down"], reverse=False),
            _scan(xt, w["left"], b["left"], reverse=True).transpose(-1, -2),
        ], dim=1)
    out = x.new_empty(x.shape[0], 4 * c, *x.shape[2:])
    up, right, down, left = out.split(c, dim=1)
    _scan(x, w["up"], b["up"], True, up)
    _scan(x, w["down"], b["down"], False, down)
    horizontal = xt.new_empty(2, *xt.shape)
    right.copy_(_scan(xt, w["right"], b["right"], False, horizontal[0]).transpose(-1, -2))
    left.copy_(_scan(xt, w["left"], b["left"], True, horizontal[1]).transpose(-1, -2))
    return out


class IRNN(nn.Module):
    """Holds one IRNN's parameters under the release's names (``<dir>_weight.{weight,bias}``).

    They are depthwise 1x1 convolutions in the release but never applied as
    such: only their C weights and C biases enter the recurrence.
    """

    def __init__(self, channels: int):
        super().__init__()
        for d in ("left", "right", "up", "down"):  # the release's registration order
            conv = nn.Conv2d(channels, channels, 1, groups=channels)
            nn.init.constant_(conv.weight, 0.2)  # the release's initial recurrence weight
            self.add_module(f"{d}_weight", conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        convs = {d: getattr(self, f"{d}_weight") for d in DIRECTIONS}
        return irnn(x, {d: m.weight for d, m in convs.items()}, {d: m.bias for d, m in convs.items()})


class _Attention(nn.Module):
    """The release's attention branch of the SAM: loaded (for strict keys) but its result is never used."""

    def __init__(self, channels: int):
        super().__init__()
        half = channels // 2
        self.conv1 = nn.Conv2d(channels, half, 3, padding=1)
        self.conv2 = nn.Conv2d(half, half, 3, padding=1)
        self.conv3 = nn.Conv2d(half, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return torch.sigmoid(self.conv3(x))


class SAM(nn.Module):
    """Spatial attentive module: two IRNN passes -> a one-channel sigmoid mask."""

    def __init__(self, channels: int = 32):
        super().__init__()
        self.irnn1 = IRNN(channels)
        self.irnn2 = IRNN(channels)
        self.conv_in = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(4 * channels, channels, 3, padding=1, bias=False)
        self.conv3 = nn.Conv2d(4 * channels, channels, 3, padding=1, bias=False)
        self.attention_layer = _Attention(channels)
        self.conv_out = nn.Conv2d(channels, 1, 1, bias=False)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        # The release computes attention_layer(v) and multiplies the IRNN outputs by it
        # out of place, discarding the product: skipping it is exact.
        t = self.conv2(self.irnn1(self.conv_in(v)))
        t = torch.relu(self.conv3(self.irnn2(t)))
        return torch.sigmoid(self.conv_out(t))


class _Group(nn.Module):
    """Bottleneck: 1x1, relu, dilated 3x3 (dilation 2), relu, 1x1; no bias, no final activation."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 1, bias=False)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=2, dilation=2, bias=False)
        self.conv3 = nn.Conv2d(channels, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(torch.relu(self.conv2(torch.relu(self.conv1(x)))))


class _Bottleneck(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.group1 = _Group(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.group1(x)


class SPANet(nn.Module):
    """SPANet: 17 bottleneck blocks, blocks 4-15 gated by the masks of one shared SAM.

    ``forward(x)`` takes BGR in [0, 1] (any size) and returns
    ``(derained BGR image, first attention mask)``; the image is not clamped.
    """

    # BGR input; the test script writes cv2.imwrite(clip(out, 0, 1) * 255): round half to even.
    spec = ModelSpec(channel_order="BGR", quantize="round")

    def __init__(self, width: int = 32):
        super().__init__()
        self.conv_in = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.ReLU())
        self.SAM1 = SAM(width)  # noqa: N815 - the release's name
        for k in range(1, 18):
            self.add_module(f"res_block{k}", _Bottleneck(width))
        self.conv_out = nn.Sequential(nn.Conv2d(width, 3, 3, padding=1, bias=False))

    def _block(self, k: int, f: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        r = getattr(self, f"res_block{k}")(f)
        return torch.relu(r + f if mask is None else r * mask + f)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.conv_in(x)
        for k in (1, 2, 3):
            f = self._block(k, f)
        masks = []
        for first in (4, 7, 10, 13):  # the same SAM before each group of three gated blocks
            mask = self.SAM1(f)
            masks.append(mask)
            for k in range(first, first + 3):
                f = self._block(k, f, mask)
        for k in (16, 17):
            f = self._block(k, f)
        return self.conv_out(f), masks[0]
