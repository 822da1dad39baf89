"""data/manifest.py and the manifests of known set versions; the version scores and the leaderboard record."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import cv2
import pytest
from conftest import require_shared
from hostile_helpers import make_pairs, rgb, write_png

from data.manifest import (
    MANIFEST_DIR,
    ManifestError,
    folder_facts,
    identify,
    load_manifests,
    parse_manifest,
    pixel_sha256,
    size_summary,
)
from data.provenance import set_version
from scripts import leaderboard
from utils.image_io import list_images, read_image

COLUMNS = "role\tname\tsha256\tbytes\twidth\theight\tpixels_sha256"


def write_manifest(path: Path, root: Path, set_name: str = "Toy", version: str = "64x96", kind: str = "test",
                   pixels: bool = True) -> Path:
    """A manifest of the set folder ``root`` (what a user adding a set writes)."""
    rows, sizes = [], []
    for role in ("input", "target"):
        for p in list_images(root / role):
            img = read_image(p)
            rows.append("\t".join([role, p.name, hashlib.sha256(p.read_bytes()).hexdigest(), str(p.stat().st_size),
                                   str(img.shape[1]), str(img.shape[0]), pixel_sha256(img) if pixels else "-"]))
            if role == "input":
                sizes.append((img.shape[1], img.shape[0]))
    head = [f"# set: {set_name}", f"# version: {version}", f"# kind: {kind}", f"# pairs: {len(sizes)}",
            f"# sizes: {size_summary(sizes)}", "# about: a toy set", COLUMNS]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(head) + "\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture
def toy(tmp_path):
    """A 6-pair set and its manifest (the only one in its folder)."""
    root = make_pairs(tmp_path / "toy", n=6, size=(64, 96))
    write_manifest(tmp_path / "manifests" / "Toy.tsv", root)
    return root, load_manifests(tmp_path / "manifests")


def _facts(root: Path):
    return folder_facts({r: list_images(root / r) for r in ("input", "target") if (root / r).is_dir()})


def test_project_manifests():
    manifests = {m.label: m for m in load_manifests()}
    assert set(manifests) == {"Rain100H 480x320", "Rain100H 481x321", "Rain100L 480x320", "Rain100L 481x321",
                              "RainTrainL 481x321", "RealRain147 481x321"}
    for m in manifests.values():
        assert m.about and m.source and m.sizes
        assert len([e for e in m.entries if e.role == "input"]) == m.pairs
    h = manifests["Rain100H 480x320"]
    assert (h.kind, h.pairs, h.sizes, h.roles) == ("test", 100, "480x320 (66), 320x480 (34)", ("input", "target"))
    assert all(e.pixels for e in h.entries)  # pixel hashes where the team holds the images
    assert not any(e.pixels for e in manifests["Rain100H 481x321"].entries)
    assert manifests["RainTrainL 481x321"].kind == "train" and manifests["RealRain147 481x321"].roles == ("input",)
    readme = (MANIFEST_DIR / "README.md").read_text()
    for path in MANIFEST_DIR.glob("*.tsv"):
        assert path.name in readme  # the README lists every manifest


def test_identify_exact_renamed_subset_and_plain(toy, tmp_path):
    root, manifests = toy
    found = identify(_facts(root), manifests)
    assert (found.set, found.version, found.status, len(found.matched), found.expected) == ("Toy", "64x96", "exact",
                                                                                          12, 12)
    # The PReNet layout (rain-N / norain-N) pairs by the same keys: still exact.
    renamed = tmp_path / "renamed"
    for role, prefix in (("input", "rain-"), ("target", "norain-")):
        (renamed / role).mkdir(parents=True)
        for p in (root / role).iterdir():
            shutil.copy(p, renamed / role / f"{prefix}{p.name}")
    assert identify(_facts(renamed), manifests).status == "exact"
    # Two pairs of six: mostly the folder is that version, so partial, with the rest missing.
    subset = tmp_path / "subset"
    for role in ("input", "target"):
        (subset / role).mkdir(parents=True)
        for name in ("000.png", "001.png"):
            shutil.copy(root / role / name, subset / role / name)
    found = identify(_facts(subset), manifests)
    assert (found.status, len(found.matched), len(found.missing)) == ("partial", 4, 8)
    assert found.missing[:2] == ["input/002.png", "input/003.png"]
    assert found.summary() == {"set": "Toy", "version": "64x96", "status": "partial", "matched": 4, "of": 12,
                               "modified": 0, "reencoded": 0, "missing": 8, "extra": 0, "same_pixels": False}
    # A plain folder of the clean images is the version's targets.
    found = identify(folder_facts({None: list_images(root / "target")}), manifests)
    assert (found.status, found.roles, found.expected) == ("exact", ("target",), 6)


def test_identify_modified_reencoded_and_unknown(toy, tmp_path):
    root, manifests = toy
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    img = cv2.imread(str(copy / "target" / "001.png"))
    cv2.imwrite(str(copy / "target" / "001.png"), img, [cv2.IMWRITE_PNG_COMPRESSION, 0])  # same pixels
    write_png(copy / "target" / "002.png", rgb(64, 96, seed=99))  # other pixels
    found = identify(_facts(copy), manifests)
    assert (found.status, found.modified, found.reencoded) == ("partial", ["target/001.png", "target/002.png"],
                                                               ["target/001.png"])
    assert not found.same_pixels
    (copy / "target" / "002.png").unlink()
    shutil.copy(root / "target" / "002.png", copy / "target" / "002.png")
    found = identify(_facts(copy), manifests)
    assert found.same_pixels and found.status == "partial"  # re-encoded only: scores are the same
    # One file of the set among many others: unknown, but the version it holds files of is named.
    mixed = make_pairs(tmp_path / "mixed", n=5, size=(64, 96), seed=50)
    shutil.copy(root / "target" / "000.png", mixed / "target" / "000.png")
    found = identify(_facts(mixed), manifests)
    assert (found.status, found.set, found.contains) == ("unknown", None, [("Toy 64x96", 1)])
    assert found.summary() == {"set": None, "version": None, "status": "unknown", "contains": {"Toy 64x96": 1}}


def test_identification_hashes_only_files_of_a_listed_size(toy, tmp_path, monkeypatch):
    """Identifying a folder of unknown images costs a stat per file: nothing is read."""
    _, manifests = toy
    other = make_pairs(tmp_path / "other", n=4, size=(40, 50))
    import data.manifest

    monkeypatch.setattr(data.manifest, "sha256_file", lambda p: pytest.fail(f"{p} was hashed"))
    assert identify(_facts(other), manifests).status == "unknown"


@pytest.mark.parametrize("change, message", [
    (lambda t: t.replace("# kind: test", "# kind: exam"), "kind 'exam' is not one of test, train"),
    (lambda t: t.replace("# set: Toy\n", ""), "no # set: header line"),
    (lambda t: t.replace("# pairs: 6", "# pairs: 7"), "pairs 7 but 6 inputs and 6 targets"),
    (lambda t: t.replace("# sizes: 96x64 (6)", "# sizes: 96x64 (5)"), "sizes '96x64 (5)' but the inputs listed"),
    (lambda t: t.replace(COLUMNS, COLUMNS.replace("bytes", "size")), "line 7: expected the column names"),
    (lambda t: t.replace("\ninput\t001.png", "\nrainy\t001.png"), "line 9: role 'rainy'"),
    (lambda t: t.replace("\ninput\t001.png\t", "\ninput\t001.png\tabc"), "line 9: sha256"),
    (lambda t: t.replace("\ninput\t001.png", "\ninput\t000.png"), "line 9: input/000.png is listed twice"),
    (lambda t: t.replace("\t96\t64\t", "\t96\t64\textra\t", 1), "line 8: 8 tab-separated fields"),
    (lambda t: t.replace("\t96\t64\t", "\t96\t-4\t", 1), "line 8: height '-4'"),
    (lambda t: t + "# about: late\n", "header line after the table"),
    (lambda t: t.split(COLUMNS)[0], "no files listed"),
])
def test_malformed_manifests_are_named_with_their_line(toy, tmp_path, change, message):
    root, _ = toy
    path = write_manifest(tmp_path / "bad" / "Toy.tsv", root)
    path.write_text(change(path.read_text()))
    with pytest.raises(ManifestError) as err:
        parse_manifest(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_two_manifests_of_one_version_and_binary_files_are_refused(toy, tmp_path):
    root, _ = toy
    write_manifest(tmp_path / "twice" / "a.tsv", root)
    write_manifest(tmp_path / "twice" / "b.tsv", root)
    with pytest.raises(ManifestError, match="both describe Toy 64x96"):
        load_manifests(tmp_path / "twice")
    (tmp_path / "binary").mkdir()
    (tmp_path / "binary" / "x.tsv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ManifestError, match="not UTF-8"):
        load_manifests(tmp_path / "binary")


def test_set_version_of_the_real_sets():
    rain100h = require_shared("data", "Rain100H")
    version = set_version(list_images(rain100h / "input"), list_images(rain100h / "target"))
    assert version == {"set": "Rain100H", "version": "480x320", "status": "exact", "matched": 200, "of": 200,
                       "modified": 0, "reencoded": 0, "missing": 0, "extra": 0, "same_pixels": True}
    assert set_version(None, list_images(rain100h / "target"))["of"] == 100  # evaluate.py: the targets
    train = require_shared("data", "RainTrainL")
    assert set_version(list_images(train / "input"), None)["set"] == "RainTrainL"


def _version(version: str, status: str = "exact", **extra) -> dict:
    return {"set": "Rain100H", "version": version, "status": status, "matched": 200, "of": 200,
            "same_pixels": status == "exact", **extra}


def test_published_figures_are_comparable_only_on_their_version():
    data = leaderboard.load_published()
    known = {(m.set, m.version) for m in load_manifests()}
    for entry in data["published"]:  # every figure names its test-set version, or says it is unknown
        assert entry["test_version"] == "unknown" or (entry["test_set"], entry["test_version"]) in known
    fig = leaderboard.published_figure(data, "PReNet", "RainTrainH", "Rain100H", _version("480x320"))
    assert (fig["psnr"], fig["comparable"], fig["note"]) == (29.46, True, "")
    fig = leaderboard.published_figure(data, "PReNet", "RainTrainH", "Rain100H", _version("481x321"))
    assert not fig["comparable"] and fig["why"] == "published on Rain100H 480x320, measured on 481x321"
    partial = _version("480x320", "partial", matched=198)
    fig = leaderboard.published_figure(data, "PReNet", "RainTrainH", "Rain100H", partial)
    assert not fig["comparable"] and "partial copy of Rain100H 480x320 (198 of 200 files match)" in fig["why"]
    reencoded = _version("480x320", "partial", same_pixels=True)  # only re-encoded files: the same pixels
    assert leaderboard.published_figure(data, "PReNet", "RainTrainH", "Rain100H", reencoded)["comparable"]
    fig = leaderboard.published_figure(data, "BRN", "RainTrainH", "Rain100H", _version("481x321"))
    assert fig["comparable"] and "does not say which version of Rain100H" in fig["note"]
    other = {**_version("480x320"), "set": "Rain100L"}
    fig = leaderboard.published_figure(data, "BRN", "RainTrainH", "Rain100H", other)
    assert not fig["comparable"] and "are Rain100L 480x320" in fig["why"]
    # Sets without a manifest cannot be checked; the version check leaves them as they were.
    fig = leaderboard.published_figure(data, "BRN", "Rain12600", "Rain1400", {"status": "unknown"})
    assert fig["comparable"] and fig["note"] == ""


def test_leaderboard_cell_says_what_the_source_left_open():
    row = {"dataset": "Rain100H", "model": "BRN", "weights": {"label": "Rain100H", "trained_on": "RainTrainH"},
           "params": 1, "macs": 1e9, "seconds_per_image": 1.0, "psnr": 30.45, "ssim": 0.91, "no_reference": {},
           "published": {"psnr": 30.47, "ssim": 0.913, "source": "BRN", "comparable": True,
                         "note": "the source does not say which version of Rain100H it used; measured on 480x320"}}
    _, cells = leaderboard.table_rows([row])
    assert cells[0][-1] == "yes (the source does not say which version of Rain100H it used; measured on 480x320)"
