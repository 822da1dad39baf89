"""MSPFN: Multi-Scale Progressive Fusion Network (Jiang et al., CVPR 2020).

Written from the facts of the authors' TensorFlow release (see the project's
MSPFN specification), not from their code.  Layer widths scale with
``width`` (64 in the paper); the defaults give 20,995,776 parameters and
``caus=(1, 1, 1)`` the released "M17N1" checkpoint's 15,823,424.

Layers that change the resolution reproduce TensorFlow's ``'SAME'`` padding
so weights ported from the release compute the same numbers: a stride-2
convolution of an even side pads one pixel after (bottom/right), of an odd
side one on each side; a stride-2 transposed convolution is the exact adjoint
of that convolution for the size it must produce (the size of the map it is
added to, as the release passes ``output_shape``).  Height and width must be
multiples of 4 (the 1/4-scale input pyramid); the 1/8-scale maps inside the
attention blocks may then have odd sides.  Wrap the model with
``inference.padding.forward_padded`` for other sizes.

The network predicts a rain layer R and returns the derained image I - R.
Nothing in it assumes a pixel range; only learned weights do.  Two input
conventions (``convention``), declared in the model's :class:`ModelSpec` so
``test.py`` and ``derain.py`` convert images accordingly:

* ``"rgb01"`` (default; this project's training): RGB in [0, 1].
* ``"release"``: what the authors' TensorFlow test script feeds - BGR scaled
  to [-1, 1] (``img / 127.5 - 1``), the whole image, outputs to 8 bits by
  truncation (``np.uint8(np.clip((y + 1) * 127.5, 0, 255))``).  Weights
  converted from the release (``scripts/convert_mspfn_tf.py``) use it.

The older ``input_range=(-1, 1)`` option (kept so checkpoints saved with it
still load) takes RGB [0, 1] images and rescales them inside ``forward``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .options import ModelOptionError, check_int, check_range
from .spec import ModelSpec


def _prelu(channels: int) -> nn.PReLU:
    """PReLU with one slope per channel, slopes starting at 0 (as the release)."""
    return nn.PReLU(channels, init=0.0)


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (before, after) for one spatial dimension."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """A convolution padded like TensorFlow's ``'SAME'``: extra padding goes after (bottom/right).

    For stride 1 and odd kernels this is ordinary symmetric padding; for a
    3x3 stride-2 convolution on an even input it is one zero row/column at
    the bottom/right only, and the output is half the input.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 bias: bool = False):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = _same_pad(x.shape[-2], self.kernel_size[0], self.stride[0])
        left, right = _same_pad(x.shape[-1], self.kernel_size[1], self.stride[1])
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


class ConvTranspose2dSame(nn.ConvTranspose2d):
    """TensorFlow ``conv2d_transpose`` with ``'SAME'`` padding and stride 2.

    TensorFlow defines it as the adjoint (gradient) of a ``'SAME'`` stride-2
    convolution on an image of the requested ``size`` (default: twice the
    input).  That equals an unpadded transposed convolution cropped to
    ``size`` after skipping the forward convolution's leading padding: for an
    even side the last row/column is dropped, for an odd side the first and
    last.  (PyTorch's ``padding=1, output_padding=1`` has the 2x shape but is
    shifted by one pixel.)
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 2,
                 bias: bool = False):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0, bias=bias)

    def forward(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        h, w = x.shape[-2:]
        out_h, out_w = (h * self.stride[0], w * self.stride[1]) if size is None else (int(size[0]), int(size[1]))
        if -(-out_h // self.stride[0]) != h or -(-out_w // self.stride[1]) != w:
            raise ValueError(f"a stride-{self.stride[0]} transposed convolution cannot turn {h}x{w} into "
                             f"{out_h}x{out_w}")
        top, _ = _same_pad(out_h, self.kernel_size[0], self.stride[0])
        left, _ = _same_pad(out_w, self.kernel_size[1], self.stride[1])
        y = super().forward(x)
        return y[..., top:top + out_h, left:left + out_w]


class ConvAct(nn.Module):
    """3x3 stride-1 convolution followed by PReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, bias: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)
        self.act = _prelu(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class UpAct(nn.Module):
    """2x up-sampling (TF-'SAME' transposed convolution) to ``size`` (default 2x), followed by PReLU."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.up = ConvTranspose2dSame(in_channels, out_channels)
        self.act = _prelu(out_channels)

    def forward(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        return self.act(self.up(x, size))


class DownAct(nn.Module):
    """2x down-sampling (TF-'SAME' stride-2 convolution) followed by PReLU."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.down = Conv2dSame(in_channels, out_channels, 3, stride=2)
        self.act = _prelu(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.down(x))


class ConvLSTMCell(nn.Module):
    """Convolutional LSTM cell: one 3x3 convolution (with bias) over concat[input, hidden].

    The 4h output channels are the gates (i, j, f, o) in that order;
    c' = c * sigmoid(f + forget_bias) + sigmoid(i) * tanh(j) and
    h' = tanh(c') * sigmoid(o).  Without a state the cell starts from zeros;
    the hidden-state part of the kernel then multiplies zeros and is skipped.
    """

    def __init__(self, in_channels: int, hidden_channels: int, forget_bias: float = 1.0):
        super().__init__()
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.forget_bias = forget_bias
        self.conv = nn.Conv2d(in_channels + hidden_channels, 4 * hidden_channels, 3, padding=1, bias=True)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None):
        if state is None:
            gates = F.conv2d(x, self.conv.weight[:, : self.in_channels], self.conv.bias, padding=1)
        else:
            gates = self.conv(torch.cat([x, state[0]], dim=1))
        i, j, f, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(i) * torch.tanh(j)
        if state is not None:
            c = c + state[1] * torch.sigmoid(f + self.forget_bias)
        h = torch.tanh(c) * torch.sigmoid(o)
        return h, (h, c)


class RRU(nn.Module):
    """Residual recurrent unit of the coarse fusion stage: conv + PReLU, ConvLSTM, conv + PReLU.

    Returns the residual only; the caller adds it to its input.
    """

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.squeeze = ConvAct(width, width // 2)
        self.lstm = ConvLSTMCell(width // 2, hidden)
        self.expand = ConvAct(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(self.squeeze(x))
        return self.expand(h)


class CAU(nn.Module):
    """Channel attention unit (RCAB-like, convolutions with bias), including its skip."""

    def __init__(self, width: int, reduction: int = 4):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1, bias=True),
            _prelu(width),
            nn.Conv2d(width, width, 3, padding=1, bias=True),
        )
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(width, width // reduction, 1, bias=True),
            _prelu(width // reduction),
            nn.Conv2d(width // reduction, width, 1, bias=True),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y * self.attention(y)


class URAB(nn.Module):
    """U-shaped residual attention block: down, ``num_cau`` CAUs, up over concat[down, attended].

    Returns the residual only; the caller adds it to its input.
    """

    def __init__(self, width: int, num_cau: int):
        super().__init__()
        self.down = DownAct(width, width)
        self.caus = nn.Sequential(*(CAU(width) for _ in range(num_cau)))
        self.up = UpAct(2 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.down(x)  # ceil(side / 2): an odd side goes back up to the same odd size
        return self.up(torch.cat([d, self.caus(d)], dim=1), x.shape[-2:])


class InitialFeatures(nn.Module):
    """Per-scale conv 3->width + PReLU on the image pyramid."""

    def __init__(self, width: int, in_channels: int = 3):
        super().__init__()
        self.conv_full = ConvAct(in_channels, width)
        self.conv_half = ConvAct(in_channels, width)
        self.conv_quarter = ConvAct(in_channels, width)

    def forward(self, i1, i2, i4):
        return self.conv_full(i1), self.conv_half(i2), self.conv_quarter(i4)


class CoarseFusion(nn.Module):
    """Coarse fusion module (CFM): RRUs with hidden widths w, 2w, 4w from coarse to fine."""

    def __init__(self, width: int):
        super().__init__()
        self.rru_quarter = RRU(width, width)
        self.rru_half = RRU(width, 2 * width)
        self.rru_full = RRU(width, 4 * width)
        self.up_quarter = UpAct(width, width)  # C4 -> U (1/2 scale)
        self.up_quarter_full = UpAct(width, width)  # U -> full scale
        self.up_half = UpAct(width, width)  # C2 -> full scale

    def forward(self, f1, f2, f4):
        half, full = f2.shape[-2:], f1.shape[-2:]
        c4 = f4 + self.rru_quarter(f4)
        u = self.up_quarter(c4, half)
        c2 = f2 + self.rru_half(f2 + u)
        c1 = f1 + self.rru_full(f1 + self.up_quarter_full(u, full) + self.up_half(c2, full))
        return c1, c2, c4


class FineFusion(nn.Module):
    """One repetition of the fine fusion module (FFM): a URAB per scale, coarse to fine."""

    def __init__(self, width: int, caus: tuple[int, int, int] = (1, 3, 3)):
        super().__init__()
        n_quarter, n_half, n_full = caus
        self.urab_quarter = URAB(width, n_quarter)
        self.urab_half = URAB(width, n_half)
        self.urab_full = URAB(width, n_full)
        self.up_quarter = UpAct(width, width)
        self.up_quarter_full = UpAct(width, width)
        self.up_half = UpAct(width, width)

    def forward(self, r1, r2, r4):
        half, full = r2.shape[-2:], r1.shape[-2:]
        r4 = r4 + self.urab_quarter(r4)  # new tensors: the coarse states c1, c2, c4 keep their values
        v = self.up_quarter(r4, half)
        r2 = r2 + self.urab_half(r2 + v)
        r1 = r1 + self.urab_full(r1 + self.up_quarter_full(v, full) + self.up_half(r2, full))
        return r1, r2, r4


class Reconstruction(nn.Module):
    """Fuse the fine and coarse features of each scale and predict the rain layer.

    ``tail`` takes concat[up-sampled coarser scales, full scale]; the release
    concatenates the other way round (its ``rnn5``), which the weight
    converter (:mod:`models.mspfn_tf`) handles by swapping the two halves of
    the kernel's input channels - the same function either way.
    """

    def __init__(self, width: int, out_channels: int = 3):
        super().__init__()
        self.fuse_full = ConvAct(2 * width, width)
        self.fuse_half = ConvAct(2 * width, width)
        self.fuse_quarter = ConvAct(2 * width, width)
        self.up_quarter = UpAct(width, width)
        self.up_half = UpAct(2 * width, width)
        self.tail = ConvAct(2 * width, width // 2)
        self.out = nn.Conv2d(width // 2, out_channels, 3, padding=1, bias=False)

    def forward(self, r1, r2, r4, c1, c2, c4):
        g1 = self.fuse_full(torch.cat([r1, c1], dim=1))
        g2 = self.fuse_half(torch.cat([r2, c2], dim=1))
        g4 = self.fuse_quarter(torch.cat([r4, c4], dim=1))
        g = self.up_half(torch.cat([self.up_quarter(g4, g2.shape[-2:]), g2], dim=1), g1.shape[-2:])
        return self.out(self.tail(torch.cat([g, g1], dim=1)))


CONVENTIONS = ("rgb01", "release")
SIZE_MULTIPLE = 4  # the input pyramid averages 4x4 blocks


class MSPFN(nn.Module):
    """MSPFN deraining network.

    Args:
        width: base feature width (64).
        num_ffm: repetitions M of the fine fusion module (17).
        caus: channel attention units per URAB at the (1/4, 1/2, full) scales;
            (1, 3, 3) as the training code, (1, 1, 1) as the released checkpoint.
        in_channels: image channels (3).
        convention: "rgb01" (RGB in [0, 1], this project's training) or
            "release" (the authors' test script: BGR in [-1, 1], whole image,
            8 bits by truncation); only the spec differs, not the network.
        input_range: kept for older checkpoints: with ``(-1, 1)`` the model
            takes RGB [0, 1] images and runs the network on them rescaled to
            [-1, 1] (and maps the result back).  Only with ``convention="rgb01"``.

    ``forward(x)`` takes (B, C, H, W) with H and W multiples of 4 and returns
    the derained image x - R.
    """

    spec = ModelSpec(pad_multiple=SIZE_MULTIPLE)

    def __init__(self, width: int = 64, num_ffm: int = 17, caus: tuple[int, int, int] = (1, 3, 3),
                 in_channels: int = 3, convention: str = "rgb01",
                 input_range: tuple[float, float] = (0.0, 1.0)):
        super().__init__()
        width = check_int("width", width, 4, 512, multiple=4)
        num_ffm = check_int("num_ffm", num_ffm, 0, 64)
        if isinstance(caus, (str, bytes)) or not hasattr(caus, "__len__") or len(caus) != 3:
            raise ModelOptionError(f"caus must be three counts (1/4, 1/2, full scale), got {caus!r}")
        caus = tuple(check_int(f"caus[{i}]", n, 0, 16) for i, n in enumerate(caus))
        in_channels = check_int("in_channels", in_channels, 3, 3)
        if convention not in CONVENTIONS:
            raise ModelOptionError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
        low, high = check_range("input_range", input_range)
        if convention == "release" and (low, high) != (0.0, 1.0):
            raise ModelOptionError("convention='release' already takes [-1, 1] input; leave input_range at (0, 1)")
        self.convention = convention
        self.input_range = (low, high)
        if convention == "release":
            self.spec = MSPFN.spec.replace(channel_order="BGR", input_range=(-1.0, 1.0), quantize="truncate",
                                           pad_multiple=SIZE_MULTIPLE, default_tile=0)
        self.features = InitialFeatures(width, in_channels)
        self.cfm = CoarseFusion(width)
        self.ffm = nn.ModuleList(FineFusion(width, caus) for _ in range(num_ffm))
        self.reconstruction = Reconstruction(width, in_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform convolution weights, zero biases; ConvLSTM kernels truncated normal (std 1e-3)."""
        lstm_convs = {id(m.conv) for m in self.modules() if isinstance(m, ConvLSTMCell)}
        for module in self.modules():
            if not isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                continue
            if id(module) in lstm_convs:
                nn.init.trunc_normal_(module.weight, std=1e-3, a=-2e-3, b=2e-3)
            else:
                nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % SIZE_MULTIPLE or w % SIZE_MULTIPLE:
            raise ValueError(
                f"MSPFN needs height and width divisible by {SIZE_MULTIPLE}, got {h}x{w}; "
                "pad the input (inference.padding.forward_padded)"
            )
        low, high = self.input_range
        scaled = (low, high) != (0.0, 1.0)
        if scaled:
            x = x * (high - low) + low
        i2 = F.avg_pool2d(x, 2, 2)
        i4 = F.avg_pool2d(x, 4, 4)
        f1, f2, f4 = self.features(x, i2, i4)
        c1, c2, c4 = self.cfm(f1, f2, f4)
        r1, r2, r4 = c1, c2, c4
        for block in self.ffm:
            r1, r2, r4 = block(r1, r2, r4)
        out = x - self.reconstruction(r1, r2, r4, c1, c2, c4)
        if scaled:
            out = (out - low) / (high - low)
        return out
