"""End-to-end reproduction of a published number through our own test.py and evaluate.py.

The PReNet authors' released Rain100H weights, run by ``test.py`` on the
Rain100H test set and scored by ``evaluate.py``, must give the published
29.46 dB / 0.899 (Y channel) within 0.05 dB / 0.002.  No protocol flag is
given: PReNet's ModelSpec makes test.py convert to 8 bits by truncation, as
the release's test script does (29.4476 dB; rounding gives 29.4871).  The
PNGs themselves must equal those of the authors' test script (written out in
``test_authors_pipelines.py``) run in the same process: 0 differing values.
The authors' script gets the network's output for the very tensor test.py fed
(same values, same memory layout) from test.py's own forward pass instead of
computing it again (``RecordedForward``; the first three are recomputed and
compared), which halves the test; a tensor in any other layout still runs the
network, so the layout difference that once cost exactness cannot hide.

The full set takes minutes on a CPU (``-m slow``, run by CI); the same
pipeline and protocol run by default on full-width strips of two images,
and three whole images against the authors' script in ``test_authors_pipelines.py``.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import require_shared
from test_authors_pipelines import RecordedForward, prenet_pngs_differ
from test_test_evaluate import test_py

import evaluate
from metrics.psnr_ssim import score_y
from utils.image_io import read_image, write_image

PUBLISHED = (29.46, 0.899)


@pytest.mark.slow
def test_prenet_reproduces_published_rain100h_score(tmp_path, monkeypatch):
    rain100h = require_shared("data", "Rain100H")
    weights = require_shared("weights", "PReNet", "Rain100H", "PReNet6", "net_latest.pth")
    root = tmp_path / "test"
    root.mkdir()
    (root / "Rain100H").symlink_to(rain100h, target_is_directory=True)
    results = tmp_path / "results"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    recorded, loaded, real_load_model = RecordedForward(), [], test_py.load_model

    def load_and_watch(*args, **kwargs):
        model, name = real_load_model(*args, **kwargs)
        recorded.watch(model)
        loaded.append(model)
        return model, name

    monkeypatch.setattr(test_py, "load_model", load_and_watch)
    assert test_py.main(["--model", "PReNet", "--weights", str(weights), "--input_dir", str(root),
                         "--datasets", "Rain100H", "--result_dir", str(results), "--device", device,
                         "--no-score"]) == 0
    written = sorted(p.name for p in (results / "PReNet" / "Rain100H").iterdir())
    assert written == [f"{i:03d}.png" for i in range(1, 101)]
    if device == "cpu":  # the authors' script on the CPU, same process and thread count
        (tmp_path / "authors").mkdir()
        differ = prenet_pngs_differ(results / "PReNet" / "Rain100H", written, tmp_path / "authors",
                                    recorded, loaded[0])
        assert recorded.recorded == 100 and recorded.answered == 100 and recorded.verified == 3
        print(f"PReNet6 on Rain100H, test.py vs the authors' script, {torch.get_num_threads()} thread(s): "
              f"{sum(differ.values())} differing 8-bit values in {sum(v > 0 for v in differ.values())} of 100 images")
        assert sum(differ.values()) == 0, {k: v for k, v in differ.items() if v}

    report_path = tmp_path / "scores.json"
    assert evaluate.main(["--result_dir", str(results / "PReNet"), "--gt_dir", str(root),
                          "--datasets", "Rain100H", "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    psnr, ssim, n = report["Rain100H"]["psnr"], report["Rain100H"]["ssim"], report["Rain100H"]["n"]
    print(f"PReNet6 on Rain100H through test.py + evaluate.py: {psnr:.4f} dB / {ssim:.4f} over {n} images")
    assert n == 100
    assert abs(psnr - PUBLISHED[0]) <= 0.05, psnr
    assert abs(ssim - PUBLISHED[1]) <= 0.002, ssim


def test_prenet_pipeline_and_truncation_on_full_width_strips(tmp_path):
    """test.py with no protocol flag truncates (as the release) and evaluate.py scores what it wrote."""
    rain100h = require_shared("data", "Rain100H")
    weights = require_shared("weights", "PReNet", "Rain100H", "PReNet6", "net_latest.pth")
    root = tmp_path / "test" / "Rain100H"
    for name in ("001.png", "042.png"):  # 48 rows at full width: the release's whole-image protocol
        for side in ("input", "target"):
            write_image(root / side / name, read_image(rain100h / side / name)[96:144])
    outputs = {}
    for quantize in (None, "truncate", "round"):
        results = tmp_path / f"results-{quantize}"
        assert test_py.main(["--model", "PReNet", "--weights", str(weights), "--input_dir", str(root.parent),
                             "--datasets", "Rain100H", "--result_dir", str(results), "--device", "cpu",
                             "--no-score", *(["--quantize", quantize] if quantize else [])]) == 0
        outputs[quantize] = {p.name: read_image(p) for p in sorted((results / "PReNet" / "Rain100H").iterdir())}
        report = tmp_path / f"scores-{quantize}.json"
        assert evaluate.main(["--result_dir", str(results / "PReNet"), "--gt_dir", str(root.parent),
                              "--datasets", "Rain100H", "--json", str(report)]) == 0
        psnr = json.loads(report.read_text())["Rain100H"]["psnr"]
        direct = np.mean([score_y(img, read_image(root / "target" / name))[0]
                          for name, img in outputs[quantize].items()])
        assert psnr == pytest.approx(direct, abs=1e-4)
        outputs[quantize, "psnr"] = psnr
    assert list(outputs[None]) == ["001.png", "042.png"]
    for name, default in outputs[None].items():
        assert np.array_equal(default, outputs["truncate"][name])  # the release's protocol is the default
        rounded = outputs["round"][name].astype(int)
        assert (rounded - default.astype(int)).min() >= 0 and (rounded != default).mean() > 0.2
    rainy = np.mean([score_y(read_image(root / "input" / n), read_image(root / "target" / n))[0]
                     for n in ("001.png", "042.png")])
    print(f"strips: rainy {rainy:.2f} dB, truncated {outputs[None, 'psnr']:.4f} dB, "
          f"rounded {outputs['round', 'psnr']:.4f} dB")
    assert outputs[None, "psnr"] > rainy + 10  # the released weights derain
    assert outputs["round", "psnr"] > outputs[None, "psnr"]  # truncation costs a little, as on the full set
