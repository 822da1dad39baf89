"""BRN and RESCAN: the authors' goldens, strict loading of the released files, conventions, odd sizes."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import SHARED, require_shared

from inference.runner import derain_image, load_model
from models import build_model, spec_of
from models.brn import BRN
from models.rescan import RESCAN
from utils.checkpoint import CheckpointError, extract_state_dict, load_model_weights
from utils.image_io import read_image, uint8_to_tensor

GOLDEN_CROP = (slice(100, 164), slice(200, 296))  # rows, cols of Rain100H input/001.png


def _golden(name: str) -> dict:
    return dict(np.load(require_shared("reference", "zoo", f"{name}.npz")))


def _net(name: str, *weights: str):
    net = build_model(name).eval()
    load_model_weights(net, require_shared("weights", *weights))
    return net


@pytest.mark.parametrize("train_set", ["Rain100H", "Rain100L"])
def test_brn_matches_authors_golden(train_set):
    gold = _golden(f"BRN_{train_set}")
    net = _net("BRN", "BRN", train_set, "net_latest.pth")
    with torch.no_grad():
        x, xs, r, rs = net(torch.from_numpy(gold["input"]))
    assert len(xs) == len(rs) == 8 and x is xs[-1] and r is rs[-1]
    assert np.abs(x.numpy() - gold["out"]).max() <= 1e-5
    assert np.abs(r.numpy() - gold["r"]).max() <= 1e-5


def test_rescan_matches_authors_golden():
    gold = _golden("RESCAN_RainHeavy")
    net = _net("RESCAN", "RESCAN", "RainHeavy", "latest")
    with torch.no_grad():
        out, stages, rains = net(torch.from_numpy(gold["input"]))
    assert len(stages) == len(rains) == 4 and out is stages[-1]
    assert np.abs(out.numpy() - gold["out"]).max() <= 1e-5
    assert np.abs(rains[-1].numpy() - gold["rain_last"]).max() <= 1e-5
    for rain, ref in zip(rains, gold["rain_all"]):
        assert np.abs(rain.numpy() - ref).max() <= 1e-5


@pytest.mark.parametrize("golden", ["BRN_Rain100H", "RESCAN_RainHeavy"])
def test_spec_gives_the_input_the_authors_fed(golden):
    """uint8 RGB -> spec.to_network is exactly the golden's network input (RGB for BRN, BGR for RESCAN)."""
    gold = _golden(golden)
    img = read_image(require_shared("data", "Rain100H", "input", "001.png"))[GOLDEN_CROP]
    model_cls = BRN if golden.startswith("BRN") else RESCAN
    x = model_cls.spec.to_network(uint8_to_tensor(img)[None])
    assert torch.equal(x, torch.from_numpy(gold["input"]))


def _released(model: str) -> list:
    folder = require_shared("weights", model)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    assert files, f"no weights under {folder}"
    return files


@pytest.mark.parametrize(("model", "n_params", "n_keys"), [("BRN", 412_518, 64), ("RESCAN", 149_823, 88)])
def test_every_released_file_loads_strictly(model, n_params, n_keys):
    """Through the one loader (module. prefixes, {'net': ...} wrappers), unchanged files, strict keys."""
    for path in _released(model):
        net, name = load_model(model, path)
        assert name == model and sum(p.numel() for p in net.parameters()) == n_params
        assert len(net.state_dict()) == n_keys


def test_weights_of_the_other_network_are_refused():
    with pytest.raises(CheckpointError, match="missing"):
        load_model("RESCAN", require_shared("weights", "BRN", "Rain100H", "net_latest.pth"))
    with pytest.raises(CheckpointError, match="do not fit BRN"):
        load_model("BRN", require_shared("weights", "RESCAN", "RainHeavy", "latest"))


def test_net_wrapper_and_prefix_are_unwrapped():
    sd = RESCAN(channels=4).state_dict()
    wrapped = {"net": {f"module.{k}": v for k, v in sd.items()}, "clock": 7, "opt": {"state": {}}}
    assert list(extract_state_dict(wrapped)) == list(sd)


def test_specs_state_the_release_conventions():
    brn, rescan = BRN.spec, RESCAN.spec
    assert (brn.channel_order, brn.input_range, brn.quantize) == ("RGB", (0.0, 1.0), "truncate")
    assert (rescan.channel_order, rescan.input_range, rescan.quantize) == ("BGR", (0.0, 1.0), "round")
    for spec in (brn, rescan):
        assert (spec.pad_multiple, spec.min_size, spec.default_tile) == (1, 0, 0)
    assert BRN().stages == 8 and RESCAN().stages == 4


@pytest.mark.parametrize("name", ["BRN", "RESCAN"])
def test_odd_size_through_derain_image(name):
    """37x53 runs unpadded; derain_image = the release's own conversion, written out by hand."""
    torch.manual_seed(1)
    net = build_model(name, stages=2).eval()
    img = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    got = derain_image(net, img, "cpu")
    x = torch.from_numpy(img.astype(np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        if name == "BRN":  # RGB in, np.uint8(255 * clip(x)) out
            out = net(x)[0][0].clamp(0, 1).numpy() * np.float32(255)
            want = out.astype(np.uint8)
        else:  # BGR in, clip((O - rain) * 255) rounded half to even out, still BGR
            bgr = x.flip(1).contiguous()
            out = np.clip(((bgr - net(bgr)[2][-1]) * 255)[0].numpy(), 0, 255)
            want = np.rint(out).astype(np.uint8)[::-1]
    assert got.shape == (37, 53, 3) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, want.transpose(1, 2, 0))


def _conv(sd, name, t, dilation=1):
    return F.conv2d(t, sd[f"{name}.weight"], sd[f"{name}.bias"], padding=dilation, dilation=dilation)


def test_brn_forward_matches_written_out_recursion():
    net = BRN(stages=3, width=8).eval()
    sd, x = net.state_dict(), torch.rand(2, 3, 9, 11)
    h = c = hr = cr = torch.zeros(2, 8, 9, 11)
    xp = rp = x

    def lstm(z, cell, s):
        i, f = torch.sigmoid(_conv(sd, f"conv_i{s}.0", z)), torch.sigmoid(_conv(sd, f"conv_f{s}.0", z))
        g, o = torch.tanh(_conv(sd, f"conv_g{s}.0", z)), torch.sigmoid(_conv(sd, f"conv_o{s}.0", z))
        cell = f * cell + i * g
        return o * torch.tanh(cell), cell

    def blocks(y, names):
        for b in names:
            y = F.relu(F.relu(_conv(sd, f"{b}.2", F.relu(_conv(sd, f"{b}.0", y)))) + y)
        return y

    for _ in range(3):
        hr, cr = lstm(torch.cat([F.relu(_conv(sd, "conv0_r.0", torch.cat([x, rp], 1))), hr, h], 1), cr, "_r")
        rp = _conv(sd, "conv_r.0", blocks(hr, [f"res_conv{k}_r" for k in (1, 2, 3)]))
        h, c = lstm(torch.cat([F.relu(_conv(sd, "conv0.0", torch.cat([x, xp, rp], 1))), h, hr], 1), c, "")
        xp = _conv(sd, "conv.0", blocks(h, [f"res_conv{k}" for k in range(1, 6)]))
    with torch.no_grad():
        out, _, rain, _ = net(x)
    assert torch.allclose(out, xp, atol=1e-6) and torch.allclose(rain, rp, atol=1e-6)


def test_rescan_forward_matches_written_out_recursion():
    net = RESCAN(stages=3, channels=8).eval()
    sd, inp = net.state_dict(), torch.rand(2, 3, 19, 23)

    def se(v, p):
        s = F.adaptive_avg_pool2d(v, 1).flatten(1)
        s = torch.sigmoid(F.linear(F.relu(F.linear(s, sd[f"{p}.fc.0.weight"], sd[f"{p}.fc.0.bias"])),
                                   sd[f"{p}.fc.2.weight"], sd[f"{p}.fc.2.bias"]))
        return v * s[:, :, None, None]

    states, x, rains = [None] * 5, inp, []
    for _ in range(3):
        for j, d in enumerate((1, 1, 2, 4, 8)):
            u, h = f"rnns.{j}", states[j]
            if h is None:
                h = torch.sigmoid(_conv(sd, f"{u}.conv_xz", x, d)) * torch.tanh(_conv(sd, f"{u}.conv_xn", x, d))
            else:
                z = torch.sigmoid(_conv(sd, f"{u}.conv_xz", x, d) + _conv(sd, f"{u}.conv_hz", h))
                r = torch.sigmoid(_conv(sd, f"{u}.conv_xr", x, d) + _conv(sd, f"{u}.conv_hr", h))
                n = torch.tanh(_conv(sd, f"{u}.conv_xn", x, d) + _conv(sd, f"{u}.conv_hn", r * h))
                h = (1 - z) * h + z * n
            x = states[j] = F.leaky_relu(se(h, f"{u}.se"), 0.2)
        y = F.leaky_relu(se(_conv(sd, "dec.0", x), "dec.1"), 0.2)
        rains.append(F.conv2d(y, sd["dec.3.weight"], sd["dec.3.bias"]))
        x = inp - rains[-1]
    with torch.no_grad():
        out, stages, got = net(inp)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(got, rains))
    assert torch.allclose(out, inp - rains[-1], atol=1e-6) and len(stages) == 3


@pytest.mark.skipif(not (SHARED / "data" / "Rain100H").is_dir(), reason="../shared/data/Rain100H not found")
def test_rescan_sees_bgr():
    """Feeding RESCAN RGB instead of BGR gives other pixels (the trap of the release's cv2 reading)."""
    net = _net("RESCAN", "RESCAN", "RainHeavy", "latest")
    img = read_image(SHARED / "data" / "Rain100H" / "input" / "001.png")[100:132, 200:248]
    x = uint8_to_tensor(img)[None]
    with torch.no_grad():
        right = spec_of(net).from_network(net(spec_of(net).to_network(x))[0])
        wrong = net(x)[0]
    assert (right - wrong).abs().max() > 1e-2
