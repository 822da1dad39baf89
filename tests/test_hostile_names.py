"""Hostile suite, issue 21 class 4: names - at the file-name limit, and names that mean something in HTML/URLs.

A legal file name of up to 255 bytes must work everywhere: the temporary
file written beside an output has a shortened name; a name that cannot be
written at all (``--side-by-side`` adds ``_before_after``) is named and
skipped by derain.py like an unreadable image, and the other images are
still derained.  In compare.py's page, names are escaped for the script
data block and the image URLs are percent-encoded.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import unquote

import pytest
from hostile_helpers import (
    expect_error,
    expect_ok,
    make_pairs,
    make_results,
    rgb,
    run_tool,
    snapshot,
    temp_files,
    write_png,
)

from metrics.compare.collect import slug
from utils.files import atomic_write
from utils.image_io import read_image

LONG = "r" * 251  # + ".png": 255 bytes, the limit of common file systems
WIDE = "雨" * 83  # 249 bytes of 3-byte characters (+ ".png": 253)


@pytest.mark.parametrize("stem", [LONG, WIDE], ids=["255-bytes", "multi-byte"])
def test_atomic_write_at_the_name_limit(stem, tmp_path):
    atomic_write(tmp_path / f"{stem}.png", b"data")
    atomic_write(tmp_path / f"{stem}.png", b"new data")  # the replacing write too
    assert (tmp_path / f"{stem}.png").read_bytes() == b"new data" and not temp_files(tmp_path)


@pytest.mark.parametrize("stem", [LONG, WIDE], ids=["255-bytes", "multi-byte"])
def test_derain_a_name_at_the_limit(stem, tmp_path):
    photos = tmp_path / "photos"
    write_png(photos / f"{stem}.png", rgb(20, 24))
    write_png(photos / "z.png", rgb(20, 24, seed=1))
    expect_ok(run_tool("derain", photos, "--model", "Identity", "--out", tmp_path / "out", cwd=tmp_path))
    assert (read_image(tmp_path / "out" / f"{stem}.png") == read_image(photos / f"{stem}.png")).all()
    assert (tmp_path / "out" / "z.png").is_file() and not temp_files(tmp_path)


def test_derain_skips_and_names_an_output_that_cannot_be_written(tmp_path):
    """``a..a_before_after.png`` is 262 bytes: that one file is named; the next images are still derained."""
    photos = tmp_path / "photos"
    stem = "a" * 245
    for name in (f"{stem}.png", "b.png", "c.png"):
        write_png(photos / name, rgb(20, 24))
    before = snapshot(photos)
    run = run_tool("derain", photos, "--model", "Identity", "--out", tmp_path / "out", "--side-by-side",
                   cwd=tmp_path)
    expect_error(run, f"{stem}_before_after.png", "File name too long", "2 of 3 image(s) derained")
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        f"{stem}.png", "b.png", "b_before_after.png", "c.png", "c_before_after.png"}
    assert snapshot(photos) == before and not temp_files(tmp_path)


def test_derain_skips_an_output_blocked_by_a_folder_and_goes_on(tmp_path):
    photos = tmp_path / "photos"
    for name in ("a.png", "b.png", "c.png"):
        write_png(photos / name, rgb(20, 24))
    (tmp_path / "out" / "a.png").mkdir(parents=True)
    run = run_tool("derain", photos, "--model", "Identity", "--out", tmp_path / "out", cwd=tmp_path)
    expect_error(run, tmp_path / "out" / "a.png", "is a folder", "2 of 3 image(s) derained")
    assert (tmp_path / "out" / "b.png").is_file() and (tmp_path / "out" / "c.png").is_file()
    assert not temp_files(tmp_path)


def test_test_py_and_evaluate_with_names_at_the_limit(tmp_path):
    root = make_pairs(tmp_path / "sets" / "Rain100L", n=1, size=(20, 24))
    for sub in ("input", "target"):
        (root / sub / "000.png").rename(root / sub / f"{LONG}.png")
    expect_ok(run_tool("test", "--model", "Identity", "--input_dir", root.parent, "--result_dir",
                       tmp_path / "res", cwd=tmp_path))
    assert (tmp_path / "res" / "Identity" / "Rain100L" / f"{LONG}.png").is_file()
    report = tmp_path / f"{'s' * 250}.json"
    expect_ok(run_tool("evaluate", "--result_dir", tmp_path / "res" / "Identity", "--gt_dir", root.parent,
                       "--json", report, cwd=tmp_path))
    assert json.loads(report.read_text())["Rain100L"]["n"] == 1 and not temp_files(tmp_path)


def test_leaderboard_saves_images_with_names_at_the_limit(tmp_path):
    results, gt = make_results(tmp_path, n=1)
    for sub in ("input", "target"):
        (gt / "Rain100L" / sub / "000.png").rename(gt / "Rain100L" / sub / f"{LONG}.png")
    expect_ok(run_tool("leaderboard", "--models", "Identity", "--input_dir", gt, "--datasets", "Rain100L", "--out",
                       tmp_path / "lb", "--save-images", "--device", "cpu", cwd=tmp_path))
    assert (tmp_path / "lb" / "images" / "Identity_none" / "Rain100L" / f"{LONG}.png").is_file()


# ----------------------------------------------------------------------------- names in the HTML page

HOSTILE_STEMS = ["a#1", "b%41", "c?x=1", "d<!--<script>", "e&amp;\u2028"]
HOSTILE_METHOD = "M</script><!--"
HOSTILE_TITLE = "</script><script>document.title='owned'</script>"


def hostile_comparison(root: Path) -> list[str]:
    """input/, target/ and a method folder whose files are named :data:`HOSTILE_STEMS` (32x36 each)."""
    for i, stem in enumerate(HOSTILE_STEMS):
        write_png(root / "input" / f"{stem}.png", rgb(32, 36, seed=i))
        write_png(root / "target" / f"{stem}.png", rgb(32, 36, seed=10 + i))
        write_png(root / "M" / f"{stem}.png", rgb(32, 36, seed=20 + i))
    return ["--methods", f"{HOSTILE_METHOD}={root / 'M'}", "--input", str(root / "input"), "--target",
            str(root / "target"), "--title", HOSTILE_TITLE, "--panel-width", "64"]


def test_page_escapes_names_and_encodes_urls(tmp_path):
    out = tmp_path / "page"
    expect_ok(run_tool("compare", *hostile_comparison(tmp_path), "--out", out, cwd=tmp_path))
    page = (out / "index.html").read_text(encoding="utf-8")
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", page, re.S)
    assert len(scripts) == 2  # the data block and the page's code: no name closed or opened a script
    data = json.loads(scripts[0])
    assert "<" not in scripts[0] and ">" not in scripts[0] and "&" not in scripts[0] and "\u2028" not in scripts[0]
    assert data["panels"] == ["Input", HOSTILE_METHOD, "Target"]
    assert sorted(s["key"] for s in data["scenes"]) == sorted(HOSTILE_STEMS)
    for scene in data["scenes"]:
        for panel, url in scene["src"].items():
            assert "#" not in url and "?" not in url and not re.search(r"%(?![0-9A-F]{2})", url)
            assert unquote(url) == f"images/{slug(panel)}/{scene['key']}.png" and (out / unquote(url)).is_file()
    assert HOSTILE_TITLE not in page and "&lt;/script&gt;&lt;script&gt;" in page
