"""MSPFN: parameter counts of the release, TF-'SAME' resampling, initialisation, shapes, training."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from inference.padding import forward_padded
from losses import build_loss
from models import build_model
from models.mspfn import MSPFN, Conv2dSame, ConvLSTMCell, ConvTranspose2dSame


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _full_size(caus) -> MSPFN:
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        return MSPFN(caus=caus)


def _tiny(**kwargs) -> MSPFN:
    return MSPFN(**{"width": 16, "num_ffm": 2, "caus": (1, 2, 1), **kwargs})


@pytest.mark.parametrize(
    ("caus", "total", "per_ffm"),
    [((1, 3, 3), 20_995_776, 975_392), ((1, 1, 1), 15_823_424, 671_136)],
)
def test_parameter_counts_match_release(caus, total, per_ffm):
    net = _full_size(caus)
    assert _count(net) == total
    assert _count(net.features) == 5_376
    assert _count(net.cfm) == 4_038_880
    assert sum(_count(m) for m in net.modules() if isinstance(m, ConvLSTMCell)) == 3_614_464
    assert _count(net.reconstruction) == 369_856
    assert len(net.ffm) == 17
    assert all(_count(block) == per_ffm for block in net.ffm)


def test_registry_and_class_attributes():
    net = build_model("MSPFN", width=8, num_ffm=1)
    assert isinstance(net, MSPFN)
    assert (MSPFN.spec.pad_multiple, MSPFN.spec.default_tile) == (4, 0)
    assert net.spec is MSPFN.spec and net.spec.is_plain
    assert len(net.ffm) == 1


def test_release_convention_spec_and_options():
    net = build_model("MSPFN", width=8, num_ffm=1, convention="release")
    spec = net.spec
    assert (spec.channel_order, spec.input_range, spec.quantize) == ("BGR", (-1.0, 1.0), "truncate")
    assert (spec.pad_multiple, spec.default_tile) == (4, 0) and not spec.is_plain
    assert MSPFN.spec.is_plain  # the class's spec is untouched
    with pytest.raises(ValueError, match="convention must be one of"):
        MSPFN(width=8, num_ffm=1, convention="bgr")
    with pytest.raises(ValueError, match="leave input_range"):
        MSPFN(width=8, num_ffm=1, convention="release", input_range=(-1, 1))
    # same network, same weights: only the conventions around it differ
    plain = _tiny().eval()
    release = _tiny(convention="release").eval()
    release.load_state_dict(plain.state_dict())
    x = torch.rand(1, 3, 12, 20) * 2 - 1
    with torch.no_grad():
        assert torch.equal(release(x), plain(x))


def test_release_convention_converts_images_exactly_as_the_release_script():
    """In: ``float32(img / 127.5 - 1)`` of the BGR image; out: ``np.uint8(np.clip((y + 1) * 127.5, 0, 255))``."""
    from utils.image_io import tensor_to_uint8

    spec = MSPFN(width=4, num_ffm=0, caus=(0, 0, 0), convention="release").spec
    rgb = torch.arange(256, dtype=torch.uint8).repeat(3, 1)[:, None]  # every grey level, (3, 1, 256)
    bgr = rgb.flip(0).numpy().transpose(1, 2, 0)
    got = spec.uint8_to_network(rgb[None])[0].numpy().transpose(1, 2, 0)
    assert np.array_equal(got, (bgr / 127.5 - 1).astype(np.float32))
    assert torch.equal(MSPFN.spec.uint8_to_network(rgb[None]), rgb[None].float() / 255)  # plain: unchanged
    # outputs: random values plus the float32 neighbours of every grey-level boundary
    edges = np.arange(-2, 258, dtype=np.float64) / 127.5 - 1
    near = np.concatenate([np.nextafter(edges.astype(np.float32), np.float32(d)) for d in (-2, 2)])
    y = np.concatenate([np.random.default_rng(0).uniform(-1.2, 1.2, 30_000), edges, near]).astype(np.float32)
    y = y[: y.size // 3 * 3].reshape(1, 3, 1, -1)  # network output: BGR
    want = np.uint8(np.clip((y[0].transpose(1, 2, 0) + 1) * 127.5, 0, 255.0))[..., ::-1]  # saved BGR -> RGB
    ours = tensor_to_uint8(spec.from_network(torch.from_numpy(y))[0], spec.quantize)
    assert np.array_equal(ours, want)


@pytest.mark.parametrize("size", [(37, 53), (36, 52), (100, 132)])
def test_any_size_through_forward_padded_keeps_shape(size):
    net = _tiny().eval()
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        y = forward_padded(net, x, net.spec.pad_multiple)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    if size[0] % 4:
        with pytest.raises(ValueError, match="divisible by 4"):
            net(x)


def test_sides_that_are_4_times_odd_give_odd_eighth_scale_maps():
    """36x52: the 1/4-scale maps are 9x13, the attention blocks work at 5x7 and come back to 9x13."""
    net = _tiny().eval()
    seen = {}

    def record(name):
        def hook(module, inputs, output):
            seen.setdefault(name, tuple(output.shape[-2:]))
        return hook

    net.ffm[0].urab_quarter.down.register_forward_hook(record("down"))
    net.ffm[0].urab_quarter.register_forward_hook(record("up"))
    with torch.no_grad():
        y = net(torch.rand(1, 3, 36, 52))
    assert y.shape == (1, 3, 36, 52)
    assert seen == {"down": (5, 7), "up": (9, 13)}


def _manual_same_conv_stride2(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """TF 'SAME' 3x3 stride-2 convolution of one channel, written out: pad (before, after) per side."""
    h, wd = x.shape
    oh, ow = -(-h // 2), -(-wd // 2)
    ph, pw = max((oh - 1) * 2 + 3 - h, 0), max((ow - 1) * 2 + 3 - wd, 0)
    xp = np.zeros((h + ph, wd + pw))
    xp[ph // 2: ph // 2 + h, pw // 2: pw // 2 + wd] = x
    out = np.zeros((oh, ow))
    for i in range(oh):
        for j in range(ow):
            out[i, j] = (xp[2 * i: 2 * i + 3, 2 * j: 2 * j + 3] * w).sum()
    return out


@pytest.mark.parametrize("size", [(6, 8), (7, 9), (6, 9)])
def test_stride2_conv_pads_like_tensorflow_same(size):
    conv = Conv2dSame(1, 1, 3, stride=2).double()
    x = torch.randn(1, 1, *size, dtype=torch.float64)
    with torch.no_grad():
        got = conv(x)[0, 0].numpy()
    want = _manual_same_conv_stride2(x[0, 0].numpy(), conv.weight[0, 0].detach().numpy())
    assert got.shape == want.shape == (-(-size[0] // 2), -(-size[1] // 2))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    if size == (6, 8):  # even sizes: one zero row/column after, unlike PyTorch's symmetric padding=1
        explicit = F.conv2d(F.pad(x, (0, 1, 0, 1)), conv.weight, stride=2)
        assert torch.equal(conv(x), explicit)
        assert not torch.allclose(conv(x), F.conv2d(x, conv.weight, stride=2, padding=1))


def test_transposed_conv_is_adjoint_of_same_conv_and_doubles_size():
    """TF's conv2d_transpose(SAME) is the gradient of conv2d(SAME): <A x, y> == <x, A^T y>."""
    down = Conv2dSame(3, 5, 3, stride=2).double()
    up = ConvTranspose2dSame(5, 3).double()
    with torch.no_grad():
        up.weight.copy_(down.weight)  # ConvTranspose (in=5, out=3) layout == Conv2d (out=5, in=3)
    x = torch.randn(2, 3, 8, 12, dtype=torch.float64)
    y = torch.randn(2, 5, 4, 6, dtype=torch.float64)
    with torch.no_grad():
        ay, aty = down(x), up(y)
    assert ay.shape == y.shape and aty.shape == x.shape
    assert torch.allclose((ay * y).sum(), (x * aty).sum(), rtol=1e-12, atol=1e-10)
    # PyTorch's padding=1, output_padding=1 has the same shape but is shifted by a pixel.
    torch_style = F.conv_transpose2d(y, up.weight, stride=2, padding=1, output_padding=1)
    assert torch_style.shape == aty.shape
    assert not torch.allclose(torch_style, aty)
    assert torch.allclose(torch_style[..., :-1, :-1], aty[..., 1:, 1:])


@pytest.mark.parametrize("size", [(9, 13), (10, 13), (7, 8)])
def test_transposed_conv_to_any_size_is_adjoint_of_same_conv(size):
    """TF's conv2d_transpose(SAME, output_shape=size) is the gradient of conv2d(SAME) on a size-sized input.

    For an odd side the forward convolution pads one pixel on each side, so
    the transposed one drops the first and the last row/column.
    """
    down = Conv2dSame(3, 4, 3, stride=2).double()
    up = ConvTranspose2dSame(4, 3).double()
    with torch.no_grad():
        up.weight.copy_(down.weight)
    x = torch.randn(1, 3, *size, dtype=torch.float64)
    y = torch.randn(1, 4, -(-size[0] // 2), -(-size[1] // 2), dtype=torch.float64)
    with torch.no_grad():
        ay, aty = down(x), up(y, size)
    assert ay.shape == y.shape and aty.shape == x.shape
    assert torch.allclose((ay * y).sum(), (x * aty).sum(), rtol=1e-12, atol=1e-10)
    with pytest.raises(ValueError, match="cannot turn"):
        up(y, (size[0] + 2, size[1]))


def test_initialisation():
    net = _tiny()
    prelus = [m for m in net.modules() if isinstance(m, nn.PReLU)]
    assert prelus and all(torch.count_nonzero(p.weight) == 0 for p in prelus)
    assert all(p.weight.numel() == p.num_parameters > 1 for p in prelus)  # one slope per channel
    lstm = [m.conv.weight for m in net.modules() if isinstance(m, ConvLSTMCell)]
    for w in lstm:
        assert w.abs().max() <= 2e-3
        assert 0.5e-3 < w.std() < 1e-3  # N(0, 1e-3) truncated at 2 sigma has std 0.88e-3
    biases = [m.bias for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.bias is not None]
    assert biases and all(torch.count_nonzero(b) == 0 for b in biases)
    conv = net.features.conv_full.conv.weight  # Xavier uniform: bound sqrt(6 / (fan_in + fan_out))
    bound = (6 / (3 * 9 + 16 * 9)) ** 0.5
    assert conv.abs().max() <= bound and conv.abs().max() > 0.8 * bound


def test_conv_lstm_cell_gates():
    cell = ConvLSTMCell(4, 3).double()
    nn.init.normal_(cell.conv.weight, std=0.3)
    nn.init.normal_(cell.conv.bias, std=0.3)
    x = torch.randn(1, 4, 5, 6, dtype=torch.float64)
    h0, c0 = torch.randn(1, 3, 5, 6, dtype=torch.float64), torch.randn(1, 3, 5, 6, dtype=torch.float64)
    with torch.no_grad():
        gates = cell.conv(torch.cat([x, h0], 1))
        i, j, f, o = gates[:, 0:3], gates[:, 3:6], gates[:, 6:9], gates[:, 9:12]
        c = c0 * torch.sigmoid(f + 1.0) + torch.sigmoid(i) * torch.tanh(j)
        h, (h_state, c_state) = cell(x, (h0, c0))
        assert torch.allclose(h, torch.tanh(c) * torch.sigmoid(o)) and torch.allclose(c_state, c)
        assert h_state is h
        # no state == zero state (the hidden part of the kernel multiplies zeros)
        zeros = torch.zeros_like(h0)
        assert torch.allclose(cell(x)[0], cell(x, (zeros, zeros))[0], atol=1e-14)


def test_output_is_input_minus_rain_layer():
    net = _tiny().eval()
    x = torch.rand(1, 3, 16, 24)
    with torch.no_grad():
        rain = x - net(x)
        assert rain.abs().max() > 0
        net.reconstruction.out.weight.zero_()
        assert torch.equal(net(x), x)


def test_input_range_maps_to_release_scale_and_back():
    plain = _tiny().eval()
    released = _tiny(input_range=(-1, 1)).eval()
    released.load_state_dict(plain.state_dict())
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(released(x), (plain(2 * x - 1) + 1) / 2, atol=1e-6)


def test_own_checkpoints_still_load_and_training_refuses_the_release_convention(tmp_path):
    """Checkpoints of our training (old input_range option included) load through the runner unchanged."""
    from inference.runner import derain_image, load_model
    from training.config import load_config
    from training.step import build_training_model
    from utils.checkpoint import FORMAT_NAME, save_checkpoint

    net = _tiny(input_range=(-1, 1)).eval()
    kwargs = {"width": 16, "num_ffm": 2, "caus": [1, 2, 1], "input_range": [-1, 1]}
    path = tmp_path / "model_best.pth"
    save_checkpoint({"format": FORMAT_NAME, "version": 1, "model": net.state_dict(), "model_name": "MSPFN",
                     "model_kwargs": kwargs, "epoch": 3}, path)
    loaded, name = load_model(None, path)
    assert name == "MSPFN" and loaded.spec.is_plain and loaded.input_range == (-1.0, 1.0)
    img = np.random.default_rng(0).integers(0, 256, (21, 30, 3), dtype=np.uint8)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        want = forward_padded(net, x)[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
    assert np.array_equal(derain_image(loaded, img, "cpu"), want)

    release = ["MODEL.NAME", "MSPFN", "MODEL.ARGS.width", "8", "MODEL.ARGS.num_ffm", "1",
               "MODEL.ARGS.convention", "release"]
    with pytest.raises(ValueError, match="takes BGR input in \\(-1.0, 1.0\\); training uses RGB in \\[0, 1\\]"):
        load_config(None, release)  # refused when the config is read, before anything is built
    cfg = load_config(None, release[:6])
    assert build_training_model(cfg, torch.device("cpu")).spec.is_plain


def test_training_steps_lower_mspfn_loss():
    net = MSPFN(width=8, num_ffm=1, caus=(1, 1, 1))
    loss_fn = build_loss("MSPFNLoss")
    clean = torch.rand(2, 3, 16, 16)
    rainy = (clean + 0.3 * (torch.rand_like(clean) > 0.9)).clamp(0, 1)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    losses = []
    for _ in range(6):
        opt.zero_grad()
        loss = loss_fn(net(rainy), clean)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        final = loss_fn(net(rainy), clean).item()
    assert np.isfinite(losses).all()
    assert final < 0.9 * losses[0]
