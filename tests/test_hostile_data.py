"""Hostile suite: scripts/check_data.py on paths that are no dataset, unreadable files and broken manifests.

A path that cannot be read or is not a dataset folder, and a manifest that
does not parse, end the run with one line naming the culprit (exit 1, no
traceback, no JSON written); bad images inside a set are findings (exit 0).
"""
from __future__ import annotations

import json

from hostile_helpers import (
    BAD_IMAGES,
    expect_error,
    expect_ok,
    lock_out,
    make_pairs,
    open_to_all,
    run_tool,
    snapshot,
    temp_files,
)


def test_missing_path_and_a_file_are_named(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    run = run_tool("check_data", tmp_path / "nope", "--json", tmp_path / "out.json", cwd=tmp_path)
    expect_error(run, tmp_path / "nope", "no such folder")
    run = run_tool("check_data", tmp_path / "notes.txt", "--json", tmp_path / "out.json", cwd=tmp_path)
    expect_error(run, tmp_path / "notes.txt", "not a folder")
    assert not (tmp_path / "out.json").exists() and (tmp_path / "notes.txt").read_text() == "mine"


def test_a_folder_that_is_not_a_set_is_named_before_anything_is_read(tmp_path):
    good = make_pairs(tmp_path / "good")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "readme.txt").write_text("no images here")
    before = snapshot(tmp_path)
    run = run_tool("check_data", good, junk, "--json", tmp_path / "out.json", cwd=tmp_path)
    expect_error(run, junk, "is not a dataset")
    assert "reading images" not in run.output and snapshot(tmp_path) == before and not temp_files(tmp_path)


def test_unreadable_file_and_folder(world):
    data = make_pairs(world / "set")
    open_to_all(world)
    lock_out(data / "target" / "001.png")
    run = run_tool("check_data", data, "--json", world / "out.json", cwd=world, as_nobody=True)
    expect_error(run, data / "target" / "001.png", "Permission denied")
    assert not (world / "out.json").exists()
    (data / "target" / "001.png").chmod(0o644)
    lock_out(data)
    run = run_tool("check_data", data, cwd=world, as_nobody=True)
    data.chmod(0o755)
    expect_error(run, data, "Permission denied")


def test_manifest_that_does_not_parse_is_named_with_its_line(tmp_path):
    data = make_pairs(tmp_path / "set")
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "Mine.tsv").write_text("# set: Mine\n# version: v1\n# kind: test\n# pairs: 1\n"
                                        "role\tname\tsha256\tbytes\twidth\theight\tpixels_sha256\n"
                                        "input\t000.png\tnot-a-hash\t10\t76\t70\t-\n")
    run = run_tool("check_data", data, "--manifests", manifests, "--json", tmp_path / "out.json", cwd=tmp_path)
    expect_error(run, manifests / "Mine.tsv", "line 6", "sha256")
    run = run_tool("check_data", data, "--manifests", tmp_path / "none", cwd=tmp_path)
    expect_error(run, tmp_path / "none", "not a folder")
    assert not (tmp_path / "out.json").exists()


def test_bad_images_in_a_set_are_findings_not_errors(tmp_path):
    data = make_pairs(tmp_path / "set", n=len(BAD_IMAGES))
    for k, make in enumerate(BAD_IMAGES.values()):
        (data / "input" / f"{k:03d}.png").write_bytes(make())
    before = snapshot(data)
    run = run_tool("check_data", data, "--json", tmp_path / "out.json", "--show", "0", cwd=tmp_path)
    expect_ok(run)
    (found,) = json.loads((tmp_path / "out.json").read_text())["folders"]
    problems = "\n".join(found["problems"])
    for k in range(len(BAD_IMAGES)):
        assert f"unreadable image {data / 'input' / f'{k:03d}.png'}" in problems
        assert f"{k:03d}.png" in run.stdout
    assert snapshot(data) == before


def test_json_never_overwrites_a_checked_file(tmp_path):
    data = make_pairs(tmp_path / "set")
    before = snapshot(data)
    run = run_tool("check_data", data, "--json", data / "target" / "000.png", cwd=tmp_path)
    expect_error(run, data / "target" / "000.png", "would overwrite a file being checked")
    assert snapshot(data) == before


def test_json_in_an_unwritable_folder(world):
    data = make_pairs(world / "set")
    (world / "locked").mkdir(mode=0o555)
    run = run_tool("check_data", data, "--json", world / "locked" / "out.json", cwd=world, as_nobody=True)
    expect_error(run, world / "locked" / "out.json", "Permission denied")
