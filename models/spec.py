"""What the rest of the project needs to know about a network: its :class:`ModelSpec`.

Every registered network declares a class attribute ``spec``; a network
whose conventions depend on its constructor options (MSPFN's release
convention, say) sets ``self.spec`` in ``__init__``.  Nothing outside
``models/`` names a model: the test-time protocol, padding, input
convention and 8-bit conversion are read from the spec alone.

**The output contract.**  ``forward(x)`` takes a (B, C, H, W) float tensor
in the spec's channel order and value range, with H and W multiples of
``pad_multiple`` and at least ``min_size``, and returns either the restored
image (same shape, same channel order and range) or a list/tuple whose
first item - recursively - is that full-resolution restored image (DMSR's
``[full, half, quarter]``, PReNet's ``(final, stages)``).
:func:`primary_output` picks it.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import torch
from torch import nn

QUANTIZE_MODES = ("round", "truncate")
CHANNEL_ORDERS = ("RGB", "BGR")
INPUT_LAYOUTS = ("contiguous", "hwc_view")


@dataclass(frozen=True)
class ModelSpec:
    """The test-time and input conventions of one network.

    Attributes:
        pad_multiple: height and width must be multiples of this (inputs are
            reflect-padded up to it and outputs cropped back).
        min_size: smallest height/width the network accepts (padded up to it).
        default_tile: window size of the paper's test protocol; 0 = whole image.
        channel_order: "RGB" or "BGR" - what the network receives.
        input_range: (low, high) that pixel values 0 and 255 map to; (0, 255)
            keeps grey levels exact both ways (:meth:`to_levels`).
        quantize: how the authors' test script converts outputs to 8 bits:
            "round" (nearest grey level, halves to even - what ``torch.round``
            and ``cv2.imwrite`` of a float array do) or "truncate"
            (``np.uint8`` of the clipped value).
        input_layout: the memory layout of the tensor the authors' test script
            feeds (:meth:`arrange`): "contiguous" (plain NCHW: a DataLoader
            batch, ``np.ascontiguousarray``) or "hwc_view" (``torch.Tensor`` of
            ``np.expand_dims(hwc.transpose(2, 0, 1), 0)``: an HWC image seen as
            NCHW, strides ``(C, 1, W*C, C)``).  The values are the same, but
            the layout decides which convolution kernels run, and those add in
            different orders (up to ~1e-6 on [0, 1], 1.7e-4 on JORDER-E's 0-255
            scale, depending on the CPU and layer); a value next to a
            grey-level boundary then lands on the other side of it.  The test
            protocol (:func:`inference.windows.restore_tensor`) feeds this
            layout, so the saved 8-bit images equal the authors'.
        fast_opts: constructor options of the exact fast path (same weights,
            same outputs to float rounding), used by ``--fast``.
    """

    pad_multiple: int = 1
    min_size: int = 0
    default_tile: int = 0
    channel_order: str = "RGB"
    input_range: tuple[float, float] = (0.0, 1.0)
    quantize: str = "round"
    input_layout: str = "contiguous"
    fast_opts: Mapping = field(default_factory=dict)

    def __post_init__(self):
        if self.pad_multiple < 1 or self.min_size < 0 or self.default_tile < 0:
            raise ValueError(f"bad sizes in {self}")
        if self.channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, got {self.channel_order!r}")
        if self.quantize not in QUANTIZE_MODES:
            raise ValueError(f"quantize must be one of {QUANTIZE_MODES}, got {self.quantize!r}")
        if self.input_layout not in INPUT_LAYOUTS:
            raise ValueError(f"input_layout must be one of {INPUT_LAYOUTS}, got {self.input_layout!r}")
        low, high = (float(v) for v in self.input_range)
        if not high > low:
            raise ValueError(f"input_range must be (low, high) with high > low, got {self.input_range}")
        object.__setattr__(self, "input_range", (low, high))
        object.__setattr__(self, "fast_opts", MappingProxyType(dict(self.fast_opts)))

    def replace(self, **changes) -> ModelSpec:
        return dataclasses.replace(self, **changes)

    def arrange(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, C, H, W) with the same values in :attr:`input_layout`.

        "hwc_view" reproduces numpy's strides exactly, batch stride ``C``
        included: PyTorch (2.x) takes such a tensor for an ambiguous one and
        runs its convolutions in NCHW, while a proper channels-last tensor
        (``x.contiguous(memory_format=torch.channels_last)``) runs NHWC
        kernels - other sums (PRN: up to 7e-7).  A batch of several windows,
        which the authors' scripts never build, is one HWC block per window.
        """
        if self.input_layout == "contiguous":
            return x.contiguous()
        hwc = x.permute(0, 2, 3, 1).contiguous()
        if x.shape[0] == 1:
            return hwc[0].permute(2, 0, 1).unsqueeze(0)  # unsqueeze, like expand_dims, gives the batch stride C
        return hwc.permute(0, 3, 1, 2)

    @property
    def is_plain(self) -> bool:
        """RGB in [0, 1]: the convention of the training pipeline."""
        return self.channel_order == "RGB" and self.input_range == (0.0, 1.0)

    def to_network(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] -> what the network receives."""
        if self.channel_order == "BGR":
            x = x.flip(-3)
        low, high = self.input_range
        if (low, high) != (0.0, 1.0):  # exact for (0, 255): float32(k / 255) * 255 == k for every k
            x = x * (high - low) + low
        return x

    def uint8_to_network(self, img: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) 8-bit RGB (any integer or float dtype holding 0..255) -> what the network receives.

        The same as ``to_network(img / 255)`` with one rounding instead of
        several: ``(k * (high - low) + 255 * low) / 255`` in float32, so the
        [-1, 1] range gives exactly ``float32(k / 127.5 - 1)`` (what the
        TensorFlow releases feed) and [0, 1] exactly ``k / 255``.
        """
        x = img.float()
        if self.channel_order == "BGR":
            x = x.flip(-3)
        low, high = self.input_range
        if (low, high) != (0.0, 1.0):
            x = x * (high - low) + 255.0 * low
        return x / 255.0

    def from_network(self, y: torch.Tensor) -> torch.Tensor:
        """The network's image back to RGB in [0, 1] (not clamped)."""
        low, high = self.input_range
        if (low, high) != (0.0, 1.0):
            y = (y - low) / (high - low)
        if self.channel_order == "BGR":
            y = y.flip(-3)
        return y

    def to_levels(self, y: torch.Tensor) -> torch.Tensor:
        """The network's image as RGB grey levels (0-255 scale, not clamped), for the 8-bit conversion.

        A network working on the 0-255 scale (``high - low == 255``) keeps its
        values as they are, so clamping and rounding them gives exactly what
        its release saves (``clamp(0, 255).round()``); dividing by 255 and
        multiplying back would move values next to a half grey level.  Other
        ranges go through :meth:`from_network` and are multiplied by 255.
        """
        low, high = self.input_range
        if high - low == 255.0:
            y = y - low if low else y
            return y.flip(-3) if self.channel_order == "BGR" else y
        return self.from_network(y) * 255.0


def spec_of(model: nn.Module) -> ModelSpec:
    """The :class:`ModelSpec` of a model (unwrapping DDP, ``torch.compile`` and EMA wrappers)."""
    for attr in ("module", "_orig_mod"):
        inner = getattr(model, attr, None)
        if isinstance(inner, nn.Module) and not isinstance(getattr(model, "spec", None), ModelSpec):
            return spec_of(inner)
    spec = getattr(model, "spec", None)
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"{type(model).__name__} declares no ModelSpec (class attribute 'spec')")
    return spec


def primary_output(out) -> torch.Tensor:
    """The full-resolution restored image of a model's output (see the output contract)."""
    while isinstance(out, (list, tuple)):
        out = out[0]
    return out
