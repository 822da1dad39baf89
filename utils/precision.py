"""Numeric precision and memory-layout switches shared by training, inference and benchmarks.

Mixed precision (autocast to bf16/fp16), channels-last and ``torch.compile``;
with every switch off a model computes exactly what its release computes.
Which switches pay off depends on the device (``docs/PERFORMANCE.md``;
``training.config.fast_opts`` picks the measured fastest set).
"""
from __future__ import annotations

import contextlib
import logging

import torch
from torch import nn

log = logging.getLogger(__name__)

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def amp_dtype(name: str) -> torch.dtype | None:
    """``FAST.AMP`` ("", "bf16", "fp16") as the autocast dtype; None = full precision."""
    if name and name not in AMP_DTYPES:
        raise ValueError(f"AMP must be '', 'bf16' or 'fp16', got {name!r}")
    return AMP_DTYPES.get(name)


def autocast(device: torch.device | str, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` on ``device`` with ``dtype``, or a no-op context when ``dtype`` is None."""
    device_type = torch.device(device).type
    return torch.autocast(device_type, dtype=dtype, enabled=dtype is not None)


def to_channels_last(x):
    """A 4-D tensor or a module in channels-last memory format (other tensors unchanged)."""
    if isinstance(x, nn.Module):
        return x.to(memory_format=torch.channels_last)
    if isinstance(x, torch.Tensor) and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def compile_model(model: nn.Module, **kwargs) -> nn.Module:
    """``torch.compile(model)``, falling back to eager where compilation is unsupported.

    Unsupported platforms raise at once (the model is returned as it is);
    graphs that fail to compile later (no C++ compiler for inductor on the
    CPU, an operator inductor cannot lower) run eagerly with a warning,
    through dynamo's ``suppress_errors``.
    """
    try:
        import torch._dynamo

        torch._dynamo.config.suppress_errors = True  # fall back to eager where compilation fails
        return torch.compile(model, **kwargs)
    except (RuntimeError, ImportError, AttributeError) as err:
        log.warning("torch.compile unavailable (%s); running eagerly", err)
        return model


def cpu_has_fast_bf16() -> bool:
    """Whether oneDNN has native bf16 kernels on this CPU (AVX512-BF16 or AMX); else bf16 is emulated and slow."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check()) if check is not None else False
    except RuntimeError:
        return False
