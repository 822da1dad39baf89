"""Model registry: ``build_model(name, **options)`` and each network's :class:`ModelSpec`.

One file per network; each class declares ``spec`` (see :mod:`models.spec`
for the conventions and the output contract every network follows).
"""
from __future__ import annotations

from torch import nn

from .brn import BRN
from .dmsr import DMSR
from .identity import Identity
from .mspfn import MSPFN
from .prenet import PRN, PReNet, PReNet_r, PRN_r
from .rescan import RESCAN
from .spec import ModelSpec, primary_output, spec_of

__all__ = ["MODELS", "ModelSpec", "build_model", "get_model_class", "model_names", "primary_output", "spec_of"]

MODELS: dict[str, type[nn.Module]] = {
    "BRN": BRN,
    "DMSR": DMSR,
    "Identity": Identity,
    "MSPFN": MSPFN,
    "PReNet": PReNet,
    "PReNet_r": PReNet_r,
    "PRN": PRN,
    "PRN_r": PRN_r,
    "RESCAN": RESCAN,
}


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
