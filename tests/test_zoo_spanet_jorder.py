"""SPANet and JORDER-E (practical): golden outputs of the authors' code, strict loading, 8-bit conventions, IRNN."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from conftest import require_shared

from inference.runner import derain_image, load_model
from models import build_model, spec_of
from models.jorder_e import JORDER_E
from models.spanet import SPANet, irnn
from models.spec import ModelSpec
from utils.checkpoint import CheckpointError, extract_state_dict, load_checkpoint, load_model_weights
from utils.image_io import levels_to_uint8, read_image, uint8_to_tensor

# golden file -> (model, weights under ../shared/weights, arrays in output order, value scale)
GOLDENS = {
    "SPANet_RainHeavy": ("SPANet", ("SPANet", "RainHeavy", "step_40000"), ("out", "mask"), 1.0),
    "SPANet_SPA": ("SPANet", ("SPANet", "SPA", "latest"), ("out", "mask"), 1.0),
    "JORDER_E_practical": ("JORDER_E", ("JORDER-E", "practical", "model_practical.pt"),
                           ("out", "out_stage1", "mask", "level"), 255.0),
}
PARAMS = {"SPANet": 283_716, "JORDER_E": 406_784}
CROP = (slice(100, 164), slice(200, 296))  # the goldens' crop of Rain100H 001.png


def _released(name: str) -> torch.nn.Module:
    model_name, weights, _, _ = GOLDENS[name]
    model = build_model(model_name).eval()
    load_model_weights(model, require_shared("weights", *weights))
    return model


def _golden(name: str) -> dict:
    return dict(np.load(require_shared("reference", "zoo", f"{name}.npz")))


@pytest.mark.parametrize("name", sorted(GOLDENS))
def test_golden_outputs(name):
    """CPU float32 against the authors' code: 1e-5 on the [0, 1] scale, i.e. 1e-5 x 255 for JORDER-E's 0-255.

    Measured: 0 (bitwise) with 2 threads, as the goldens were made; SPANet SPA 3e-7 with 1 thread.
    """
    golden = _golden(name)
    _, _, arrays, scale = GOLDENS[name]
    with torch.no_grad():
        outs = _released(name)(torch.from_numpy(golden["input"]))
    assert len(outs) == len(arrays)
    for key, out in zip(arrays, outs):
        assert out.shape == golden[key].shape, key
        err = np.abs(out.numpy() - golden[key]).max()
        assert err <= 1e-5 * scale, f"{name} {key}: max abs difference {err:.3g}"


def _authors_8bit(name: str, out: np.ndarray) -> np.ndarray:
    """What each release's test script writes, as uint8 RGB (H, W, 3)."""
    if name.startswith("SPANet"):  # cv2.imwrite(np.clip(out, 0, 1) * 255) of the BGR float image
        ok, buf = cv2.imencode(".png", np.ascontiguousarray(np.clip(out[0], 0, 1).transpose(1, 2, 0) * 255))
        assert ok
        return cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]
    return torch.from_numpy(out[0]).clamp(0, 255).round().byte().permute(1, 2, 0).numpy()  # JORDER-E


@pytest.mark.parametrize("name", sorted(GOLDENS))
def test_runner_reproduces_authors_preprocessing_and_saved_pixels(name):
    """derain_image on the crop feeds the golden input bit for bit and saves the authors' 8-bit values."""
    golden = _golden(name)
    img = read_image(require_shared("data", "Rain100H", "input", "001.png"))[CROP]
    model = _released(name)
    x = spec_of(model).to_network(uint8_to_tensor(img)[None])
    assert x.is_contiguous() and torch.equal(x, torch.from_numpy(golden["input"]))
    assert np.array_equal(derain_image(model, img, "cpu"), _authors_8bit(name, golden["out"]))


@pytest.mark.parametrize("name", sorted(GOLDENS))
def test_released_files_load_strictly(name):
    model_name, weights, _, _ = GOLDENS[name]
    model, got = load_model(model_name, require_shared("weights", *weights))
    assert got == model_name and not model.training
    assert sum(p.numel() for p in model.parameters()) == PARAMS[model_name]


def test_spanet_wrappers_and_prefixes():
    """RecDerain's file has 'module.' on all 79 keys, the SPANet repo's none; both hold the same key list."""
    heavy = load_checkpoint(require_shared("weights", "SPANet", "RainHeavy", "step_40000"))
    spa = load_checkpoint(require_shared("weights", "SPANet", "SPA", "latest"))
    assert heavy["clock"] == spa["clock"] == 40000
    assert all(k.startswith("module.") for k in heavy["net"]) and not any(k.startswith("module.") for k in spa["net"])
    assert list(extract_state_dict(heavy)) == list(extract_state_dict(spa)) == list(SPANet().state_dict())
    with pytest.raises(CheckpointError, match="missing"):
        load_model_weights(JORDER_E(), require_shared("weights", "SPANet", "SPA", "latest"))


def test_net_wrapper_loads_without_shared_data(tmp_path):
    model = SPANet()
    path = tmp_path / "latest"
    state = {f"module.{k}": v + 1 for k, v in model.state_dict().items()}
    torch.save({"net": state, "clock": 7, "opt": {"state": {}, "param_groups": []}}, path)
    other = SPANet()
    load_model_weights(other, path)
    assert all(torch.equal(v + 1, other.state_dict()[k]) for k, v in model.state_dict().items())


def test_specs():
    assert (SPANet.spec.channel_order, SPANet.spec.input_range, SPANet.spec.quantize) == ("BGR", (0.0, 1.0), "round")
    assert (JORDER_E.spec.channel_order, JORDER_E.spec.input_range, JORDER_E.spec.quantize) == (
        "RGB", (0.0, 255.0), "round")
    assert SPANet.spec.default_tile == JORDER_E.spec.default_tile == 0
    assert SPANet.spec.pad_multiple == JORDER_E.spec.pad_multiple == 1


def test_0_255_range_keeps_grey_levels_exact():
    """uint8 -> [0, 1] -> 0-255 gives every integer back, and 8 bits are taken from the 0-255 values
    themselves: half grey levels round to even as the release's clamp(0, 255).round()."""
    spec = ModelSpec(input_range=(0, 255))
    levels = torch.arange(256, dtype=torch.uint8)
    x = spec.to_network(uint8_to_tensor(levels.view(1, 1, 256).expand(3, 1, 256).permute(1, 2, 0).numpy()))
    assert torch.equal(x, levels.float().view(1, 1, 256).expand(3, 1, 256))
    y = torch.cat([torch.arange(256.0) + 0.5, torch.tensor([-3.0, 300.0, 17.25])]).view(1, 1, -1).expand(3, 1, -1)
    want = y.clamp(0, 255).round().byte().permute(1, 2, 0).numpy()
    assert np.array_equal(levels_to_uint8(spec.to_levels(y)), want)
    bgr = ModelSpec(channel_order="BGR", input_range=(0, 255))
    assert torch.equal(bgr.to_levels(torch.arange(3.0).view(3, 1, 1)).flatten(), torch.tensor([2.0, 1.0, 0.0]))


@pytest.mark.parametrize("cls", [SPANet, JORDER_E])
def test_odd_size_through_runner(cls, device):
    """37x53 runs whole (no padding); the runner's uint8 equals the release's conversion of the raw output."""
    torch.manual_seed(3)
    model = cls().eval().to(device)
    img = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    out = derain_image(model, img, device)
    assert out.shape == (37, 53, 3) and out.dtype == np.uint8
    x = uint8_to_tensor(img)[None].to(device)
    with torch.no_grad():
        if cls is SPANet:
            raw = model(x.flip(1))[0][0].flip(0).cpu()
            want = (raw.clamp(0, 1) * 255).round()
        else:
            raw = model(x * 255)[0][0].cpu()
            want = raw.clamp(0, 255).round()
    assert np.array_equal(out, want.byte().permute(1, 2, 0).numpy())


def _irnn_loop(x: torch.Tensor, w: dict, b: dict) -> list[torch.Tensor]:
    """IRNN from its definition, one pixel at a time (float32 scalars, three roundings, then relu)."""
    n, c, h, wd = x.shape
    out = {d: torch.zeros_like(x) for d in ("up", "right", "down", "left")}
    relu = torch.relu
    for i in range(n):
        for ch in range(c):
            for r in range(h):
                out["right"][i, ch, r, 0] = relu(x[i, ch, r, 0])
                for k in range(1, wd):
                    out["right"][i, ch, r, k] = relu(out["right"][i, ch, r, k - 1] * w["right"][ch]
                                                     + b["right"][ch] + x[i, ch, r, k])
                out["left"][i, ch, r, wd - 1] = relu(x[i, ch, r, wd - 1])
                for k in range(wd - 2, -1, -1):
                    out["left"][i, ch, r, k] = relu(out["left"][i, ch, r, k + 1] * w["left"][ch]
                                                    + b["left"][ch] + x[i, ch, r, k])
            for col in range(wd):
                out["down"][i, ch, 0, col] = relu(x[i, ch, 0, col])
                for k in range(1, h):
                    out["down"][i, ch, k, col] = relu(out["down"][i, ch, k - 1, col] * w["down"][ch]
                                                      + b["down"][ch] + x[i, ch, k, col])
                out["up"][i, ch, h - 1, col] = relu(x[i, ch, h - 1, col])
                for k in range(h - 2, -1, -1):
                    out["up"][i, ch, k, col] = relu(out["up"][i, ch, k + 1, col] * w["up"][ch]
                                                    + b["up"][ch] + x[i, ch, k, col])
    return [out[d] for d in ("up", "right", "down", "left")]


@pytest.mark.parametrize("grad", [False, True], ids=["in-place", "autograd"])
def test_irnn_matches_per_pixel_loop(device, grad):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 7, generator=g)
    dirs = ("up", "right", "down", "left")
    w = {d: torch.randn(3, generator=g) for d in dirs}  # negative weights too: the relu matters
    b = {d: torch.randn(3, generator=g) * 0.3 for d in dirs}
    want = _irnn_loop(x, w, b)
    got = irnn(x.to(device).requires_grad_(grad), {d: v.view(3, 1, 1, 1).to(device) for d, v in w.items()},
               {d: v.to(device) for d, v in b.items()})
    assert got.shape == (2, 12, 5, 7) and got.requires_grad == grad
    for d, a, ref in zip(dirs, got.detach().cpu().split(3, dim=1), want):
        assert torch.equal(a, ref), f"{d}: max diff {(a - ref).abs().max():.3g}"
    assert all(torch.count_nonzero(t) not in (0, t.numel()) for t in want)  # the test exercises both relu sides


def test_spanet_trains_and_shares_one_sam():
    model = SPANet()
    x = torch.rand(1, 3, 9, 11, requires_grad=True)
    out, mask = model(x)
    assert out.shape == x.shape and mask.shape == (1, 1, 9, 11)
    (out.sum() + mask.sum()).backward()
    assert model.SAM1.irnn1.up_weight.weight.grad is not None and x.grad is not None
    assert not any(k.startswith("SAM2") for k in model.state_dict()) and len(model.state_dict()) == 79
