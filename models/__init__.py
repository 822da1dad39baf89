"""Model registry: ``build_model(name, **options)`` and each network's :class:`ModelSpec`.

One file per network; each class declares ``spec`` (see :mod:`models.spec`
for the conventions and the output contract every network follows).
"""
from __future__ import annotations

from torch import nn

from utils.errors import UnknownNameError

from .dmsr import DMSR
from .identity import Identity
from .mspfn import MSPFN
from .options import ModelOptionError, build_on_meta, check_options
from .prenet import PRN, PReNet, PReNet_r, PRN_r
from .spec import ModelSpec, primary_output, spec_of

__all__ = ["MODELS", "ModelOptionError", "ModelSpec", "build_model", "check_model", "get_model_class",
           "model_names", "primary_output", "spec_of"]

MODELS: dict[str, type[nn.Module]] = {
    "DMSR": DMSR,
    "Identity": Identity,
    "MSPFN": MSPFN,
    "PReNet": PReNet,
    "PReNet_r": PReNet_r,
    "PRN": PRN,
    "PRN_r": PRN_r,
}


def model_names() -> list[str]:
    return sorted(MODELS)


def get_model_class(name: str) -> type[nn.Module]:
    if not isinstance(name, str) or name not in MODELS:
        raise UnknownNameError(f"unknown model {name!r}; known models: {', '.join(model_names())}")
    return MODELS[name]


def build_model(name: str, **kwargs) -> nn.Module:
    """Instantiate a registered model by name.

    The options are checked first (:mod:`models.options`): unknown names, values
    out of range (each constructor checks its own) and networks of more than
    :data:`~models.options.MAX_PARAMETERS` parameters raise
    :class:`~models.options.ModelOptionError` before any memory is allocated.
    """
    cls = get_model_class(name)
    check_options(cls, kwargs, name)
    if kwargs:  # the defaults are known to be sane; anything else is built on the meta device first
        build_on_meta(cls, kwargs, name)
    return cls(**kwargs)


def check_model(name: str, **kwargs) -> nn.Module:
    """The model ``name`` with these options built on the meta device (no memory): its options are
    checked as :func:`build_model` checks them, and its spec and size can be read."""
    cls = get_model_class(name)
    check_options(cls, kwargs, name)
    return build_on_meta(cls, kwargs, name)
