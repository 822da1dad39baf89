"""End-to-end reproduction of a published number through our own test.py and evaluate.py.

The PReNet authors' released Rain100H weights, run by ``test.py`` on the
Rain100H test set and scored by ``evaluate.py``, must give the published
29.46 dB / 0.899 (Y channel) within 0.05 dB / 0.002.  No protocol flag is
given: PReNet's ModelSpec makes test.py convert to 8 bits by truncation, as
the release's test script does (29.4476 dB; rounding gives 29.4871).  The
PNGs themselves must equal those of the authors' test script (written out in
``test_authors_pipelines.py``) run in the same process: 0 differing values.
"""
from __future__ import annotations

import json

import pytest
import torch
from conftest import require_shared
from test_authors_pipelines import prenet_pngs_differ
from test_test_evaluate import test_py

import evaluate

PUBLISHED = (29.46, 0.899)


@pytest.mark.slow
def test_prenet_reproduces_published_rain100h_score(tmp_path):
    rain100h = require_shared("data", "Rain100H")
    weights = require_shared("weights", "PReNet", "Rain100H", "PReNet6", "net_latest.pth")
    root = tmp_path / "test"
    root.mkdir()
    (root / "Rain100H").symlink_to(rain100h, target_is_directory=True)
    results = tmp_path / "results"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    assert test_py.main(["--model", "PReNet", "--weights", str(weights), "--input_dir", str(root),
                         "--datasets", "Rain100H", "--result_dir", str(results), "--device", device,
                         "--no-score"]) == 0
    written = sorted(p.name for p in (results / "PReNet" / "Rain100H").iterdir())
    assert written == [f"{i:03d}.png" for i in range(1, 101)]
    if device == "cpu":  # the authors' script on the CPU, same process and thread count
        (tmp_path / "authors").mkdir()
        differ = prenet_pngs_differ(results / "PReNet" / "Rain100H", written, tmp_path / "authors")
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
