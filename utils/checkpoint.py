"""Checkpoint saving and loading, shared by every entry point.

Formats accepted by :func:`load_model_weights`:

(a) the authors' training-script format ``{'epoch', 'state_dict', 'optimizer'}``,
    with or without DataParallel's ``module.`` prefix;
(b) a bare state dict (PReNet's and BRN's ``net_latest.pth``, exported weights),
    or one under ``'net'`` (RESCAN's and SPANet's ``{'net', 'clock', 'opt'}``);
(c) this project's format, a dict with ``format == "dmsr-derain"``::

        {"format": "dmsr-derain", "version": 1,
         "model": state_dict, "model_name": str, "ema": state_dict | None,
         "optimizer": ..., "scheduler": ..., "scaler": ...,
         "epoch": int, "best_psnr": float, "best_epoch": int,
         "rng": {...}, "config": str (YAML)}

(d) a ``{'net': state_dict, ...}`` wrapper (SPANet's ``{'net', 'clock', 'opt'}``),
    with or without ``module.`` (RecDerain's copies).

Files are always read with ``torch.load(..., weights_only=True)``, so a
checkpoint cannot run code.  Anything wrong - not a checkpoint, truncated,
keys or shapes that do not fit, integer or non-finite values where the
model has floating-point weights - raises :class:`CheckpointError` naming
the file and the first offending keys; nothing is ever loaded partially.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from .errors import UserError
from .files import atomic_write

FORMAT_NAME = "dmsr-derain"
FORMAT_VERSION = 1
_PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP and torch.compile wrappers
_SHOW = 5


class CheckpointError(UserError, RuntimeError):
    """A checkpoint file cannot be used; the message names the file and why."""


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """``torch.load`` a checkpoint safely, turning every failure into a CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} is not a file" if path.exists() else f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for bad files
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint (truncated, corrupt, or holding "
            f"objects other than tensors): {type(err).__name__}: {msg[:300]}"
        ) from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict of weights, found {type(obj).__name__}")
    return dict(obj)


def _strip_prefixes(state: Mapping) -> dict:
    out = {}
    for key, value in state.items():
        for prefix in _PREFIXES:
            while key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def extract_state_dict(ckpt: Mapping, path: str | os.PathLike = "<checkpoint>", use_ema: bool = False) -> dict:
    """Find the model weights inside any accepted checkpoint format."""
    if ckpt.get("format") == FORMAT_NAME:
        if use_ema and ckpt.get("ema") is None:
            raise CheckpointError(f"{path}: holds no EMA weights (trained without FAST.EMA); leave out --ema")
        state = ckpt.get("ema" if use_ema else "model")
    elif "state_dict" in ckpt and isinstance(ckpt["state_dict"], Mapping):
        state = ckpt["state_dict"]
    elif "params" in ckpt and isinstance(ckpt["params"], Mapping):  # BasicSR-style exports
        state = ckpt["params_ema"] if use_ema and "params_ema" in ckpt else ckpt["params"]
    elif "net" in ckpt and isinstance(ckpt["net"], Mapping):  # RESCAN/SPANet-style {'net', 'clock', 'opt'}
        state = ckpt["net"]
    else:
        state = ckpt
    if not isinstance(state, Mapping) or not state:
        raise CheckpointError(f"{path}: no model weights found (keys: {sorted(ckpt)[:_SHOW]})")
    bad = [k for k, v in state.items() if not torch.is_tensor(v)]
    if bad:
        raise CheckpointError(
            f"{path}: not a state dict - entries that are not tensors: {', '.join(map(str, bad[:_SHOW]))}"
        )
    return _strip_prefixes(state)


def check_state_dict(model: nn.Module, state: Mapping, path: str | os.PathLike = "<checkpoint>") -> None:
    """Raise CheckpointError unless ``state`` has exactly the model's keys and shapes."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mis_shaped = [
        f"{k} (checkpoint {tuple(state[k].shape)}, model {tuple(own[k].shape)})"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or mis_shaped:
        parts = [f"{path}: weights do not fit {type(model).__name__}"]
        for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", mis_shaped)):
            if items:
                more = f" ... and {len(items) - _SHOW} more" if len(items) > _SHOW else ""
                parts.append(f"  {len(items)} {label}: {', '.join(items[:_SHOW])}{more}")
        raise CheckpointError("\n".join(parts))
    not_float = [f"{k} ({state[k].dtype})" for k, v in own.items() if v.is_floating_point()
                 and not state[k].is_floating_point()]
    if not_float:
        raise CheckpointError(f"{path}: weights that should be floating-point are not: {', '.join(not_float[:_SHOW])}")
    not_finite = [k for k, v in own.items() if v.is_floating_point() and not bool(state[k].isfinite().all())]
    if not_finite:
        more = f" ... and {len(not_finite) - _SHOW} more" if len(not_finite) > _SHOW else ""
        raise CheckpointError(f"{path}: {len(not_finite)} weight tensor(s) hold NaN or infinity (a diverged run?): "
                              f"{', '.join(not_finite[:_SHOW])}{more}")


def load_model_weights(
    model: nn.Module, path: str | os.PathLike, map_location="cpu", use_ema: bool = False
) -> dict:
    """Load weights from any accepted format into ``model`` (strictly); returns the raw checkpoint dict."""
    ckpt = load_checkpoint(path, map_location)
    state = extract_state_dict(ckpt, path, use_ema=use_ema)
    check_state_dict(model, state, path)
    model.load_state_dict(state, strict=True)
    return ckpt


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module under DDP / torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """Write ``state`` atomically: a temporary file in the same folder, fsync, then ``os.replace``.

    A crash or a full disk mid-write leaves the previous file at ``path`` intact
    and no temporary file behind; the error names the path.
    """
    atomic_write(path, lambda f: _save_reporting_os_errors(state, f), fsync=True)


class _WriteRecorder:
    """A file wrapper that remembers the first OSError of a write (torch.save reports it as a RuntimeError)."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as err:
            self.error = self.error or err
            raise

    def flush(self) -> None:
        self.f.flush()


def _save_reporting_os_errors(state: dict, f) -> None:
    recorder = _WriteRecorder(f)
    try:
        torch.save(state, recorder)
    except RuntimeError:
        if recorder.error is None:
            raise  # not a write failure: a genuine bug keeps its traceback
        raise recorder.error from None  # atomic_open turns it into a WriteError naming the file
