"""The demo dataset builder: layout, determinism, held-out test regions, idempotence."""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np

from data import PairedTrainDataset
from data.folders import scan_pairs
from scripts.make_demo_data import main
from utils.image_io import list_images, read_image

TINY = ["--num-train", "9", "--patch", "32"]


def digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.png"))}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(255.0**2 / np.mean((a.astype(np.float64) - b) ** 2))


def test_layout_sizes_and_rain(tmp_path):
    out = tmp_path / "demo"
    assert main(["--out", str(out), *TINY]) == 0
    train_in = list_images(out / "train" / "input")
    assert len(train_in) == 9 and len(list_images(out / "train" / "target")) == 9
    assert {p.name.split("_")[0] for p in train_in} == {"astronaut", "coffee", "rocket", "motorcycle"}
    assert all(read_image(p).shape == (32, 32, 3) for p in train_in)
    test_names = [p.stem for p in list_images(out / "test" / "input")]
    assert sorted(test_names) == ["astronaut", "chelsea", "coffee", "motorcycle", "motorcycle_1", "rocket"]
    sizes = {p.stem: read_image(p).shape[:2] for p in list_images(out / "test" / "target")}
    assert sizes["chelsea"] == (300, 451) and sizes["astronaut"] == (240, 320)
    scores = [psnr(read_image(p), read_image(out / "test" / "target" / p.name)) for p in list_images(out / "test" / "input")]
    assert 17.0 < min(scores) and max(scores) < 30.0, scores  # moderate rain
    # The datasets read it.
    assert len(PairedTrainDataset(out / "train", patch_size=16)) == 9
    assert len(scan_pairs(out / "test")) == 6


def test_test_regions_are_held_out(tmp_path):
    out = tmp_path / "demo"
    assert main(["--out", str(out), "--num-train", "40", "--patch", "96"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["train"]) == 40
    for stem, info in manifest["train"].items():
        y0, x0, y1, x1 = info["box"]
        assert info["photo"] in stem and info["scale"] in (1.0, 0.75, 0.5)
        assert abs((y1 - y0) - 96 / info["scale"]) < 1e-6
        for by0, bx0, by1, bx1 in manifest["held_out"][info["photo"]]:
            assert y1 <= by0 or y0 >= by1 or x1 <= bx0 or x0 >= bx1, (stem, info["box"])
    assert manifest["test"]["chelsea"]["box"] is None  # a photo no training crop comes from
    assert all(info["photo"] != "chelsea" for info in manifest["train"].values())


def test_deterministic_and_idempotent(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["--out", str(a), *TINY]) == 0
    assert main(["--out", str(b), *TINY]) == 0
    assert digest(a) == digest(b) and len(digest(a)) == 2 * (9 + 6)
    stamp = {p: p.stat().st_mtime_ns for p in a.rglob("*.png")}
    assert main(["--out", str(a), *TINY]) == 0  # same settings: nothing rewritten
    assert stamp == {p: p.stat().st_mtime_ns for p in a.rglob("*.png")}
    assert main(["--out", str(a), *TINY, "--seed", "1"]) == 1  # other settings need --force
    assert digest(a) == digest(b)
    assert main(["--out", str(a), "--num-train", "5", "--patch", "32", "--seed", "1", "--force"]) == 0
    assert len(list_images(a / "train" / "input")) == 5
    other = digest(a)
    assert other["test/target/chelsea.png"] == digest(b)["test/target/chelsea.png"]
    assert other["test/input/chelsea.png"] != digest(b)["test/input/chelsea.png"]  # other seed, other rain
    (a / "manifest.json").unlink()  # an interrupted build is not mistaken for a finished one
    assert main(["--out", str(a), "--num-train", "5", "--patch", "32", "--seed", "1"]) == 1
