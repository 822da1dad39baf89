"""Loss registry.

``build_loss(name, **kwargs)`` returns an ``nn.Module`` called as
``loss(output, target)``, where ``output`` is a model's raw output (a tensor,
DMSR's multi-scale list, or PReNet's ``(final, stages)`` tuple) and
``target`` the clean image.  Single-image losses use the first item of a
list/tuple.
"""
from __future__ import annotations

from torch import nn

from .multiscale import DMSRLoss
from .pixel import CharbonnierLoss, EdgeLoss, L1Loss, MSPFNLoss
from .ssim import PReNetLoss

LOSSES: dict[str, type[nn.Module]] = {
    "L1": L1Loss,
    "Charbonnier": CharbonnierLoss,
    "EdgeLoss": EdgeLoss,
    "MSPFNLoss": MSPFNLoss,
    "DMSRLoss": DMSRLoss,
    "PReNetLoss": PReNetLoss,
}


def loss_names() -> list[str]:
    return sorted(LOSSES)


def build_loss(name: str, **kwargs) -> nn.Module:
    """Instantiate a registered loss by name; unknown names list the valid ones."""
    try:
        cls = LOSSES[name]
    except KeyError:
        raise KeyError(f"unknown loss {name!r}; known losses: {', '.join(loss_names())}") from None
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise TypeError(f"bad options for loss {name}: {err}") from None


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
