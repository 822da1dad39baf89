"""Loss registry: one file per paper's loss (``dmsr.py``, ``mspfn.py``, ``prenet.py``), shared terms in ``terms.py``.

``build_loss(name, **kwargs)`` returns an ``nn.Module`` called as
``loss(output, target)``, where ``output`` is a model's raw output (a tensor,
DMSR's multi-scale list, or PReNet's ``(final, stages)`` tuple) and
``target`` the clean image.  Single-image losses use the first item of a
list/tuple.
"""
from __future__ import annotations

from torch import nn

from utils.registry import Registry

from .dmsr import DMSRLoss
from .mspfn import MSPFNLoss
from .prenet import PReNetLoss
from .terms import CharbonnierLoss, EdgeLoss, L1Loss

LOSSES = Registry("loss", {
    "L1": L1Loss,
    "Charbonnier": CharbonnierLoss,
    "EdgeLoss": EdgeLoss,
    "MSPFNLoss": MSPFNLoss,
    "DMSRLoss": DMSRLoss,
    "PReNetLoss": PReNetLoss,
})
loss_names = LOSSES.names


def build_loss(name: str, **kwargs) -> nn.Module:
    """Instantiate a registered loss by name; unknown names list the valid ones."""
    return LOSSES.build(name, **kwargs)


__all__ = [
    "LOSSES",
    "CharbonnierLoss",
    "DMSRLoss",
    "EdgeLoss",
    "L1Loss",
    "MSPFNLoss",
    "PReNetLoss",
    "build_loss",
    "loss_names",
]
