"""Running a network on images of any size.

DMSR needs height and width divisible by 16 and at least 64 (its coarsest
attention pads 3 pixels by reflection on a 1/16-size map); MSPFN needs
multiples of 8.  :func:`pad_to_multiple` reflect-pads the bottom and right
edges up to the next multiple (and the minimum size) and
:func:`forward_padded` runs a model on the padded image and crops every
output back (multi-scale outputs are cropped proportionally).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def pad_to_multiple(x: torch.Tensor, multiple: int, mode: str = "reflect",
                    min_size: int = 0) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad (B, C, H, W) at the bottom/right so H and W are multiples of ``multiple`` (and >= ``min_size``).

    Returns the padded tensor and the original (H, W).  Reflect padding needs
    the pad to be smaller than the side; tiny images fall back to repeated
    reflection (padding in steps) so any size works.
    """
    h, w = x.shape[-2:]
    multiple = max(int(multiple), 1)
    th = max(-(-h // multiple) * multiple, -(-min_size // multiple) * multiple)
    tw = max(-(-w // multiple) * multiple, -(-min_size // multiple) * multiple)
    ph, pw = th - h, tw - w
    if ph == 0 and pw == 0:
        return x, (h, w)
    if mode != "reflect":
        return F.pad(x, (0, pw, 0, ph), mode=mode), (h, w)
    while ph > 0 or pw > 0:
        step_h = min(ph, x.shape[-2] - 1)
        step_w = min(pw, x.shape[-1] - 1)
        if step_h == 0 and step_w == 0:  # 1-pixel side: reflection impossible
            return F.pad(x, (0, pw, 0, ph), mode="replicate"), (h, w)
        x = F.pad(x, (0, step_w, 0, step_h), mode="reflect")
        ph -= step_h
        pw -= step_w
    return x, (h, w)


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

    ``multiple`` and ``min_size`` default to the model's ``pad_multiple`` and
    ``min_size`` attributes (DMSR: 16 and 64).
    """
    if multiple is None:
        multiple = getattr(model, "pad_multiple", 1)
    if min_size is None:
        min_size = getattr(model, "min_size", 0)
    xp, size = pad_to_multiple(x, multiple, mode, min_size=min_size)
    return crop_outputs(model(xp), size, tuple(xp.shape[-2:]))
