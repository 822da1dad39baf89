"""DMSR fidelity to the authors' release: checkpoint format, golden outputs, sizes, gradients, precision."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
from conftest import REFERENCE, require_shared
from torch import nn

from inference.padding import forward_padded, pad_to_multiple
from models import build_model
from models.dmsr import DMSR

PAPER_PARAMS = 35_472_543


def _golden_state_dict():
    require_shared("reference", "dmsr", "golden_weights.py")
    spec = importlib.util.spec_from_file_location("golden_weights", REFERENCE / "golden_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.golden_state_dict(REFERENCE / "state_dict_shapes.json")


@pytest.fixture(scope="module")
def golden():
    sd = _golden_state_dict()
    io = np.load(REFERENCE / "golden_io.npz")
    return sd, {k: io[k] for k in io.files}


def test_state_dict_matches_release_keys_and_shapes():
    shapes = json.loads((require_shared("reference", "dmsr", "state_dict_shapes.json")).read_text())
    own = {k: list(v.shape) for k, v in DMSR().state_dict().items()}
    assert set(own) == set(shapes)
    mismatched = [k for k in shapes if own[k] != shapes[k]]
    assert mismatched == []
    assert len(own) == 908


def test_parameter_count():
    model = DMSR()
    assert sum(p.numel() for p in model.parameters()) == PAPER_PARAMS


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_golden_outputs(golden, mode, device, monkeypatch):
    sd, io = golden
    model = DMSR()
    model.load_state_dict(sd, strict=True)
    model.to(device).train(mode == "train")
    if device.type == "cuda":  # cuDNN convolutions default to TF32 (10-bit mantissa): compare in true float32
        monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
        monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    with torch.no_grad():
        outs = model(torch.from_numpy(io["input"]).to(device))
    assert isinstance(outs, list) and len(outs) == 3
    for name, out in zip(("full", "half", "quarter"), outs):
        ref = io[f"{mode}_{name}"]
        assert out.shape == ref.shape
        err = np.abs(out.cpu().numpy() - ref).max()
        assert err < 1e-4, f"{mode} {name}: max abs error {err:.3g}"


def test_efficient_attention_and_channels_last_match_golden(golden):
    sd, io = golden
    x = torch.from_numpy(io["input"])
    model = DMSR(efficient_attention=True).eval()
    model.load_state_dict(sd)
    model = model.to(memory_format=torch.channels_last)
    with torch.no_grad():
        out = model(x.to(memory_format=torch.channels_last))[0]
    assert np.abs(out.numpy() - io["eval_full"]).max() < 1e-4


def test_bf16_autocast_close_to_fp32(golden):
    """bf16 autocast (FFTs kept in fp32) stays finite and within 1e-2 of fp32 on the golden input."""
    sd, io = golden
    model = DMSR().eval()
    model.load_state_dict(sd)
    x = torch.from_numpy(io["input"])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    for o, name in zip(out, ("full", "half", "quarter")):
        assert torch.isfinite(o).all()
        err = np.abs(o.float().numpy() - io[f"eval_{name}"]).max()
        assert err < 1e-2, f"bf16 {name}: {err:.3g}"


def test_registry_builds_dmsr_and_lists_names_on_error():
    model = build_model("DMSR", base_channels=8, num_res=1)
    assert isinstance(model, DMSR)
    with pytest.raises(KeyError, match="DMSR"):
        build_model("NoSuchNet")


@pytest.mark.parametrize("size", [(37, 53), (321, 481), (16, 16), (5, 3)])
def test_odd_sizes_through_pad_helper(size):
    torch.manual_seed(0)
    model = DMSR(base_channels=8, num_res=1).eval()
    x = torch.rand(1, 3, *size)
    with torch.no_grad():
        out = forward_padded(model, x, model.spec.pad_multiple)
    assert out[0].shape == x.shape
    h, w = size
    assert out[1].shape[-2:] == ((h + 1) // 2, (w + 1) // 2)
    assert out[2].shape[-2:] == ((h + 3) // 4, (w + 3) // 4)


def test_pad_helper_reflects_and_keeps_content():
    x = torch.arange(2 * 3 * 5 * 7, dtype=torch.float32).reshape(2, 3, 5, 7)
    xp, size = pad_to_multiple(x, 16)
    assert size == (5, 7) and xp.shape[-2:] == (16, 16)
    big, _ = pad_to_multiple(x, 16, min_size=64)
    assert big.shape[-2:] == (64, 64) and torch.equal(big[..., :5, :7], x)
    assert torch.equal(xp[..., :5, :7], x)
    assert torch.equal(xp[..., 5, :7], x[..., 3, :])  # reflection, not zeros
    same, _ = pad_to_multiple(torch.zeros(1, 3, 32, 48), 16)
    assert same.shape[-2:] == (32, 48)


def test_unpadded_odd_size_is_a_clear_error():
    with pytest.raises(ValueError, match="divisible by 16"):
        DMSR(base_channels=8, num_res=1)(torch.rand(1, 3, 70, 64))
    with pytest.raises(ValueError, match="at least 64"):
        DMSR(base_channels=8, num_res=1)(torch.rand(1, 3, 48, 64))


def test_gradient_reaches_every_trainable_parameter():
    torch.manual_seed(0)
    model = DMSR(base_channels=8, num_res=2).train()
    outs = model(torch.rand(2, 3, 64, 64))
    sum(o.square().mean() for o in outs).backward()
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    # the release creates FDSM.conv_mid but never uses it; it is kept frozen
    assert frozen and all(".FDSM.conv_mid." in n for n in frozen)
    no_grad = [n for n, p in model.named_parameters()
               if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    assert no_grad == []


def test_zero_init_output_starts_as_the_identity_and_learns():
    """The demo's training option: the same parameters, only the three output convolutions start at zero."""
    torch.manual_seed(0)
    default = DMSR(base_channels=8, num_res=1)
    torch.manual_seed(0)
    zero = DMSR(base_channels=8, num_res=1, zero_init_output=True)
    sd, zd = default.state_dict(), {k: v.clone() for k, v in zero.state_dict().items()}
    assert sd.keys() == zd.keys()
    heads = {"ConvsOut.0.main.0.weight", "ConvsOut.0.main.0.bias", "ConvsOut.1.main.0.weight",
             "ConvsOut.1.main.0.bias", "feat_extract.5.main.0.weight", "feat_extract.5.main.0.bias"}
    assert {k for k in sd if not torch.equal(sd[k], zd[k])} == heads  # the same draws for everything else
    assert all(zd[k].abs().sum() == 0 for k in heads) and all(sd[k].abs().sum() > 0 for k in heads)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        full, half, quarter = zero.eval()(x)
    x2 = torch.nn.functional.interpolate(x, scale_factor=0.5)
    assert torch.equal(full, x) and torch.equal(half, x2)
    assert torch.equal(quarter, torch.nn.functional.interpolate(x2, scale_factor=0.5))
    zero.train()
    optim = torch.optim.Adam(zero.parameters(), 1e-3)
    for _ in range(2):  # the first step moves only the heads; from the second, gradient reaches the rest
        optim.zero_grad()
        sum((o - t).abs().mean() for o, t in zip(zero(x), (x * 0.5, x2 * 0.5))).backward()
        optim.step()
    assert not torch.equal(zero.Encoder[0].layers[0].conv1.main[0].weight, zd["Encoder.0.layers.0.conv1.main.0.weight"])
    with pytest.raises(ValueError, match="zero_init_output"):
        DMSR(base_channels=8, num_res=1, zero_init_output="yes")


def test_ablation_switches_change_the_model():
    full = DMSR(base_channels=8, num_res=1)
    no_mpsrm = DMSR(base_channels=8, num_res=1, use_mpsrm=False)
    no_fdsm = DMSR(base_channels=8, num_res=1, use_fdsm=False)
    assert not any("MPSRM" in k for k in no_mpsrm.state_dict())
    assert not any("FDSM" in k for k in no_fdsm.state_dict())
    n = [sum(p.numel() for p in m.parameters()) for m in (full, no_mpsrm, no_fdsm)]
    assert n[0] > n[1] and n[0] > n[2]
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        for m in (no_mpsrm, no_fdsm, DMSR(base_channels=8, num_res=1, spga_multiply=True)):
            assert m.eval()(x)[0].shape == x.shape


def test_forward_builds_no_modules(monkeypatch):
    model = DMSR(base_channels=8, num_res=1).eval()
    created = []
    original = nn.Module.__init__

    def counting_init(self, *args, **kwargs):
        created.append(type(self).__name__)
        original(self, *args, **kwargs)

    monkeypatch.setattr(nn.Module, "__init__", counting_init)
    with torch.no_grad():
        model(torch.rand(1, 3, 64, 64))
    assert created == []
