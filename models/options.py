"""Checking a network's constructor options before anything is allocated.

Options come from config files, ``--model-opts`` and checkpoints, so they
are untrusted.  :func:`check_options` (``utils/registry.py``) rejects names the constructor
does not take; each constructor checks the range of its own options with
:func:`check_int` / :func:`check_bool`; and :func:`build_on_meta` builds the
network on PyTorch's ``meta`` device (no memory, no initialisation) and
refuses one of more than :data:`MAX_PARAMETERS` parameters.
"""
from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from utils.registry import OptionError, UnknownOptionError, check_options

# 20x the largest network of the papers (DMSR, 35 M): 2.8 GB of float32 weights, 11 GB to train with Adam.
MAX_PARAMETERS = 700_000_000


ModelOptionError = OptionError  # a constructor option is unknown, of the wrong type or out of range

__all__ = ["MAX_PARAMETERS", "ModelOptionError", "UnknownOptionError", "build_on_meta", "check_bool", "check_int",
           "check_number", "check_options", "check_range"]


def check_int(name: str, value, low: int, high: int, multiple: int = 1) -> int:
    """``value`` as an int in ``[low, high]`` (and a multiple of ``multiple``), or ModelOptionError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ModelOptionError(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ModelOptionError(f"{name} must be between {low} and {high}, got {value}")
    if value % multiple:
        raise ModelOptionError(f"{name} must be a multiple of {multiple}, got {value}")
    return int(value)


def check_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ModelOptionError(f"{name} must be True or False, got {value!r}")
    return value


def check_range(name: str, value) -> tuple[float, float]:
    """A ``(low, high)`` pair of finite numbers with ``high > low``."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2 or not all(
            isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        raise ModelOptionError(f"{name} must be (low, high), two finite numbers, got {value!r}")
    low, high = (float(v) for v in value)
    if not high > low:
        raise ModelOptionError(f"{name} must be (low, high) with high > low, got {value!r}")
    return low, high


def check_number(name: str, value, low: float = 0.0, high: float = math.inf, low_open: bool = False) -> float:
    """A finite real number in ``[low, high]`` (``(low, high]`` with ``low_open``), or ModelOptionError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ModelOptionError(f"{name} must be a finite number, got {value!r}")
    if value > high or value < low or (low_open and value == low):
        raise ModelOptionError(f"{name} must be {'>' if low_open else '>='} {low}"
                               + (f" and <= {high}" if high < math.inf else "") + f", got {value}")
    return float(value)


def build_on_meta(cls: type[nn.Module], options: dict, name: str | None = None,
                  limit: int = MAX_PARAMETERS) -> nn.Module:
    """``cls(**options)`` on the meta device (no memory, no initialisation); more than ``limit`` parameters
    is an error.  Its spec and size can be read before the real network is allocated."""
    try:
        with torch.device("meta"):
            model = cls(**options)
    except ModelOptionError as err:  # a constructor's own range check: say which model it was
        raise ModelOptionError(f"bad options for model {name or cls.__name__}: {err}") from None
    count = sum(p.numel() for p in model.parameters())
    if count > limit:
        raise ModelOptionError(f"model {name or cls.__name__} with options {options} would have {count:,} "
                               f"parameters, more than the limit of {limit:,}")
    return model
