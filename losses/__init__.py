"""Loss registry.

``build_loss(name, **kwargs)`` returns an ``nn.Module`` called as
``loss(output, target)``, where ``output`` is a model's raw output (a tensor,
DMSR's multi-scale list, or PReNet's ``(final, stages)`` tuple) and
``target`` the clean image.  Single-image losses use the first item of a
list/tuple.
"""
from __future__ import annotations

from torch import nn

from models.options import ModelOptionError, check_options
from utils.errors import UnknownNameError

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
    if not isinstance(name, str) or name not in LOSSES:
        raise UnknownNameError(f"unknown loss {name!r}; known losses: {', '.join(loss_names())}")
    check_options(LOSSES[name], kwargs, name, kind="loss")
    try:
        return LOSSES[name](**kwargs)
    except ModelOptionError as err:  # the loss's own range check: say which loss it was
        raise ModelOptionError(f"bad options for loss {name}: {err}") from None


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
