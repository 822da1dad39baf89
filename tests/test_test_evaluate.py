"""test.py -> evaluate.py on real Rain100H pairs, and the errors both give for bad input."""
from __future__ import annotations

import importlib.util
import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import evaluate
from data.folders import PairingError, pair_files
from inference.runner import parse_model_opts
from metrics.psnr_ssim import score_y
from models import build_model
from utils.checkpoint import FORMAT_NAME, CheckpointError, save_checkpoint
from utils.image_io import (
    ImageReadError,
    list_images,
    read_image,
    tensor_to_uint8,
    uint8_to_tensor,
    write_image,
)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
RAIN100H = SHARED / "data" / "Rain100H"
SUBSET = ["001.png", "017.png", "042.png", "077.png", "100.png"]  # 077 and 100 are portrait


def _load_test_py():
    # "test" is also the name of CPython's regression-test package, so load the file explicitly.
    spec = importlib.util.spec_from_file_location("derain_test_py", REPO / "test.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


test_py = _load_test_py()


def need_rain100h() -> Path:
    if not RAIN100H.is_dir():
        pytest.skip(f"{RAIN100H} not found: the shared data folder is only present on the team's machines and CI")
    return RAIN100H


@pytest.fixture
def subset(tmp_path: Path) -> Path:
    """A root with Rain100H/{input,target} holding five real pairs, named as the rain-/norain- releases."""
    src = need_rain100h()
    root = tmp_path / "test"
    (root / "Rain100H" / "input").mkdir(parents=True)
    (root / "Rain100H" / "target").mkdir(parents=True)
    for name in SUBSET:
        shutil.copy(src / "input" / name, root / "Rain100H" / "input" / f"rain-{name}")
        shutil.copy(src / "target" / name, root / "Rain100H" / "target" / f"norain-{name}")
    return root


def _direct_scores(pairs) -> dict:
    scores = [score_y(read_image(a), read_image(b)) for a, b in pairs]
    return {"psnr": float(np.mean([p for p, _ in scores])), "ssim": float(np.mean([s for _, s in scores]))}


@pytest.mark.parametrize("tile", ["0", "128"])
def test_test_py_then_evaluate_py_on_rain100h(subset, tmp_path, tile, caplog):
    results = tmp_path / "results"
    caplog.set_level(logging.WARNING)
    assert test_py.main(["--model", "Identity", "--input_dir", str(subset), "--result_dir", str(results),
                         "--device", "cpu", "--tile", tile]) == 0
    assert "skipping Test100" in caplog.text  # the other standard sets are absent

    out_dir = results / "Identity" / "Rain100H"
    written = list_images(out_dir)
    assert [p.name for p in written] == [f"rain-{n}" for n in SUBSET]
    for name in SUBSET:  # the identity model, windowed or whole, reproduces every input pixel
        assert np.array_equal(read_image(out_dir / f"rain-{name}"), read_image(RAIN100H / "input" / name))

    expected = _direct_scores([(RAIN100H / "input" / n, RAIN100H / "target" / n) for n in SUBSET])
    report = json.loads((results / "Identity" / "scores.json").read_text())
    assert report["Rain100H"]["n"] == 5
    assert report["Rain100H"]["psnr"] == pytest.approx(expected["psnr"], abs=1e-9)
    assert report["Rain100H"]["ssim"] == pytest.approx(expected["ssim"], abs=1e-12)
    assert report["average"] == {"psnr": report["Rain100H"]["psnr"], "ssim": report["Rain100H"]["ssim"]}
    csv_lines = (results / "Identity" / "scores.csv").read_text().splitlines()
    assert csv_lines[0] == "dataset,n,psnr,ssim" and csv_lines[1].startswith("Rain100H,5,")

    ev_json = tmp_path / "evaluate.json"
    assert evaluate.main(["--result_dir", str(results / "Identity"), "--gt_dir", str(subset),
                          "--json", str(ev_json)]) == 0
    evaluated = json.loads(ev_json.read_text())
    # Both record the known version of the files they scored: test.py inputs and targets, evaluate.py targets.
    assert report["Rain100H"].pop("version") == {"set": "Rain100H", "version": "480x320", "status": "partial",
                                                 "matched": 10, "of": 200, "modified": 0, "reencoded": 0,
                                                 "missing": 190, "extra": 0, "same_pixels": False}
    assert evaluated["Rain100H"].pop("version")["of"] == 100
    assert evaluated == report  # same code, same numbers, same shape


def test_rainy_input_scores_the_published_figures(tmp_path):
    """All 100 Rain100H pairs, rainy input scored as the output: 13.5505 dB / 0.3784 (authors' scoring)."""
    src = need_rain100h()
    (tmp_path / "res").mkdir()
    (tmp_path / "res" / "Rain100H").symlink_to(src / "input", target_is_directory=True)
    out = tmp_path / "scores.json"
    assert evaluate.main(["--result_dir", str(tmp_path / "res"), "--gt_dir", str(src.parent),
                          "--datasets", "Rain100H", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["Rain100H"]["n"] == 100
    assert report["Rain100H"]["psnr"] == pytest.approx(13.5505, abs=1e-4)
    assert report["Rain100H"]["ssim"] == pytest.approx(0.3784, abs=1e-4)


def test_evaluate_reports_missing_extra_and_missized_files(subset, tmp_path):
    results = tmp_path / "results" / "M"
    shutil.copytree(subset / "Rain100H" / "input", results / "Rain100H")
    args = ["--result_dir", str(results), "--gt_dir", str(subset), "--datasets", "Rain100H"]

    (results / "Rain100H" / "rain-042.png").unlink()
    shutil.copy(RAIN100H / "input" / "003.png", results / "Rain100H" / "stray.png")
    with pytest.raises(PairingError) as err:
        evaluate.main(args)
    msg = str(err.value)
    assert "stray.png" in msg and "norain-042.png" in msg

    (results / "Rain100H" / "stray.png").unlink()
    img = read_image(RAIN100H / "input" / "042.png")
    write_image(results / "Rain100H" / "rain-042.png", img[:-2])
    with pytest.raises(PairingError, match=r"size mismatch: .*rain-042\.png is 320x478 but .*norain-042\.png is 320x480"):
        evaluate.main(args)

    (results / "Rain100H" / "rain-042.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    with pytest.raises(ImageReadError, match=r"rain-042\.png"):
        evaluate.main(args)

    with pytest.raises(FileNotFoundError, match="Rain100L"):
        evaluate.main(args[:-1] + ["Rain100H", "Rain100L"])
    with pytest.raises(FileNotFoundError, match="none of Test100"):
        evaluate.main(["--result_dir", str(tmp_path), "--gt_dir", str(subset)])


def test_test_py_errors_name_the_culprit_and_keep_written_files(subset, tmp_path):
    results = tmp_path / "results"
    inputs = subset / "Rain100H" / "input"
    (inputs / "rain-077.png").write_bytes(b"corrupt")
    with pytest.raises(ImageReadError, match=r"rain-077\.png"):
        test_py.main(["--model", "Identity", "--input_dir", str(subset), "--result_dir", str(results)])
    # files before the corrupt one were written and stay
    assert [p.name for p in list_images(results / "Identity" / "Rain100H")] == ["rain-001.png", "rain-017.png",
                                                                               "rain-042.png"]
    (inputs / "rain-077.png").unlink()
    with pytest.raises(PairingError, match=r"norain-077\.png"):
        test_py.main(["--model", "Identity", "--input_dir", str(subset), "--result_dir", str(results)])
    with pytest.raises(FileNotFoundError, match="no test set found"):
        test_py.main(["--model", "Identity", "--input_dir", str(subset), "--datasets", "Test100"])
    with pytest.raises(CheckpointError, match="--weights is required for DMSR"):
        test_py.main(["--model", "DMSR", "--input_dir", str(subset), "--no-score", "--result_dir", str(results)])
    with pytest.raises(KeyError, match="known models"):
        test_py.main(["--model", "Nope", "--input_dir", str(subset), "--no-score", "--result_dir", str(results)])


def test_plain_folder_and_no_score(tmp_path, caplog):
    rng = np.random.default_rng(0)
    folder = tmp_path / "my photos"
    for name in ("a.png", "b.jpg"):
        write_image(folder / name, rng.integers(0, 256, (21, 34, 3), dtype=np.uint8))
    results = tmp_path / "results"
    with caplog.at_level(logging.WARNING):
        assert test_py.main(["--model", "Identity", "--input_dir", str(folder), "--result_dir", str(results)]) == 0
    assert "not scored:" in caplog.text and "at least two blocks" in caplog.text  # NIQE needs 192 pixels
    assert [p.name for p in list_images(results / "Identity" / "my photos")] == ["a.png", "b.png"]
    assert np.array_equal(read_image(results / "Identity" / "my photos" / "b.png"), read_image(folder / "b.jpg"))
    assert not (results / "Identity" / "scores.json").exists()  # nothing to score against


def test_checkpoint_model_kwargs_and_default_window_protocol(tmp_path):
    """Our checkpoint names its model and constructor options; test.py needs no --model and uses 128 windows."""
    kwargs = {"base_channels": 8, "num_res": 1, "efficient_attention": True}
    model = build_model("DMSR", **kwargs).eval()
    ckpt = tmp_path / "dmsr.pth"
    save_checkpoint({"format": FORMAT_NAME, "version": 1, "model": model.state_dict(), "model_name": "DMSR",
                     "model_kwargs": kwargs, "epoch": 1}, ckpt)
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (128, 136, 3), dtype=np.uint8)  # two windows: x = 0 and x = 8
    write_image(tmp_path / "in" / "x.png", img)
    results = tmp_path / "results"
    assert test_py.main(["--weights", str(ckpt), "--input_dir", str(tmp_path / "in"), "--result_dir",
                         str(results), "--device", "cpu", "--max-batch", "1"]) == 0
    out = read_image(results / "DMSR" / "in" / "x.png")
    assert out.shape == img.shape
    with torch.inference_mode():  # the left 128 columns are the first window's output
        first_window = model(uint8_to_tensor(img[:, :128])[None])[0]
    assert np.array_equal(out[:, :128], tensor_to_uint8(first_window[0]))
    # --model-opts override the checkpoint's kwargs: a width that does not fit the weights is an error
    with pytest.raises(CheckpointError, match="mis-shaped"):
        test_py.main(["--weights", str(ckpt), "--model-opts", "base_channels=16", "--input_dir",
                      str(tmp_path / "in"), "--result_dir", str(results)])


def test_parse_model_opts():
    assert parse_model_opts(["base_channels=32", "use_fdsm=False", "name=gelu", "sizes=(1, 2)"]) == {
        "base_channels": 32, "use_fdsm": False, "name": "gelu", "sizes": (1, 2)}
    assert parse_model_opts(None) == {}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_model_opts(["base_channels"])


def test_fast_and_amp_flags_match_the_plain_path(tmp_path):
    """test.py --fast (exact switches) reproduces the plain outputs; --amp bf16 stays within a few grey levels."""
    torch.manual_seed(0)
    model = build_model("DMSR", base_channels=8, num_res=1)
    weights = tmp_path / "tiny.pth"
    save_checkpoint({"format": FORMAT_NAME, "version": 1, "model": model.state_dict(), "model_name": "DMSR",
                     "model_kwargs": {"base_channels": 8, "num_res": 1}}, weights)
    rng = np.random.default_rng(0)
    write_image(tmp_path / "in" / "a.png", rng.integers(0, 256, (70, 90, 3), dtype=np.uint8))
    outs = {}
    for flags in ([], ["--fast"], ["--fast", "--amp", "bf16"]):
        res = tmp_path / ("res" + "".join(flags))
        assert test_py.main(["--weights", str(weights), "--input_dir", str(tmp_path / "in"), "--result_dir",
                             str(res), "--device", "cpu", "--tile", "64", "--no-score", *flags]) == 0
        outs[" ".join(flags)] = read_image(res / "DMSR" / "in" / "a.png").astype(int)
    assert np.abs(outs["--fast"] - outs[""]).max() <= 1
    assert np.abs(outs["--fast --amp bf16"] - outs[""]).max() <= 8


@pytest.fixture
def real_rain(tmp_path: Path) -> Path:
    """Three real rainy photos (no ground truth) in a folder named like the shared set."""
    src = SHARED / "data" / "RealRain147" / "input"
    if not src.is_dir():
        pytest.skip(f"{src} not found: the shared data folder is only present on the team's machines and CI")
    folder = tmp_path / "RealRain147" / "input"
    folder.mkdir(parents=True)
    for name in ("001.png", "050.png", "116.png"):
        shutil.copy(src / name, folder / name)
    return folder


def test_real_rain_niqe_through_test_py_and_evaluate_py(real_rain, tmp_path, capsys):
    from metrics.niqe import niqe

    expected = float(np.mean([niqe(read_image(p)) for p in list_images(real_rain)]))
    results = tmp_path / "results"
    assert test_py.main(["--model", "Identity", "--input_dir", str(real_rain), "--result_dir", str(results),
                         "--device", "cpu"]) == 0
    table = capsys.readouterr().out
    assert "RealRain147 (3 images without ground truth): NIQE, lower is better" in table
    assert re.search(rf"Rainy input\s+{expected:.3f}\n\s*Identity\s+{expected:.3f}", table)
    report = json.loads((results / "Identity" / "scores.json").read_text())
    value = report["RealRain147"]["niqe"]  # the identity's output is its input
    assert value == pytest.approx(expected, abs=1e-12)
    assert report == {"RealRain147": {"niqe": value, "input_niqe": value, "n": 3},
                      "average": {"niqe": value, "input_niqe": value}}
    assert (results / "Identity" / "scores.csv").read_text().splitlines()[0] == "dataset,n,niqe,input_niqe"

    out = tmp_path / "niqe.json"  # no --gt_dir needed
    assert evaluate.main(["--result_dir", str(results / "Identity"), "--datasets", "RealRain147",
                          "--metrics", "niqe", "--json", str(out), "--workers", "2"]) == 0
    assert json.loads(out.read_text()) == {"RealRain147": {"niqe": pytest.approx(expected, abs=1e-12), "n": 3},
                                           "average": {"niqe": pytest.approx(expected, abs=1e-12)}}
    assert "NIQE" in capsys.readouterr().out

    (results / "Identity" / "RealRain147" / "050.png").write_bytes(b"not a png")
    with pytest.raises(ImageReadError, match=r"050\.png"):
        evaluate.main(["--result_dir", str(results / "Identity"), "--datasets", "RealRain147", "--metrics", "niqe"])
    with pytest.raises(SystemExit):
        evaluate.main(["--result_dir", str(results / "Identity"), "--metrics", "psnr,brisque"])


def test_evaluate_psnr_ssim_niqe_together(subset, tmp_path):
    from metrics.niqe import niqe

    results = tmp_path / "results" / "M"
    shutil.copytree(subset / "Rain100H" / "input", results / "Rain100H")
    out = tmp_path / "all.json"
    assert evaluate.main(["--result_dir", str(results), "--gt_dir", str(subset), "--metrics", "psnr,ssim,niqe",
                          "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    direct = _direct_scores(pair_files(results / "Rain100H", subset / "Rain100H" / "target"))
    inputs = list_images(results / "Rain100H")
    assert report["Rain100H"].pop("version")["matched"] == 5  # the targets: 5 of Rain100H 480x320's 100
    assert report["Rain100H"] == {"psnr": pytest.approx(direct["psnr"], abs=1e-9),
                                  "ssim": pytest.approx(direct["ssim"], abs=1e-12),
                                  "niqe": pytest.approx(np.mean([niqe(read_image(p)) for p in inputs]), abs=1e-12),
                                  "n": 5}
    assert list(report["average"]) == ["psnr", "ssim", "niqe"]
