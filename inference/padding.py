"""Running a network on images of any size.

DMSR needs height and width divisible by 16 and at least 64 (its coarsest
attention pads 3 pixels by reflection on a 1/16-size map); MSPFN needs
multiples of 4.  :func:`pad_to_multiple` reflect-pads the bottom and right
edges up to the next multiple (and the minimum size) and
:func:`forward_padded` runs a model on the padded image and crops every
output back (multi-scale outputs are cropped proportionally).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from models.spec import spec_of


def reflect_pad_to(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Reflect-pad (B, C, H, W) at the bottom/right up to ``height`` x ``width``.

    Reflection needs the pad to be smaller than the side, so large pads go in
    steps (reflecting the already padded image); a 1-pixel side, which cannot
    be reflected, is replicated.
    """
    while x.shape[-2] < height or x.shape[-1] < width:
        ph = min(height - x.shape[-2], x.shape[-2] - 1) if x.shape[-2] < height else 0
        pw = min(width - x.shape[-1], x.shape[-1] - 1) if x.shape[-1] < width else 0
        if ph == 0 and pw == 0:
            return F.pad(x, (0, width - x.shape[-1], 0, height - x.shape[-2]), mode="replicate")
        x = F.pad(x, (0, pw, 0, ph), mode="reflect")
    return x


def pad_to_multiple(x: torch.Tensor, multiple: int, mode: str = "reflect",
                    min_size: int = 0) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad (B, C, H, W) at the bottom/right so H and W are multiples of ``multiple`` (and >= ``min_size``).

    Returns the padded tensor and the original (H, W).  Any size works
    (see :func:`reflect_pad_to`).
    """
    h, w = x.shape[-2:]
    multiple = max(int(multiple), 1)
    th = max(-(-h // multiple) * multiple, -(-min_size // multiple) * multiple)
    tw = max(-(-w // multiple) * multiple, -(-min_size // multiple) * multiple)
    if (th, tw) == (h, w):
        return x, (h, w)
    if mode == "reflect":
        return reflect_pad_to(x, th, tw), (h, w)
    return F.pad(x, (0, tw - w, 0, th - h), mode=mode), (h, w)


def crop_outputs(out, size: tuple[int, int], padded_size: tuple[int, int]):
    """Crop a tensor (or a list/tuple of multi-scale tensors) back to ``size``.

    An output at a lower resolution than the padded input is cropped to the
    same fraction (ceil), so the quarter output of a 37x53 input is 10x14.
    """
    if isinstance(out, (list, tuple)):
        return type(out)(crop_outputs(o, size, padded_size) for o in out)
    if not torch.is_tensor(out) or out.dim() != 4:
        return out
    h, w = size
    ph, pw = padded_size
    oh, ow = out.shape[-2:]
    return out[..., : math.ceil(h * oh / ph), : math.ceil(w * ow / pw)]


def forward_padded(model: torch.nn.Module, x: torch.Tensor, multiple: int | None = None,
                   mode: str = "reflect", min_size: int | None = None):
    """Run ``model`` on ``x`` padded to ``multiple`` and crop the output(s) back to x's size.

    ``multiple`` and ``min_size`` default to the model's spec (DMSR: 16 and 64).
    """
    spec = spec_of(model) if multiple is None or min_size is None else None
    if multiple is None:
        multiple = spec.pad_multiple
    if min_size is None:
        min_size = spec.min_size
    xp, size = pad_to_multiple(x, multiple, mode, min_size=min_size)
    return crop_outputs(model(xp), size, tuple(xp.shape[-2:]))
