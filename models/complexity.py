"""Parameter and multiply-accumulate counts of a network (``scripts/complexity.py`` prints them).

MACs come from PyTorch's own ``torch.utils.flop_counter.FlopCounterMode``
(MACs = FLOPs / 2).  It counts convolutions, transposed convolutions and
matrix products; it does not count FFTs (``rfft2``/``irfft2``), pooling,
interpolation, normalisation, activations or element-wise arithmetic, so the
figure is the convolutional cost, as papers usually report it.
"""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from utils.errors import UsageError

from .spec import spec_of


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: torch.nn.Module, size: tuple[int, int], batch: int = 1) -> int:
    """Multiply-accumulates of one forward pass on a (batch, 3, H, W) input in the model's convention.

    The input is made on the model's device (a model on a GPU is counted there).  A size the network
    cannot take (its spec's ``pad_multiple`` and ``min_size``) is a :class:`~utils.errors.UsageError`.
    """
    spec = spec_of(model)
    if min(size) < max(1, spec.min_size) or any(n % spec.pad_multiple for n in size):
        raise UsageError(f"cannot count the MACs of {type(model).__name__} at {size[0]}x{size[1]}: it takes sizes "
                         f"that are multiples of {spec.pad_multiple} and at least {max(1, spec.min_size)}")
    model.eval()
    device = next(model.parameters(), torch.empty(0)).device
    x = spec_of(model).to_network(torch.zeros(batch, 3, *size, device=device))
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    return counter.get_total_flops() // 2
