"""What ``test.py``, ``derain.py`` and the scripts share: a model with its weights, and derain one image.

The weights go through the one checkpoint loader (:mod:`utils.checkpoint`);
the model's :class:`~models.spec.ModelSpec` decides the input convention
(channel order, value range), the test protocol (windows or whole image)
and the 8-bit conversion, so callers never name a model.
"""
from __future__ import annotations

import ast
import logging
import os
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from models import ModelOptionError, build_model, spec_of
from models import model_names as known_models
from models.weights import identify as identify_weights
from models.weights import resolve as resolve_weights
from utils.checkpoint import (
    FORMAT_NAME,
    CheckpointError,
    check_state_dict,
    extract_state_dict,
    load_checkpoint,
)
from utils.distributed import resolve_device  # noqa: F401 - re-exported for the entry points
from utils.errors import UsageError, positive_int
from utils.image_io import levels_to_uint8
from utils.precision import amp_dtype, autocast

from .windows import DEFAULT_MAX_BATCH, restore_tensor

log = logging.getLogger(__name__)


def parse_model_opts(items: Sequence[str] | None) -> dict:
    """``["base_channels=32", "act='gelu'"]`` -> ``{"base_channels": 32, "act": "gelu"}``.

    Values are Python literals (``ast.literal_eval``); anything that is not a
    literal is kept as a string, so ``act=gelu`` works too.
    """
    opts = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise UsageError(f"model option {item!r} is not KEY=VALUE")
        try:
            opts[key] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            opts[key] = value.strip()
    return opts


def load_model(
    name: str | None,
    weights: str | os.PathLike | None,
    model_opts: dict | None = None,
    device: torch.device | str = "cpu",
    use_ema: bool = False,
    fast: bool = False,
) -> tuple[nn.Module, str]:
    """Build a model in eval mode on ``device`` with its weights; returns ``(model, name)``.

    ``weights`` may be any format :mod:`utils.checkpoint` accepts.  With this
    project's format the checkpoint's ``model_name`` is the default ``name``
    and its ``model_kwargs`` are the defaults that ``model_opts`` override.
    Weights may only be left out for a model without parameters (Identity).
    A string that is not a file may name a released file (``BRN/Rain100H``,
    :mod:`models.weights`): it is fetched and verified, and it fixes the
    model and its options, so ``name`` may be None.
    """
    released = None
    if weights is not None:
        weights, released = resolve_weights(weights)
    ckpt = load_checkpoint(weights) if weights is not None else None
    ours = ckpt is not None and ckpt.get("format") == FORMAT_NAME
    if released is None and name is None and ckpt is not None and not ours:
        released = identify_weights(weights)  # a released file by its path fixes the model too
    saved: dict = {}
    if released is not None:
        name, saved = _released_model(name, released)
    if ours:
        saved_name, saved = _saved_model(ckpt, weights)
        if name is None:
            name = saved_name
        elif saved_name and saved_name != name:
            log.warning("%s was saved from model %s but is being loaded into %s", weights, saved_name, name)
    if name is None:
        raise UsageError(f"--model is required (one of: {', '.join(known_models())})")
    kwargs = {**saved, **(model_opts or {})}
    try:
        model = build_model(name, **kwargs)
    except ModelOptionError as err:  # say whether the checkpoint's options or --model-opts are to blame
        if set(saved) - set(model_opts or {}):
            raise CheckpointError(f"{weights}: its model options {saved} do not build {name}: {err}") from None
        raise
    if fast and spec_of(model).fast_opts:  # exact speed options of the model (same weights)
        model = build_model(name, **{**kwargs, **spec_of(model).fast_opts, **(model_opts or {})})
    if ckpt is not None:
        state = extract_state_dict(ckpt, weights, use_ema=use_ema)
        check_state_dict(model, state, weights)
        model.load_state_dict(state, strict=True)
    elif any(True for _ in model.parameters()):
        raise CheckpointError(f"--weights is required for {name} (only parameter-free models run without)")
    model = model.to(device).eval()
    if fast:
        model = model.to(memory_format=torch.channels_last)
    return model, name


def _released_model(name: str | None, entry) -> tuple[str, dict]:
    """The model and options a released file is for; another ``--model`` is an error (it could not load)."""
    if name is not None and name != entry.model:
        raise UsageError(f"--model {name} does not fit the weights {entry.name}, a {entry.model} file; "
                         "leave --model out")
    return entry.model, dict(entry.options)


def _saved_model(ckpt: dict, weights) -> tuple[str | None, dict]:
    """The model name and options a checkpoint of this project's format records, checked."""
    name, kwargs = ckpt.get("model_name"), ckpt.get("model_kwargs") or {}
    if name is not None and name not in known_models():
        raise CheckpointError(f"{weights}: saved from model {name!r}, which is not one of {', '.join(known_models())}")
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise CheckpointError(f"{weights}: model_kwargs is {kwargs!r:.80}, not a mapping of option names")
    return name, dict(kwargs)


def derain_image(
    model: nn.Module,
    img: np.ndarray,
    device: torch.device | str,
    tile: int | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    quantize: str | None = None,
    amp: str = "",
) -> np.ndarray:
    """Derain one uint8 RGB (H, W, 3) image; returns uint8 RGB.

    The image is converted to the network's convention (its spec's channel
    order and value range), run by the spec's protocol (``tile`` overrides
    it), converted back to grey levels (:meth:`~models.spec.ModelSpec.to_levels`),
    clamped and turned into 8 bits by ``quantize``
    ("round" or "truncate"; default: the spec's, i.e. what the authors' test
    script does).  ``amp`` ("bf16"/"fp16") runs the network under autocast.
    """
    spec = spec_of(model)
    x = spec.uint8_to_network(torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).unsqueeze(0).to(device))
    with torch.inference_mode(), autocast(torch.device(device), amp_dtype(amp)):
        out = restore_tensor(model, x, tile, max_batch)
    return levels_to_uint8(spec.to_levels(out[0].float()), quantize or spec.quantize)


def add_model_arguments(parser) -> None:
    """The model, weights, device and speed options shared by test.py and derain.py."""
    parser.add_argument("--model", help="registered model name (default: the checkpoint's, for this project's format "
                        "and released files)")
    parser.add_argument("--weights", help="checkpoint file (the authors' format, a bare state dict, or ours), or the "
                        "name of a released file, e.g. BRN/Rain100H: fetched, verified and cached "
                        "(python scripts/weights.py list; --model then defaults to its model)")
    parser.add_argument("--model-opts", "--model_opts", nargs="*", default=None, metavar="KEY=VALUE",
                        help="constructor options, e.g. base_channels=32 (override the checkpoint's model_kwargs)")
    parser.add_argument("--ema", action="store_true", help="use the EMA weights of one of our checkpoints")
    parser.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda when available)")
    add_fast_arguments(parser)
    parser.add_argument("--tile", type=int, default=None,
                        help="window size of the window protocol, 0 = whole image (default: the model's; DMSR 128)")
    parser.add_argument("--quantize", choices=("round", "truncate"), default=None,
                        help="8-bit conversion of the outputs (default: the model's release protocol - "
                             "round for DMSR and RESCAN, truncate for PReNet's and BRN's np.uint8(255 * x))")
    parser.add_argument("--max-batch", "--max_batch", type=positive_int, default=DEFAULT_MAX_BATCH,
                        help="at most this many windows per forward pass (bounds memory)")


def add_fast_arguments(parser) -> None:
    """``--fast`` and ``--amp``."""
    parser.add_argument("--fast", action="store_true",
                        help="exact fast path: the model's exact speed options (DMSR: interleave-free attention and "
                             "one-copy Fourier unit), channels-last (same outputs to ~1e-6; see docs/PERFORMANCE.md)")
    parser.add_argument("--amp", choices=("", "bf16", "fp16"), default="",
                        help="run the network under autocast (faster on GPUs and bf16 CPUs; outputs differ by "
                             "about 1e-2 before 8-bit rounding)")
