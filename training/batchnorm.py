"""BatchNorm statistics recomputed on fixed training patches before validation (``TRAINING.PRECISE_BN``).

During training a BatchNorm layer keeps running averages of its batches'
statistics (momentum 0.1: mostly the last ten batches).  With small batches
- the CPU demo trains on one or two 64x64 patches - those averages are noisy,
and the model that is validated and saved normalises with whatever the last
few patches happened to hold: the same weights then score up to 3 dB apart
(DMSR's Fourier unit has BatchNorm).  Recomputing the statistics as plain
means over a fixed set of training patches removes that noise ("precise BN").

It changes only the running statistics, which the training forward pass does
not use (it normalises with the batch's own), so training follows the same
course with or without it; the validated and saved model is the one with the
recomputed statistics.  The patches are the same at every validation and on
every rank: centre crops of pairs spread evenly over the training set.
``torch.optim.swa_utils.update_bn`` does the recomputation.  0 (the default)
leaves the release's behaviour.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from data.transforms import crop_patch
from utils.image_io import uint8_to_tensor

BATCH = 16  # patches per forward pass while recomputing


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def precise_bn_batches(dataset, count: int, patch: int) -> list[torch.Tensor]:
    """``count`` input patches (fewer when the set has fewer pairs) in batches of up to 16.

    ``dataset`` is the training dataset (its ``pairs`` and ``load``); each patch
    is the centre ``patch`` x ``patch`` crop of one pair's rainy image
    (reflect-padded when the image is smaller), pairs evenly spaced over the set.
    """
    n = len(dataset.pairs)
    chosen = sorted(set(np.linspace(0, n - 1, min(count, n)).round().astype(int).tolist()))
    patches = []
    for i in chosen:
        inp, _ = dataset.load(i)
        y, x = max(0, (inp.shape[0] - patch) // 2), max(0, (inp.shape[1] - patch) // 2)
        patches.append(uint8_to_tensor(crop_patch(inp, y, x, patch)))
    return [torch.stack(patches[s:s + BATCH]) for s in range(0, len(patches), BATCH)]


@torch.no_grad()
def recompute_bn(model: nn.Module, batches: list[torch.Tensor], device: torch.device,
                 channels_last: bool = False) -> None:
    """Set every BatchNorm's running mean and variance to their means over ``batches`` (training mode)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    update_bn((b.to(device).contiguous(memory_format=fmt) for b in batches), model)
