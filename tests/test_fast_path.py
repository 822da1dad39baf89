"""The speed switches compute what the plain path computes (within stated tolerances), and the benchmarks run.

Tolerances: the fp32 switches (efficient attention, one-copy Fourier unit,
channels-last, foreach Adam) only reorder floating-point sums: 1e-5 on
tiny models, 1e-4 on the golden full-size model (as the golden test).
bf16 autocast rounds activations to 8 mantissa bits: 1e-2 on outputs.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REFERENCE, REPO, require_shared

from benchmarks.common import format_table
from models.dmsr import DMSR, FourierUnit, PixelAttention
from training.config import fast_opts, load_config
from training.run_state import seed_everything
from training.step import TrainingStep, adam_kernel_kwargs
from utils.image_io import write_image
from utils.precision import amp_dtype, compile_model

FP32_SWITCHES = dict(efficient_attention=True, efficient_fft=True)


def _load_script(name: str):
    return importlib.import_module(f"benchmarks.{name}")


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("channels_last", [False, True])
def test_efficient_fourier_unit_matches_plain(train, channels_last):
    plain, fast = FourierUnit(6), FourierUnit(6, efficient=True)
    with torch.no_grad():
        plain.conv_layer.weight.normal_(0, 0.3)
        plain.bn.running_mean.normal_()
        plain.bn.weight.uniform_(0.5, 1.5)
    fast.load_state_dict(plain.state_dict())  # the same state dict, strictly
    plain.train(train), fast.train(train)
    x = torch.randn(3, 6, 20, 26)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = plain(xa), fast(xb)
    assert ya.shape == yb.shape == x.shape
    assert (ya - yb).abs().max() < 1e-5
    g = torch.randn_like(ya)
    (ya * g).sum().backward()
    (yb * g).sum().backward()
    assert (xa.grad - xb.grad).abs().max() < 1e-5
    wa, wb = plain.conv_layer.weight.grad, fast.conv_layer.weight.grad
    assert (wa - wb).abs().max() < 1e-5 * wa.abs().max()
    for name in ("running_mean", "running_var"):  # batch-norm statistics updated alike
        assert (getattr(plain.bn, name) - getattr(fast.bn, name)).abs().max() < 1e-6


def test_efficient_fourier_unit_keeps_fp32_under_autocast():
    fast, plain = FourierUnit(4, efficient=True).eval(), FourierUnit(4).eval()
    plain.load_state_dict(fast.state_dict())
    x = torch.randn(1, 4, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = fast(x.bfloat16())
    assert y.dtype == torch.bfloat16  # computed in fp32 inside, returned in the input's dtype
    ref = plain(x)
    assert (y.float() - ref).abs().max() < 2e-2 * ref.abs().max()  # bf16 rounding of input and output only


def test_efficient_pixel_attention_matches_plain():
    plain, fast = PixelAttention(5), PixelAttention(5, efficient=True)
    fast.load_state_dict(plain.state_dict())
    r, p = torch.randn(2, 5, 12, 14, requires_grad=True), torch.randn(2, 5, 12, 14, requires_grad=True)
    a, b = plain(r, p), fast(r, p)
    assert (a - b).abs().max() < 1e-6
    ga = torch.autograd.grad(a.sum(), [r, p, plain.pa2.weight])
    gb = torch.autograd.grad(b.sum(), [r, p, fast.pa2.weight])
    for u, v in zip(ga, gb):
        assert (u - v).abs().max() < 1e-5


@pytest.mark.parametrize("train", [True, False])
def test_tiny_dmsr_fp32_switches_match_plain(train):
    torch.manual_seed(0)
    plain = DMSR(base_channels=8, num_res=2).train(train)
    fast = DMSR(base_channels=8, num_res=2, **FP32_SWITCHES)
    fast.load_state_dict(plain.state_dict(), strict=True)
    fast = fast.to(memory_format=torch.channels_last).train(train)
    x = torch.rand(2, 3, 64, 80)
    with torch.no_grad():
        outs_a = plain(x)
        outs_b = fast(x.contiguous(memory_format=torch.channels_last))
    for a, b in zip(outs_a, outs_b):
        assert (a - b).abs().max() < 1e-5


@pytest.fixture(scope="module")
def golden():
    require_shared("reference", "dmsr", "golden_weights.py")
    spec = importlib.util.spec_from_file_location("golden_weights", REFERENCE / "golden_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    io = np.load(REFERENCE / "golden_io.npz")
    return module.golden_state_dict(REFERENCE / "state_dict_shapes.json"), {k: io[k] for k in io.files}


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_golden_weights_through_the_fp32_fast_path(golden, mode):
    sd, io = golden
    model = DMSR(**FP32_SWITCHES)
    model.load_state_dict(sd, strict=True)
    model = model.to(memory_format=torch.channels_last).train(mode == "train")
    x = torch.from_numpy(io["input"]).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        outs = model(x)
    for name, out in zip(("full", "half", "quarter"), outs):
        err = np.abs(out.numpy() - io[f"{mode}_{name}"]).max()
        assert err < 1e-4, f"{mode} {name}: {err:.3g}"


def test_golden_weights_through_the_bf16_fast_path(golden):
    sd, io = golden
    model = DMSR(**FP32_SWITCHES)
    model.load_state_dict(sd, strict=True)
    model = model.to(memory_format=torch.channels_last).eval()
    x = torch.from_numpy(io["input"]).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        outs = model(x)
    for name, out in zip(("full", "half", "quarter"), outs):
        assert torch.isfinite(out).all()
        err = np.abs(out.float().numpy() - io[f"eval_{name}"]).max()
        assert err < 1e-2, f"bf16 {name}: {err:.3g}"


def _steps(opts: list[str], n: int = 4) -> list[float]:
    cfg = load_config(None, ["MODEL.ARGS.base_channels", "8", "MODEL.ARGS.num_res", "1", "OPTIM.LR_INITIAL", "1e-3",
                             *opts])
    seed_everything(0)
    runner = TrainingStep(cfg, torch.device("cpu"))
    g = torch.Generator().manual_seed(1)
    inp, tgt = torch.rand(2, 3, 64, 64, generator=g), torch.rand(2, 3, 64, 64, generator=g)
    return [float(runner.step(inp, tgt)) for _ in range(n)]


def test_training_steps_with_fp32_switches_match_plain():
    plain = _steps([])
    fast = _steps(["MODEL.ARGS.efficient_attention", "True", "MODEL.ARGS.efficient_fft", "True",
                   "FAST.CHANNELS_LAST", "True", "OPTIM.FUSED", "True"])
    assert plain[-1] < plain[0]  # it learns
    np.testing.assert_allclose(fast, plain, rtol=1e-4)


def test_training_steps_with_the_cpu_fast_path_stay_close():
    plain = _steps([])
    fast = _steps(fast_opts("cpu") + ["FAST.AMP", "bf16"])  # bf16 even where the CPU emulates it
    np.testing.assert_allclose(fast, plain, rtol=2e-2)


def test_fast_opts_are_valid_config_and_off_by_default():
    default = load_config(None)
    assert (default.FAST.AMP, default.FAST.CHANNELS_LAST, default.FAST.COMPILE, default.OPTIM.FUSED) == (
        "", False, False, False)
    assert "efficient_attention" not in default.MODEL.ARGS and "efficient_fft" not in default.MODEL.ARGS
    cfg = load_config(None, fast_opts("cpu"))
    assert cfg.FAST.CHANNELS_LAST and cfg.OPTIM.FUSED and cfg.MODEL.ARGS.efficient_fft
    assert "MODEL.ARGS.efficient_fft" not in fast_opts("cpu", "PReNet")


def test_helpers():
    assert amp_dtype("") is None and amp_dtype("bf16") is torch.bfloat16
    with pytest.raises(ValueError, match="AMP"):
        amp_dtype("fp8")
    assert adam_kernel_kwargs(False, "cpu") == {}
    assert adam_kernel_kwargs(True, "cpu") == {"foreach": True}
    assert adam_kernel_kwargs(True, "cuda") == {"fused": True}
    table = format_table(["a", "b"], [["x", 1.23456], ["y", None]])
    assert table.splitlines()[2] == "| x | 1.23 |" and "| y | - |" in table


def test_compile_falls_back_to_eager_when_unsupported(monkeypatch):
    def unsupported(*args, **kwargs):
        raise RuntimeError("torch.compile is not supported here")

    monkeypatch.setattr(torch, "compile", unsupported)
    model = torch.nn.Linear(2, 2)
    assert compile_model(model) is model


def test_peak_memory_sees_an_allocation():
    """In a fresh process: memory this one freed earlier could be reused unseen (see PeakMemory)."""
    code = (
        "import json, torch\n"
        "from benchmarks.common import PeakMemory\n"
        "m = PeakMemory('cpu'); m.start()\n"
        "block = torch.ones(64, 2**18); block += 1\n"  # 64 MB
        "print(json.dumps([m.peak_mb(), PeakMemory.process_peak_rss_mb()]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    peak, process_peak = json.loads(proc.stdout.splitlines()[-1])
    if peak is None:
        pytest.skip("peak resident memory cannot be reset on this platform")
    assert 60 < peak < 100 and process_peak > peak


def test_train_step_benchmark_reports_both_variants(tmp_path):
    out = tmp_path / "train.json"
    report = _load_script("train_step").main(
        ["--model-opts", "base_channels=8", "num_res=1", "--batch", "2", "--warmup", "1", "--steps", "1",
         "--device", "cpu", "--in-process", "--json", str(out)])
    assert json.loads(out.read_text())["speedup"] == pytest.approx(report["speedup"])
    for variant in ("plain", "fast"):
        r = report["results"][variant]
        assert r["finite"] and r["images_per_s"] > 0
    assert report["results"]["plain"]["switches"] == []
    assert "FAST.CHANNELS_LAST" in report["results"]["fast"]["switches"]


def test_inference_benchmark_times_both_modes():
    report = _load_script("inference").main(
        ["--model-opts", "base_channels=8", "num_res=1", "--height", "80", "--width", "112", "--tiles", "64", "0",
         "--warmup", "0", "--repeats", "1", "--device", "cpu", "--in-process"])
    fast = report["results"]["fast"]["modes"]
    assert set(fast) == {"64", "0"}
    for mode in fast.values():
        assert mode["speedup"] > 0 and mode["max_abs_diff_vs_plain"] < 5e-2


def test_data_loading_benchmark_compares_paths(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        for side in ("input", "target"):
            write_image(tmp_path / "data" / side / f"{i}.png", rng.integers(0, 256, (40, 70, 3), dtype=np.uint8))
    train_json = tmp_path / "train.json"
    train_json.write_text(json.dumps({"machine": {"device": "cpu"}, "settings": {"batch": 4},
                                      "results": {"fast": {"images_per_s": 2.0}}}))
    report = _load_script("data_loading").main(
        ["--root", str(tmp_path / "data"), "--seconds", "0.2", "--train-json", str(train_json)])
    assert set(report["results"]) == {"release", "files", "store"}
    for entry in report["results"].values():
        assert entry["patches_per_s"] > 0 and list(entry["workers_needed"].values()) == [1]
    assert report["results"]["release"]["vs_release"] == 1.0


def test_release_style_loader_gives_aligned_patches(tmp_path):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)  # smaller than the patch: reflect-padded
    write_image(tmp_path / "input" / "a.png", img)
    write_image(tmp_path / "target" / "a.png", img)
    inp, tgt, name = _load_script("data_loading").ReleaseStyleDataset(tmp_path, 64)[0]
    assert inp.shape == tgt.shape == (3, 64, 64) and name == "a"
    assert torch.equal(inp, tgt) and inp.dtype == torch.float32


def test_loss_agreement_runs_on_tiny_data(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(4):
        clean = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        write_image(tmp_path / "target" / f"{i}.png", clean)
        write_image(tmp_path / "input" / f"{i}.png", np.clip(clean.astype(int) + 40, 0, 255).astype(np.uint8))
    report = _load_script("loss_agreement").main(
        ["--root", str(tmp_path), "--model-opts", "base_channels=8", "num_res=1", "--steps", "6", "--window", "3",
         "--batch", "2", "--variants", "efficient_fft", "channels_last", "--device", "cpu"])
    results = report["results"]
    assert list(results) == ["plain", "efficient_fft", "channels_last"]
    for name in ("efficient_fft", "channels_last"):  # fp32 switches: the same curve
        assert results[name]["max_abs_output_diff"] < 1e-5
        assert results[name]["final_loss_rel_diff"] < 1e-4
