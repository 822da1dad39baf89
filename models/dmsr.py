"""DMSR: Dual-Domain Multi-Scale Representation network (Zou et al., 2025).

A three-level multi-input multi-output encoder-decoder.  Each encoder and
decoder stage ends in a dual-domain block that mixes a multi-scale spatial
branch (MPSRM) with a Fourier branch (FDSM).  This module computes what the
authors' released implementation computes (``docs/ARCHITECTURE.md`` describes
it and where the paper's figure differs); module and parameter names follow
the release so its checkpoints load unchanged.

Only ``torch`` is imported here; no I/O, no device placement.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .options import check_bool, check_int
from .spec import ModelSpec

__all__ = ["DMSR"]


class BasicConv(nn.Module):
    """Convolution (or stride-2 transposed convolution) + optional GELU, kept in ``main``."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1,
                 act: bool = True, transpose: bool = False):
        super().__init__()
        if transpose:
            conv = nn.ConvTranspose2d(in_ch, out_ch, kernel_size, stride=stride,
                                      padding=kernel_size // 2 - 1, bias=True)
        else:
            conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=kernel_size // 2, bias=True)
        layers = [conv]
        if act:
            layers.append(nn.GELU())
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


class SpatialAttention(nn.Module):
    """7x7 convolution over the channel mean and max (no sigmoid, as released)."""

    def __init__(self):
        super().__init__()
        self.sa = nn.Conv2d(2, 1, 7, padding=3, padding_mode="reflect", bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stats = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return self.sa(stats)


class PixelAttention(nn.Module):
    """Grouped 7x7 convolution over the channel-interleaved pair (r_c, p_c), then sigmoid.

    ``efficient=True`` computes the same grouped convolution as two depthwise
    convolutions (one per member of each pair) instead of building the
    interleaved 2C-channel tensor; the weights and the result are the same up
    to floating-point summation order.
    """

    def __init__(self, channels: int, efficient: bool = False):
        super().__init__()
        self.pa2 = nn.Conv2d(2 * channels, channels, 7, padding=3, padding_mode="reflect",
                             groups=channels, bias=True)
        self.efficient = efficient

    def forward(self, r: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        if self.efficient:
            c = r.shape[1]
            w = self.pa2.weight
            rp = F.pad(r, (3, 3, 3, 3), mode="reflect")
            pp = F.pad(p, (3, 3, 3, 3), mode="reflect")
            out = F.conv2d(rp, w[:, 0:1], self.pa2.bias, groups=c) + F.conv2d(pp, w[:, 1:2], None, groups=c)
        else:
            b, c, h, w_ = r.shape
            out = self.pa2(torch.stack([r, p], dim=2).reshape(b, 2 * c, h, w_))
        return torch.sigmoid(out)


class SPGA(nn.Module):
    """Spatial pixel guided attention.  The release *adds* the sigmoid map to its features."""

    def __init__(self, channels: int, multiply: bool = False, efficient_attention: bool = False):
        super().__init__()
        self.conv2 = BasicConv(channels, channels, 1, act=True)
        self.sa = SpatialAttention()
        self.dwconv = nn.Sequential(
            nn.Conv2d(channels, channels, 1, bias=False),
            nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False),
            nn.GELU(),
            nn.Conv2d(channels, channels, 1, bias=False),
        )
        self.pa = PixelAttention(channels, efficient=efficient_attention)
        self.multiply = multiply  # figure-style variant (ablation); off = the release

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv2(r))
        p = self.sa(x) * self.dwconv(x)
        attn = self.pa(r, p)
        return attn * x if self.multiply else attn + x


class MPSRM(nn.Module):
    """Multi-scale progressive spatial refinement: pooled branches (4, 2, 1), coarse to fine."""

    factors = (4, 2, 1)

    def __init__(self, channels: int, spga_multiply: bool = False, efficient_attention: bool = False):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1, bias=False) for _ in self.factors)
        self.dynas = nn.ModuleList(SPGA(channels, spga_multiply, efficient_attention) for _ in self.factors)
        self.conv_sum = nn.Conv2d(channels, channels, 3, padding=1, bias=False)

    @staticmethod
    def _resize(x: torch.Tensor, size) -> torch.Tensor:
        if tuple(x.shape[-2:]) == tuple(size):
            return x
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        total = x
        prev = None
        for factor, conv, dyna in zip(self.factors, self.convs, self.dynas):
            level = F.avg_pool2d(x, factor) if factor > 1 else x
            if prev is not None:
                level = level + self._resize(prev, level.shape[-2:])
            prev = dyna(conv(level))
            total = total + self._resize(prev, size)
        return self.conv_sum(F.gelu(total))


class FourierUnit(nn.Module):
    """Global mixing in the frequency domain: rfft2 -> 1x1 conv + BN + ReLU on (Re, Im) -> irfft2.

    Runs in float32 even under autocast (FFTs of half-precision tensors are
    restricted to power-of-two sizes and lose accuracy) and returns the input dtype.

    ``efficient=True`` computes the same thing with one memory copy instead of
    two: the spectrum is copied once into channels-last order, where the
    release's interleaved channels (2c = Re, 2c+1 = Im) sit next to each other
    in memory exactly as a complex tensor's real and imaginary parts do.  The
    convolution, batch norm and ReLU then run channels-last (no layout
    conversion inside the convolution), and their output is viewed as the
    complex spectrum for irfft2 without a copy.  Same parameters, same
    state dict; the result differs only by floating-point summation order.
    """

    def __init__(self, channels: int, efficient: bool = False):
        super().__init__()
        self.conv_layer = nn.Conv2d(2 * channels, 2 * channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(2 * channels)
        self.efficient = efficient

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        with torch.autocast(device_type=x.device.type, enabled=False):
            spec = torch.fft.rfft2(x.float(), norm="ortho")
            out = self._mix_efficient(spec, x.shape) if self.efficient else self._mix(spec, x.shape)
        return out.to(dtype)

    def _mix(self, spec: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        b, c, h, w = shape
        wf = spec.shape[-1]
        # (B, C, H, Wf, 2) -> (B, C, 2, H, Wf) -> (B, 2C, H, Wf): channel 2c = Re, 2c+1 = Im
        z = torch.view_as_real(spec).permute(0, 1, 4, 2, 3).reshape(b, 2 * c, h, wf)
        z = F.relu(self.bn(self.conv_layer(z)))
        z = z.reshape(b, c, 2, h, wf).permute(0, 1, 3, 4, 2).contiguous()
        return torch.fft.irfft2(torch.view_as_complex(z), s=(h, w), norm="ortho")

    def _mix_efficient(self, spec: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        b, c, h, w = shape
        wf = spec.shape[-1]
        # The one copy: (B, C, H, Wf, 2) -> memory order (B, H, Wf, C, 2), i.e. the interleaved
        # 2C channels channels-last; viewed back as (B, 2C, H, Wf) without moving data.
        z = torch.view_as_real(spec).permute(0, 2, 3, 1, 4).contiguous()
        z = z.view(b, h, wf, 2 * c).permute(0, 3, 1, 2)
        z = F.relu(self.bn(self.conv_layer(z)))
        z = z.contiguous(memory_format=torch.channels_last)  # normally a no-op: conv, BN and ReLU keep the format
        # (B, 2C, H, Wf) channels-last == (B, H, Wf, C, 2) in memory == a complex (B, H, Wf, C)
        spec = torch.view_as_complex(z.permute(0, 2, 3, 1).view(b, h, wf, c, 2))
        return torch.fft.irfft2(spec, s=(h, w), dim=(1, 2), norm="ortho").permute(0, 3, 1, 2)


class FDSM(nn.Module):
    """Frequency-domain branch: two depthwise convs on the channel halves, a Fourier unit, BN + ReLU."""

    def __init__(self, channels: int, efficient_fft: bool = False):
        super().__init__()
        half = channels // 2
        self.conv_init_1 = nn.Sequential(nn.Conv2d(half, half, 3, padding=1, groups=half), nn.GELU())
        self.conv_init_2 = nn.Sequential(nn.Conv2d(half, half, 5, padding=2, groups=half), nn.GELU())
        # Created but never used by the release's forward; kept so its checkpoints load strictly.
        # Frozen: a parameter without gradient would make DistributedDataParallel fail.
        self.conv_mid = nn.Sequential(nn.Conv2d(channels, half, 1), nn.GELU())
        self.conv_mid.requires_grad_(False)
        self.FFC = FourierUnit(channels, efficient=efficient_fft)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.chunk(2, dim=1)
        x0 = torch.cat([self.conv_init_1(x1), self.conv_init_2(x2)], dim=1)
        return F.relu(self.bn(self.FFC(x0) + x0))


class ResBlockNone(nn.Module):
    """Plain residual block: conv3 + GELU, depthwise conv3 + GELU, conv3."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = BasicConv(channels, channels, 3, act=True)
        self.proj = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.proj_act = nn.GELU()
        self.conv2 = BasicConv(channels, channels, 3, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.proj_act(self.proj(self.conv1(x))))


class DualDomainBlock(nn.Module):
    """The residual block that ends each stage: MPSRM (spatial) and FDSM (frequency) side by side.

    Ablations: ``use_mpsrm=False`` / ``use_fdsm=False`` replace that branch by
    the identity (the fusing conv still sees 2C channels).
    """

    def __init__(self, channels: int, use_mpsrm: bool = True, use_fdsm: bool = True,
                 spga_multiply: bool = False, efficient_attention: bool = False, efficient_fft: bool = False):
        super().__init__()
        self.conv1 = BasicConv(channels, channels, 3, act=True)
        self.proj = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.proj_act = nn.GELU()
        self.MPSRM = MPSRM(channels, spga_multiply, efficient_attention) if use_mpsrm else nn.Identity()
        self.FDSM = FDSM(channels, efficient_fft) if use_fdsm else nn.Identity()
        self.conv2 = BasicConv(2 * channels, channels, 3, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.proj_act(self.proj(self.conv1(x)))
        return x + self.conv2(torch.cat([self.MPSRM(t), self.FDSM(t)], dim=1))


class Stage(nn.Module):
    """EBlock / DBlock of the release: n-1 plain residual blocks and one dual-domain block."""

    def __init__(self, channels: int, num_res: int, **block_opts):
        super().__init__()
        blocks = [ResBlockNone(channels) for _ in range(num_res - 1)]
        blocks.append(DualDomainBlock(channels, **block_opts))
        self.layers = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class SCM(nn.Module):
    """Shallow embedding of a down-scaled input image."""

    def __init__(self, out_ch: int):
        super().__init__()
        self.main = nn.Sequential(
            BasicConv(3, out_ch // 4, 3, act=True),
            BasicConv(out_ch // 4, out_ch // 2, 1, act=True),
            BasicConv(out_ch // 2, out_ch // 2, 3, act=True),
            BasicConv(out_ch // 2, out_ch, 1, act=False),
            nn.InstanceNorm2d(out_ch, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


class FAM(nn.Module):
    """Feature fusion: 3x3 conv over the concatenation of two feature maps."""

    def __init__(self, channels: int):
        super().__init__()
        self.merge = BasicConv(2 * channels, channels, 3, act=False)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return self.merge(torch.cat([x1, x2], dim=1))


class DMSR(nn.Module):
    """DMSR deraining network.

    Args:
        base_channels: width of the full-resolution level (48 in the paper).
        num_res: residual blocks per encoder/decoder stage (16 in the paper).
        use_mpsrm, use_fdsm: ablation switches (both on = the paper model).
        spga_multiply: multiply by the SPGA attention map as the paper figure
            draws it, instead of adding it as the release does (ablation).
        efficient_attention: compute the pixel attention without the
            channel-interleaving copy (same weights, same maths; faster).
        efficient_fft: run the Fourier unit with one memory copy instead of
            two, channels-last (same weights, same maths; see FourierUnit).
        zero_init_output: start the three output convolutions at zero, so that
            an untrained model returns its input (a training option, not the
            release's initialisation; the CPU demo uses it to spend its few
            steps on rain rather than on relearning the image).

    ``forward(x)`` takes (B, 3, H, W) with H and W divisible by 16 and at
    least 64 (``inference.padding.forward_padded`` pads any size) and returns
    ``[full, half, quarter]`` restored images, like the release.
    """

    # 1/16-scale attention maps need 4 pixels for their reflect padding of 3, hence min_size 64;
    # the release tests in 128-pixel windows.
    spec = ModelSpec(pad_multiple=16, min_size=64, default_tile=128,
                     fast_opts={"efficient_attention": True, "efficient_fft": True})

    def __init__(self, base_channels: int = 48, num_res: int = 16, use_mpsrm: bool = True,
                 use_fdsm: bool = True, spga_multiply: bool = False, efficient_attention: bool = False,
                 efficient_fft: bool = False, zero_init_output: bool = False):
        super().__init__()
        c = check_int("base_channels", base_channels, 8, 256, multiple=8)
        num_res = check_int("num_res", num_res, 1, 64)
        for flag, value in (("use_mpsrm", use_mpsrm), ("use_fdsm", use_fdsm), ("spga_multiply", spga_multiply),
                            ("efficient_attention", efficient_attention), ("efficient_fft", efficient_fft),
                            ("zero_init_output", zero_init_output)):
            check_bool(flag, value)
        opts = dict(use_mpsrm=use_mpsrm, use_fdsm=use_fdsm, spga_multiply=spga_multiply,
                    efficient_attention=efficient_attention, efficient_fft=efficient_fft)
        self.Encoder = nn.ModuleList([Stage(c, num_res, **opts), Stage(2 * c, num_res, **opts),
                                      Stage(4 * c, num_res, **opts)])
        self.feat_extract = nn.ModuleList([
            BasicConv(3, c, 3, act=True),
            BasicConv(c, 2 * c, 3, stride=2, act=True),
            BasicConv(2 * c, 4 * c, 3, stride=2, act=True),
            BasicConv(4 * c, 2 * c, 4, stride=2, act=True, transpose=True),
            BasicConv(2 * c, c, 4, stride=2, act=True, transpose=True),
            BasicConv(c, 3, 3, act=False),
        ])
        self.Decoder = nn.ModuleList([Stage(4 * c, num_res, **opts), Stage(2 * c, num_res, **opts),
                                      Stage(c, num_res, **opts)])
        self.Convs = nn.ModuleList([BasicConv(4 * c, 2 * c, 1, act=True), BasicConv(2 * c, c, 1, act=True)])
        self.ConvsOut = nn.ModuleList([BasicConv(4 * c, 3, 3, act=False), BasicConv(2 * c, 3, 3, act=False)])
        self.FAM1 = FAM(4 * c)
        self.SCM1 = SCM(4 * c)
        self.FAM2 = FAM(2 * c)
        self.SCM2 = SCM(2 * c)
        if zero_init_output:
            for head in (self.ConvsOut[0], self.ConvsOut[1], self.feat_extract[5]):
                nn.init.zeros_(head.main[0].weight)
                nn.init.zeros_(head.main[0].bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h, w = x.shape[-2:]
        if h % self.spec.pad_multiple or w % self.spec.pad_multiple or min(h, w) < self.spec.min_size:
            raise ValueError(
                f"DMSR needs height and width divisible by {self.spec.pad_multiple} and at least "
                f"{self.spec.min_size}, got {h}x{w}; "
                "use inference.padding.forward_padded (or test.py / derain.py, which pad for you)"
            )
        x2 = F.interpolate(x, scale_factor=0.5)
        x4 = F.interpolate(x2, scale_factor=0.5)
        z2 = self.SCM2(x2)
        z4 = self.SCM1(x4)
        fe = self.feat_extract

        res1 = self.Encoder[0](fe[0](x))
        res2 = self.Encoder[1](self.FAM2(fe[1](res1), z2))
        z = self.Decoder[0](self.Encoder[2](self.FAM1(fe[2](res2), z4)))
        out4 = self.ConvsOut[0](z) + x4
        z = self.Decoder[1](self.Convs[0](torch.cat([fe[3](z), res2], dim=1)))
        out2 = self.ConvsOut[1](z) + x2
        z = self.Decoder[2](self.Convs[1](torch.cat([fe[4](z), res1], dim=1)))
        out1 = fe[5](z) + x
        return [out1, out2, out4]
