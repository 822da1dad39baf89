"""Test-time inference on images of any size: the release's window protocol or the whole image.

**Window protocol** (DMSR release, ``--tile 128``).  Along each axis of
length ``n`` the windows start at ``0, t, 2t, ...`` over the largest
multiple of ``t`` (the regular grid); when ``n`` is not a multiple of ``t``
one more window sits flush with the far edge, at ``n - t``, and contributes
only the last ``n mod t`` pixels - the strip the grid left uncovered.  The
2-D windows are the products of the two axes' windows (grid, right column,
bottom row, bottom-right corner).  The release pushes all windows through
the network as one batch; here they go in batches of at most ``max_batch``
so memory stays flat on large photos (the network sees the same windows,
so the result is the same up to floating-point batch effects).  The release
cannot handle images under ``t`` pixels on a side; those are reflect-padded
at the bottom/right up to ``t`` on that side and the result is cropped.

**Whole image** (``--tile 0``).  The image is reflect-padded to the model's
``pad_multiple`` and the output cropped (:func:`inference.padding.pad_to_multiple`).

Either way the network gets its input in the memory layout its authors'
test script feeds (``ModelSpec.input_layout``), which keeps the outputs
bit-identical to theirs.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from models.spec import primary_output, spec_of
from utils.errors import UsageError

from .padding import crop_outputs, pad_to_multiple, reflect_pad_to

DEFAULT_MAX_BATCH = 16
MAX_TILE = 4096  # larger windows would pad small images to gigabytes


class Segment(NamedTuple):
    """One window along one axis: it starts at ``start`` and its ``[src_lo, src_hi)`` go to ``[dst_lo, dst_hi)``."""

    start: int
    src_lo: int
    src_hi: int
    dst_lo: int
    dst_hi: int


def window_segments(length: int, tile: int) -> list[Segment]:
    """Windows along one axis of ``length >= tile`` pixels, as the release lays them out."""
    if tile <= 0:
        raise ValueError(f"tile must be positive, got {tile}")
    if length < tile:
        raise ValueError(f"axis of {length} pixels is shorter than the {tile}-pixel window; pad it first")
    full, rest = divmod(length, tile)
    segments = [Segment(i * tile, 0, tile, i * tile, (i + 1) * tile) for i in range(full)]
    if rest:
        segments.append(Segment(length - tile, tile - rest, tile, length - rest, length))
    return segments


def _run_windows(model: nn.Module, windows: torch.Tensor, tile: int) -> torch.Tensor:
    out = primary_output(model(spec_of(model).arrange(windows)))
    if out.shape[0] != windows.shape[0] or out.shape[-2:] != windows.shape[-2:]:
        raise RuntimeError(
            f"{type(model).__name__} returned {tuple(out.shape)} for a batch of {tile}x{tile} windows "
            f"{tuple(windows.shape)}; the window protocol needs same-sized outputs"
        )
    return out


def forward_tiled(
    model: nn.Module, x: torch.Tensor, tile: int, max_batch: int = DEFAULT_MAX_BATCH
) -> torch.Tensor:
    """Run ``model`` over ``tile`` x ``tile`` windows of ``x`` (B, C, H, W) and stitch the outputs.

    Returns the full-resolution output, (B, C_out, H, W), on ``x``'s device.
    """
    if max_batch < 1:
        raise ValueError(f"max_batch must be at least 1, got {max_batch}")
    h, w = x.shape[-2:]
    xp = reflect_pad_to(x, max(h, tile), max(w, tile))
    rows = window_segments(xp.shape[-2], tile)
    cols = window_segments(xp.shape[-1], tile)
    jobs = [(b, r, c) for b in range(xp.shape[0]) for r in rows for c in cols]
    out = None
    for i in range(0, len(jobs), max_batch):
        chunk = jobs[i : i + max_batch]
        windows = torch.stack(
            [xp[b, :, r.start : r.start + tile, c.start : c.start + tile] for b, r, c in chunk]
        )
        result = _run_windows(model, windows, tile)
        if out is None:
            out = result.new_empty((xp.shape[0], result.shape[1], *xp.shape[-2:]))
        for (b, r, c), window in zip(chunk, result):
            out[b, :, r.dst_lo : r.dst_hi, c.dst_lo : c.dst_hi] = window[:, r.src_lo : r.src_hi, c.src_lo : c.src_hi]
    return out[..., :h, :w]


def forward_whole(model: nn.Module, x: torch.Tensor, multiple: int, min_size: int = 0) -> torch.Tensor:
    """Run ``model`` on the whole of ``x`` padded to ``multiple`` (and ``min_size``); the full-resolution output."""
    xp, size = pad_to_multiple(x, multiple, min_size=min_size)
    return primary_output(crop_outputs(model(spec_of(model).arrange(xp)), size, tuple(xp.shape[-2:])))


def check_tile(model: nn.Module, tile: int) -> None:
    """Raise ValueError unless ``tile`` (0 = whole image) suits the model's size constraints."""
    spec = spec_of(model)
    multiple = spec.pad_multiple
    name = type(model).__name__
    if tile < 0 or tile > MAX_TILE:
        raise UsageError(f"tile must be 0 (whole image) or a window size, got {tile} (at most {MAX_TILE})")
    if tile and tile % multiple:
        raise UsageError(f"tile {tile} is not a multiple of {name}'s pad_multiple {multiple}")
    min_size = spec.min_size
    if tile and tile < min_size:
        raise UsageError(f"tile {tile} is smaller than {name}'s minimum input size {min_size}")


def restore_tensor(
    model: nn.Module, x: torch.Tensor, tile: int | None = None, max_batch: int = DEFAULT_MAX_BATCH
) -> torch.Tensor:
    """Derain (B, C, H, W) in [0, 1] with the model's protocol: windows of ``tile`` or the whole image.

    ``tile=None`` uses the model's ``default_tile``; 0 means the whole image.
    Gradients are not disabled here; callers wrap this in ``torch.inference_mode()``.
    """
    spec = spec_of(model)
    if tile is None:
        tile = spec.default_tile
    check_tile(model, tile)
    if tile:
        return forward_tiled(model, x, tile, max_batch)
    return forward_whole(model, x, spec.pad_multiple, spec.min_size)
