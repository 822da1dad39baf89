"""PReNet family: the authors' released weights load strictly and derain a real Rain100H image."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import require_shared

from inference.padding import forward_padded
from models import build_model
from models.prenet import PRN, PReNet, PReNet_r, PRN_r
from utils.checkpoint import CheckpointError, load_model_weights
from utils.image_io import read_image, uint8_to_tensor

# class name -> (released folder name, parameter count)
RELEASED = {
    "PReNet": ("PReNet6", 168_963),
    "PReNet_r": ("PReNet6_r", 94_979),
    "PRN": ("PRN6", 95_107),
    "PRN_r": ("PRN6_r", 21_123),
}


def _weights(train_set: str, folder: str):
    return require_shared("weights", "PReNet", train_set, folder, "net_latest.pth")


@pytest.mark.parametrize("train_set", ["Rain100H", "Rain100L"])
@pytest.mark.parametrize("name", sorted(RELEASED))
def test_released_weights_load_strictly(name, train_set):
    folder, n_params = RELEASED[name]
    net = build_model(name)
    assert sum(p.numel() for p in net.parameters()) == n_params
    load_model_weights(net, _weights(train_set, folder))
    x = torch.rand(1, 3, 13, 17)
    with torch.no_grad():
        final, stages = net.eval()(x)
    assert final.shape == x.shape and len(stages) == 6
    assert final is stages[-1]


def test_weights_of_another_variant_are_refused():
    with pytest.raises(CheckpointError, match="missing"):
        load_model_weights(PReNet(), _weights("Rain100H", "PRN6"))
    with pytest.raises(CheckpointError, match="unexpected"):
        load_model_weights(PRN_r(), _weights("Rain100H", "PReNet6_r"))


def test_registry_and_state_dict_names():
    assert all(build_model(n).__class__.__name__ == n for n in RELEASED)
    keys = set(PReNet().state_dict())
    assert {"conv0.0.weight", "res_conv1.2.bias", "res_conv5.0.weight", "conv_i.0.weight", "conv.0.weight"} <= keys
    assert not any(k.startswith("res_conv2") for k in PReNet_r().state_dict())
    assert not any(k.startswith("conv_") for k in PRN().state_dict())
    assert (PReNet.spec.pad_multiple, PReNet.spec.default_tile) == (1, 0)


def _reference_forward(sd: dict, x: torch.Tensor, stages: int, recurrent: bool, blocks: list[str]):
    """PReNet's recursion written out with functional convolutions over a state dict."""

    def conv(name, t):
        return F.conv2d(t, sd[f"{name}.weight"], sd[f"{name}.bias"], padding=1)

    out, outputs = x, []
    h = c = torch.zeros(x.shape[0], 32, *x.shape[-2:])
    for _ in range(stages):
        t = F.relu(conv("conv0.0", torch.cat([x, out], 1)))
        if recurrent:
            z = torch.cat([t, h], 1)
            i, f = torch.sigmoid(conv("conv_i.0", z)), torch.sigmoid(conv("conv_f.0", z))
            g, o = torch.tanh(conv("conv_g.0", z)), torch.sigmoid(conv("conv_o.0", z))
            c = f * c + i * g
            h = t = o * torch.tanh(c)
        for block in blocks:
            t = F.relu(F.relu(conv(f"{block}.2", F.relu(conv(f"{block}.0", t)))) + t)
        out = conv("conv.0", t) + x
        outputs.append(out)
    return out, outputs


@pytest.mark.parametrize(
    ("cls", "recurrent", "blocks"),
    [
        (PReNet, True, [f"res_conv{k}" for k in range(1, 6)]),
        (PReNet_r, True, ["res_conv1"] * 5),
        (PRN, False, [f"res_conv{k}" for k in range(1, 6)]),
        (PRN_r, False, ["res_conv1"] * 5),
    ],
)
def test_forward_matches_written_out_recursion(cls, recurrent, blocks):
    net = cls(stages=3).eval()
    x = torch.rand(2, 3, 9, 11)
    with torch.no_grad():
        final, stages = net(x)
        ref_final, ref_stages = _reference_forward(net.state_dict(), x, 3, recurrent, blocks)
    assert len(stages) == 3
    assert torch.allclose(final, ref_final, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(stages, ref_stages))


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return (10 * torch.log10(1 / F.mse_loss(a.double(), b.double()))).item()


def test_released_prenet_derains_real_rain100h_image():
    """A 96x160 crop of Rain100H 001: the input scores ~13.4 dB RGB PSNR, PReNet6 lifts it past 28 dB."""
    inp = uint8_to_tensor(read_image(require_shared("data", "Rain100H", "input", "001.png")))[None]
    tgt = uint8_to_tensor(read_image(require_shared("data", "Rain100H", "target", "001.png")))[None]
    inp, tgt = inp[..., 96:192, 160:320], tgt[..., 96:192, 160:320]
    net = PReNet().eval()
    load_model_weights(net, _weights("Rain100H", "PReNet6"))
    with torch.no_grad():
        final, stages = forward_padded(net, inp, net.spec.pad_multiple)
    before = _psnr(inp, tgt)
    scores = [_psnr(s.clamp(0, 1), tgt) for s in stages]
    assert before < 15
    assert scores[-1] > 28 and scores[-1] > before + 13
    assert scores[-1] > scores[0] + 3  # the stages progressively refine
