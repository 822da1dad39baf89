"""scripts/leaderboard.py: measured rows, published figures and their comparability, bad input."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, require_shared

from inference.runner import derain_image, load_model
from metrics.psnr_ssim import score_y
from models import MODELS, build_model
from models.complexity import count_macs
from scripts import leaderboard
from utils.image_io import read_image, write_image

CROP = (slice(96, 128), slice(160, 208))  # 32x48 crops keep the run short


def _weights(*parts: str) -> Path:
    return require_shared("weights", *parts)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """Rain100H/{input,target} with three 32x48 crops of real pairs, and a set without targets."""
    src = require_shared("data", "Rain100H")
    for name in ("001.png", "002.png", "003.png"):
        for sub in ("input", "target"):
            write_image(tmp_path / "Rain100H" / sub / name, read_image(src / sub / name)[CROP])
    write_image(tmp_path / "Real" / "input" / "a.png", read_image(src / "input" / "004.png")[CROP])
    return tmp_path


def _run(root: Path, out: Path, *models: str, datasets=("Rain100H",)) -> dict:
    return leaderboard.main(["--models", *models, "--input_dir", str(root), "--datasets", *datasets,
                             "--out", str(out), "--device", "cpu", "--macs-size", "16", "16"])


def test_leaderboard_rows_scores_and_published_figures(root, tmp_path):
    brn_h = _weights("BRN", "Rain100H", "net_latest.pth")
    brn_1400 = _weights("BRN", "Rain1400", "net_latest.pth")
    rescan = _weights("RESCAN", "RainHeavy", "latest")
    result = _run(root, tmp_path / "lb", f"BRN:{brn_h}", f"BRN:{brn_1400}", f"RESCAN:{rescan}", "Identity",
                  datasets=("Rain100H", "Real"))
    rows = {(r["model"], r["weights"]["label"], r["dataset"]): r for r in result["rows"]}
    assert len(rows) == 8

    # Measured here = derain_image + the paper metric, image by image.
    model, _ = load_model("BRN", brn_h)
    scores = [score_y(derain_image(model, read_image(root / "Rain100H" / "input" / n), "cpu"),
                      read_image(root / "Rain100H" / "target" / n)) for n in ("001.png", "002.png", "003.png")]
    row = rows[("BRN", "Rain100H", "Rain100H")]
    assert row["psnr"] == pytest.approx(np.mean([s[0] for s in scores]), abs=1e-9)
    assert row["ssim"] == pytest.approx(np.mean([s[1] for s in scores]), abs=1e-9)
    assert row["n"] == 3 and row["seconds_per_image"] > 0
    assert row["params"] == 412_518 and row["macs"] == count_macs(build_model("BRN"), (16, 16))
    assert row["macs"] * 256 == 196_444_422_144  # conv-only network: MACs scale with the pixel count

    # Published figures: comparable only for the same training set and test set (version included: these
    # 32x48 crops are no version of Rain100H; tests/test_data_versions.py checks complete copies).
    pub = row["published"]
    assert (pub["psnr"], pub["ssim"], pub["comparable"]) == (30.47, 0.913, False)
    assert pub["why"] == "the Rain100H files measured are not a known version of Rain100H"
    assert row["version"] == {"set": None, "version": None, "status": "unknown"}
    pub = rows[("BRN", "Rain1400", "Rain100H")]["published"]
    assert pub["psnr"] == 30.47 and not pub["comparable"] and "Rain12600" in pub["why"]
    pub = rows[("RESCAN", "RainHeavy", "Rain100H")]["published"]
    assert (pub["psnr"], pub["test_set"], pub["comparable"]) == (28.02, "RainHeavy*", False)
    assert "another version of Rain100H" in pub["why"]
    assert rows[("Identity", "none", "Rain100H")]["published"] is None

    # Sets without targets are not scored; the input itself ranks last on Rain100H.
    assert all("psnr" not in r for (_, _, d), r in rows.items() if d == "Real")
    md = (tmp_path / "lb" / "leaderboard.md").read_text()
    table = [line.split(" | ") for line in md.splitlines() if line.startswith("| Rain100H")]
    assert [c[1] for c in table] == ["1", "2", "3", "4"] and table[-1][2] == "Identity"
    psnrs = [float(c[7]) for c in table]
    assert psnrs == sorted(psnrs, reverse=True)
    csv_lines = (tmp_path / "lb" / "leaderboard.csv").read_text().splitlines()
    assert len(csv_lines) == 9 and csv_lines[0].startswith("set,rank,method")
    saved = json.loads((tmp_path / "lb" / "leaderboard.json").read_text())
    assert saved["meta"]["macs_size"] == [16, 16] and saved["meta"]["total_seconds"] > 0


def test_no_reference_hook_scores_sets_without_targets(root, tmp_path, monkeypatch):
    monkeypatch.setattr(leaderboard, "NO_REFERENCE_METRICS", {"MEAN": lambda img: float(img.mean())})
    result = _run(root, tmp_path / "lb", "Identity", datasets=("Real",))
    (row,) = result["rows"]
    assert row["no_reference"]["MEAN"] == pytest.approx(read_image(root / "Real" / "input" / "a.png").mean())
    assert "| MEAN |" in (tmp_path / "lb" / "leaderboard.md").read_text()


def test_published_data_is_consistent():
    data = leaderboard.load_published()
    for entry in data["published"]:  # the released files are checked in tests/test_weights.py
        assert entry["model"] in MODELS and entry["trained_on"] in data["training_sets"]
    for entry in data["published"]:
        assert entry["test_set"] in data["test_sets"] and entry["source"]
        assert 0 < entry["ssim"] < 1 < entry["psnr"]
    fig = leaderboard.published_figure(data, "PReNet", "RainTrainH", "Rain100H")
    assert (fig["psnr"], fig["comparable"]) == (29.46, True)
    fig = leaderboard.published_figure(data, "PReNet", None, "Rain100H")
    assert not fig["comparable"] and "unknown" in fig["why"]
    assert leaderboard.published_figure(data, "DMSR", "RainTrainH", "Rain100H") is None


def test_released_files_are_recognised_by_sha256():
    for model, parts, label in [("BRN", ("BRN", "Rain1400", "net_latest.pth"), "Rain1400"),
                                ("RESCAN", ("RESCAN", "RainHeavy", "latest"), "RainHeavy"),
                                ("PReNet", ("PReNet", "Rain100H", "PReNet6", "net_latest.pth"), "Rain100H")]:
        entry = leaderboard.identify_weights(model, _weights(*parts))
        assert (entry["model"], entry["label"], entry["name"]) == (model, label, f"{model}/{label}")


def test_bad_input_is_one_line_and_fails(root, tmp_path):
    brn = _weights("BRN", "Rain100H", "net_latest.pth")
    with pytest.raises(KeyError, match="known models"):
        _run(root, tmp_path, "NoSuchNet:x.pth")
    with pytest.raises(FileNotFoundError, match="weights of BRN not found"):
        _run(root, tmp_path, "BRN:missing.pth")
    with pytest.raises(FileNotFoundError, match="dataset Rain100L not found"):
        _run(root, tmp_path, f"BRN:{brn}", datasets=("Rain100L",))
    with pytest.raises(ValueError, match="not MODEL:WEIGHTS"):
        _run(root, tmp_path, "BRN:")
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "leaderboard.py"), "--models", "NoSuchNet:x",
                           "--input_dir", str(root), "--out", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode != 0 and proc.stdout == ""
    assert proc.stderr.startswith("error: unknown model 'NoSuchNet'") and len(proc.stderr.splitlines()) == 1


def test_niqe_is_the_no_reference_metric():
    from metrics.niqe import niqe

    img = np.random.default_rng(3).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    assert list(leaderboard.NO_REFERENCE_METRICS) == ["NIQE"]
    assert leaderboard.NO_REFERENCE_METRICS["NIQE"](img) == niqe(img)
