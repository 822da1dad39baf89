"""Model registry: ``build_model(name, **options)`` and each network's :class:`ModelSpec`.

One file per network; each class declares ``spec`` (see :mod:`models.spec`
for the conventions and the output contract every network follows).
"""
from __future__ import annotations

from torch import nn

from utils.registry import Registry

from .brn import BRN
from .dmsr import DMSR
from .identity import Identity
from .jorder_e import JORDER_E
from .mspfn import MSPFN
from .options import ModelOptionError, build_on_meta
from .prenet import PRN, PReNet, PReNet_r, PRN_r
from .rescan import RESCAN
from .spanet import SPANet
from .spec import ModelSpec, primary_output, spec_of

__all__ = ["MODELS", "ModelOptionError", "ModelSpec", "build_model", "check_model", "get_model_class",
           "model_names", "primary_output", "spec_of"]

MODELS = Registry("model", {
    "BRN": BRN,
    "DMSR": DMSR,
    "Identity": Identity,
    "JORDER_E": JORDER_E,
    "MSPFN": MSPFN,
    "PReNet": PReNet,
    "PReNet_r": PReNet_r,
    "PRN": PRN,
    "PRN_r": PRN_r,
    "RESCAN": RESCAN,
    "SPANet": SPANet,
})
model_names = MODELS.names
get_model_class = MODELS.get_class


def build_model(name: str, **kwargs) -> nn.Module:
    """Instantiate a registered model by name.

    The options are checked first (:mod:`models.options`): unknown names, values
    out of range (each constructor checks its own) and networks of more than
    :data:`~models.options.MAX_PARAMETERS` parameters raise
    :class:`~models.options.ModelOptionError` before any memory is allocated.
    """
    if kwargs:  # the defaults are known to be sane; anything else is built on the meta device first
        check_model(name, **kwargs)
    return MODELS.build(name, **kwargs)


def check_model(name: str, **kwargs) -> nn.Module:
    """The model ``name`` with these options built on the meta device (no memory): its options are
    checked as :func:`build_model` checks them, and its spec and size can be read."""
    return build_on_meta(MODELS.check(name, kwargs), kwargs, name)
