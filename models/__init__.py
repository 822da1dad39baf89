"""Model registry.

``build_model(name, **kwargs)`` returns an ``nn.Module``.  Every registered
class declares two class attributes the entry points rely on:

* ``pad_multiple`` - height and width the network needs to be divisible by;
* ``min_size`` (optional) - smallest height/width it accepts;
* ``default_tile`` - the test-time window size of its paper's protocol
  (0 = whole image).

A network may return a tensor or a list/tuple whose first item is the
full-resolution result; :func:`primary_output` picks that item.
"""
from __future__ import annotations

import torch
from torch import nn

from .dmsr import DMSR
from .identity import Identity
from .mspfn import MSPFN
from .prenet import PRN, PReNet, PReNet_r, PRN_r

MODELS: dict[str, type[nn.Module]] = {
    "DMSR": DMSR,
    "Identity": Identity,
    "MSPFN": MSPFN,
    "PReNet": PReNet,
    "PReNet_r": PReNet_r,
    "PRN": PRN,
    "PRN_r": PRN_r,
}


def register_model(name: str, cls: type[nn.Module]) -> None:
    if name in MODELS and MODELS[name] is not cls:
        raise KeyError(f"model name {name!r} is already registered")
    MODELS[name] = cls


def model_names() -> list[str]:
    return sorted(MODELS)


def get_model_class(name: str) -> type[nn.Module]:
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(model_names())}") from None


def build_model(name: str, **kwargs) -> nn.Module:
    """Instantiate a registered model by name."""
    cls = get_model_class(name)
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise TypeError(f"bad options for model {name}: {err}") from None


def primary_output(out) -> torch.Tensor:
    """The full-resolution restored image of a model's output."""
    while isinstance(out, (list, tuple)):
        out = out[0]
    return out
