"""scripts/check_data.py and data/provenance.py: known versions, problems, duplicates and overlaps.

The real-data tests read the team's Rain100H (480x320), RainTrainL and
RealRain147 once (module fixture) and skip without ../shared.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import require_shared
from hostile_helpers import make_pairs, rgb, write_png

from data.duplicates import NEAR_BITS, Fingerprints, find_duplicates, hamming, perceptual
from data.manifest import load_manifests, pixel_sha256
from data.provenance import check_folders
from scripts import check_data

RAIN100H_DUPLICATES = [  # the same clean image twice in Rain100H (480x320): 2 by bytes, 7 more by pixels
    ["target/003.png", "target/004.png", "exact"], ["target/005.png", "target/014.png", "exact"],
    ["target/006.png", "target/025.png", "exact"], ["target/007.png", "target/036.png", "exact"],
    ["target/008.png", "target/047.png", "exact"], ["target/009.png", "target/058.png", "exact"],
    ["target/010.png", "target/069.png", "exact"], ["target/011.png", "target/080.png", "exact"],
    ["target/012.png", "target/091.png", "exact"],
]


@pytest.fixture(scope="module")
def real():
    """check_folders on RainTrainL, Rain100H and RealRain147 (read once): reports, overlaps and CPU seconds."""
    paths = [require_shared("data", name) for name in ("RainTrainL", "Rain100H", "RealRain147")]
    cpu = time.process_time()
    reports, overlaps = check_folders(paths, load_manifests(), workers=2)
    return {Path(r.path).name: r.to_json() for r in reports}, overlaps, time.process_time() - cpu


def test_rain100h_is_named_exactly(real):
    folders, _, _ = real
    f = folders["Rain100H"]
    assert (f["set"], f["version"], f["kind"], f["status"]) == ("Rain100H", "480x320", "test", "exact")
    assert (f["matched"], f["of"], f["pairs"], f["images"]) == (200, 200, 100, 200)
    assert f["modified"] == f["missing"] == f["extra"] == f["problems"] == []
    r = folders["RainTrainL"]
    assert (r["set"], r["version"], r["kind"], r["status"], r["matched"]) == ("RainTrainL", "481x321", "train",
                                                                              "exact", 400)
    assert (folders["RealRain147"]["set"], folders["RealRain147"]["status"]) == ("RealRain147", "exact")


def test_duplicate_scenes_inside_rain100h(real):
    folders, _, _ = real
    assert folders["Rain100H"]["duplicates"] == RAIN100H_DUPLICATES
    assert folders["RainTrainL"]["duplicates"] == []


def test_raintrainl_and_rain100h_share_no_scene(real):
    _, overlaps, _ = real
    pairs = {(Path(o["a"]).name, Path(o["b"]).name): o for o in overlaps}
    assert set(pairs) == {("RainTrainL", "Rain100H"), ("RainTrainL", "RealRain147"), ("Rain100H", "RealRain147")}
    for o in pairs.values():  # no false positive among 200 x 100, 200 x 147 and 100 x 147 pairs of scenes
        assert (o["exact"], o["near"], o["pairs"]) == (0, 0, [])


def test_near_duplicates_among_real_photos(real):
    """RealRain147 holds the same photo twice, re-saved (43 pairs) or re-cropped: all are found, nothing else."""
    folders, _, cpu = real
    dups = folders["RealRain147"]["duplicates"]
    assert len(dups) == 49 and {kind for *_, kind in dups} == {"near"}
    for a, b in (("008", "120"), ("033", "107"), ("075", "107"), ("086", "130")):  # other crops of one photo
        assert [f"input/{a}.png", f"input/{b}.png", "near"] in dups
    assert ["input/033.png", "input/075.png", "near"] in dups
    assert cpu < 30, f"{cpu:.1f} s of CPU for 747 images"  # measured: about 4 s


def test_modified_copy_of_rain100h_says_exactly_what_changed(tmp_path, capsys):
    """One target re-encoded (same pixels), one input deleted, one input added: check_data says exactly that."""
    src = require_shared("data", "Rain100H")
    copy = tmp_path / "Rain100H"
    for role in ("input", "target"):
        (copy / role).mkdir(parents=True)
        for p in (src / role).iterdir():  # symlinks: the unchanged files are not copied
            (copy / role / p.name).symlink_to(p)
    (copy / "target" / "010.png").unlink()
    img = cv2.imread(str(src / "target" / "010.png"), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(copy / "target" / "010.png"), img, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    (copy / "input" / "020.png").unlink()
    write_png(copy / "input" / "101.png", rgb(320, 480, seed=3))
    out = tmp_path / "found.json"
    assert check_data.main([str(copy), "--json", str(out)]) == 0
    (f,) = json.loads(out.read_text())["folders"]
    assert (f["set"], f["version"], f["status"]) == ("Rain100H", "480x320", "partial")
    assert (f["matched"], f["of"]) == (198, 200)
    assert (f["modified"], f["reencoded"], f["missing"], f["extra"]) == (
        ["target/010.png"], ["target/010.png"], ["input/020.png"], ["input/101.png"])
    assert len(f["problems"]) == 1 and "101.png" in f["problems"][0] and "020.png" in f["problems"][0]
    assert f["duplicates"] == RAIN100H_DUPLICATES  # the re-encoded 010 still equals 069 (same pixels)
    text = capsys.readouterr().out
    assert "Rain100H 480x320 (test set), partial: 198 of 200 files match" in text
    assert "modified (other bytes): 1: target/010.png" in text and "re-encoded (same pixels): 1: target/010.png" in text
    assert "missing: 1: input/020.png" in text and "extra: 1: input/101.png" in text


def test_json_shape_problems_and_overlaps_on_synthetic_folders(tmp_path, capsys):
    """Two sets and a plain folder: pairing and image problems are findings; overlaps name both files."""
    train = make_pairs(tmp_path / "train", n=4, size=(64, 96))
    test = make_pairs(tmp_path / "test", n=3, size=(64, 96), seed=10)
    clean = rgb(64, 96, seed=2)  # train's target 002, also in test: once re-saved, once cropped and as JPEG
    write_png(test / "target" / "010.png", clean)
    write_png(test / "input" / "010.png", clean)
    ok, jpeg = cv2.imencode(".jpg", np.ascontiguousarray(clean[:-1, :-1, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 75])
    (test / "target" / "011.jpg").write_bytes(jpeg.tobytes())
    write_png(test / "input" / "011.png", rgb(64, 96, seed=4))  # size mismatch with its (cropped) target
    (test / "input" / "012.png").write_bytes(b"not a png")  # unreadable, no partner
    photos = tmp_path / "photos"
    write_png(photos / "a.png", rgb(64, 96, seed=0))  # = train's target 000
    out = tmp_path / "data.json"
    assert check_data.main([str(train), str(test), str(photos), "--json", str(out)]) == 0
    found = json.loads(out.read_text())
    assert set(found) >= {"folders", "overlaps"}
    by_name = {Path(f["path"]).name: f for f in found["folders"]}
    for f in found["folders"]:
        assert set(f) >= {"path", "set", "version", "status", "matched", "modified", "missing", "extra", "duplicates"}
        assert (f["set"], f["status"]) == (None, "unknown")
    assert by_name["photos"]["layout"] == "images" and by_name["train"]["layout"] == "set"
    problems = "\n".join(by_name["test"]["problems"])
    assert "012.png" in problems and "size mismatch" in problems and "011" in problems
    assert by_name["train"]["problems"] == [] and by_name["train"]["pairs"] == 4
    assert by_name["test"]["duplicates"] == [["target/010.png", "target/011.jpg", "near"]]
    overlaps = {(Path(o["a"]).name, Path(o["b"]).name): o for o in found["overlaps"]}
    assert overlaps[("train", "test")]["pairs"] == [["target/002.png", "target/010.png", "exact"],
                                                    ["target/002.png", "target/011.jpg", "near"]]
    assert (overlaps[("train", "test")]["exact"], overlaps[("train", "test")]["near"]) == (1, 1)
    assert overlaps[("train", "photos")]["pairs"] == [["target/000.png", "a.png", "exact"]]
    assert overlaps[("test", "photos")]["pairs"] == []
    text = capsys.readouterr().out
    assert "target/002.png ~ target/011.jpg  (near)" in text and "clean images shared between folders" in text


def test_perceptual_hash_is_robust_to_versions_and_re_encoding():
    """The 1-pixel crop of the 480x320 versions, JPEG, halving and brightness keep an image near itself."""
    img = rgb(321, 481, seed=5)
    ok, jpeg = cv2.imencode(".jpg", img[:-1, :-1], [cv2.IMWRITE_JPEG_QUALITY, 50])
    variants = [img[:-1, :-1], cv2.imdecode(jpeg, cv2.IMREAD_UNCHANGED), cv2.resize(img, (240, 160)),
                np.clip(img.astype(int) + 20, 0, 255).astype(np.uint8), img[4:, 4:]]
    items = [(str(k), None, pixel_sha256(v), v.shape[:2], *perceptual(v)) for k, v in enumerate([img, *variants])]
    others = [rgb(321, 481, seed=s) for s in range(20, 60)]
    items += [(f"o{k}", None, pixel_sha256(v), v.shape[:2], *perceptual(v)) for k, v in enumerate(others)]
    prints = Fingerprints.build(items)
    found = {(i, j): kind for i, j, kind in find_duplicates(prints)}
    assert all(found.get((0, j)) == "near" for j in range(1, 6))
    assert not [ij for ij in found if ij[0] >= 6 or ij[1] >= 6]  # 40 other images: no pair among 45 x 46 / 2
    assert hamming(prints.phash[:1], prints.phash[6:]).min() > NEAR_BITS
    # Same pixels and same bytes are exact, a flat image is never near anything else.
    flat = np.full((64, 96, 3), 128, np.uint8)
    twins = Fingerprints.build([(n, s, pixel_sha256(v), v.shape[:2], *perceptual(v))
                                for n, s, v in (("a", "x", img), ("b", "y", img.copy()), ("f", "z", flat))])
    assert find_duplicates(twins) == [(0, 1, "exact")]


def test_each_file_is_read_once(tmp_path, monkeypatch):
    """Every file is read from disk once: its bytes give the hash, the folder checks' decode and the fingerprint."""
    import data.folders

    root = make_pairs(tmp_path / "set", n=3, size=(40, 50))
    reads = []
    real_read = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: reads.append(self.name) or real_read(self))
    monkeypatch.setattr(data.folders, "read_image", lambda path: pytest.fail(f"{path} read a second time"))
    (report,), _ = check_folders([root], load_manifests())
    assert sorted(reads) == sorted(p.name for p in root.rglob("*.png"))
    assert report.pairs == 3 and report.problems == [] and len(report.clean) == 3
