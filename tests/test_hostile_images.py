"""Hostile suite, class 2: images that pass a shallow check (giant headers, corrupt streams, ...).

Every tool turns an undecodable image into an error naming it; derain.py
skips it and derains the rest; training finds it at start-up.
"""
from __future__ import annotations

import multiprocessing
import os

import numpy as np
import pytest
from hostile_helpers import (
    BAD_IMAGES,
    expect_error,
    expect_ok,
    make_pairs,
    rgb,
    run_tool,
    save_ours,
    snapshot,
    train_args,
    write_png,
)

from utils.image_io import read_image

KINDS = list(BAD_IMAGES)


@pytest.mark.parametrize("kind", KINDS)
def test_derain_skips_and_names_a_bad_image(kind, tmp_path):
    photos = tmp_path / "photos"
    write_png(photos / "good.png", rgb(40, 50))
    (photos / "bad.png").write_bytes(BAD_IMAGES[kind]())
    before = snapshot(photos)
    run = run_tool("derain", photos, "--model", "Identity", "--out", tmp_path / "out", cwd=tmp_path)
    expect_error(run, "bad.png")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["good.png"]
    assert snapshot(photos) == before


@pytest.mark.parametrize("kind", KINDS)
def test_test_py_names_a_bad_input(kind, tmp_path):
    root = make_pairs(tmp_path / "sets" / "Rain100L", n=2)
    (root / "input" / "001.png").write_bytes(BAD_IMAGES[kind]())
    before = snapshot(tmp_path / "sets")
    run = run_tool("test", "--model", "Identity", "--input_dir", tmp_path / "sets", "--result_dir",
                   tmp_path / "res", cwd=tmp_path)
    expect_error(run, "001.png")
    assert snapshot(tmp_path / "sets") == before


@pytest.mark.parametrize("side", ["result", "target"])
@pytest.mark.parametrize("kind", KINDS)
def test_evaluate_names_a_bad_result_or_target(kind, side, tmp_path):
    gt = make_pairs(tmp_path / "gt" / "Rain100L", n=2)
    results = tmp_path / "res" / "Rain100L"
    results.mkdir(parents=True)
    for p in (gt / "input").iterdir():
        (results / p.name).write_bytes(p.read_bytes())
    bad = (results if side == "result" else gt / "target") / "001.png"
    bad.write_bytes(BAD_IMAGES[kind]())
    run = run_tool("evaluate", "--result_dir", tmp_path / "res", "--gt_dir", tmp_path / "gt", "--workers", "1",
                   cwd=tmp_path)
    expect_error(run, bad)


@pytest.mark.parametrize("kind", KINDS)
def test_training_start_up_check_names_a_bad_image(kind, tmp_path):
    train = make_pairs(tmp_path / "train", n=3)
    val = make_pairs(tmp_path / "val", n=1)
    (train / "target" / "002.png").write_bytes(BAD_IMAGES[kind]())
    run = run_tool("train", *train_args(train, val, tmp_path / "ck"), cwd=tmp_path)
    expect_error(run, train / "target" / "002.png")
    assert not list((tmp_path / "ck").rglob("*.pth"))


@pytest.mark.parametrize("kind", ["huge-header", "corrupt-stream", "truncated"])
def test_build_store_names_a_bad_image(kind, tmp_path):
    root = make_pairs(tmp_path / "train", n=3)
    (root / "input" / "000.png").write_bytes(BAD_IMAGES[kind]())
    run = run_tool("build_store", "--root", root, "--out", tmp_path / "train.store", cwd=tmp_path)
    expect_error(run, root / "input" / "000.png")
    assert list(tmp_path.glob("*.store")) == [] and not list(tmp_path.glob(".*"))


def test_validation_image_with_a_giant_header_is_found_at_start_up(tmp_path):
    train, val = make_pairs(tmp_path / "train", n=3), make_pairs(tmp_path / "val", n=2)
    (val / "input" / "001.png").write_bytes(BAD_IMAGES["huge-header"]())
    run = run_tool("train", *train_args(train, val, tmp_path / "ck"), cwd=tmp_path)
    expect_error(run, val / "input" / "001.png", "exceeds limit")


def test_an_image_failing_inside_a_loader_worker_ends_training_with_its_name(tmp_path, monkeypatch):
    """A file that changed after the start-up check: a named error, not the worker's traceback."""
    import data.paired
    from utils.image_io import ImageReadError

    train, val = make_pairs(tmp_path / "train", n=4), make_pairs(tmp_path / "val", n=1)
    real = data.paired.read_pair

    def read_pair(pair):  # the check passes; then the file is "replaced" under the running loader
        if pair.name == "002":
            raise ImageReadError(f"cannot decode image (corrupt or not an image): {pair.input}")
        return real(pair)

    monkeypatch.setattr(data.paired, "read_pair", read_pair)  # the loader's worker process inherits it
    run = run_tool("train", *train_args(train, val, tmp_path / "ck", "TRAINING.NUM_WORKERS", "1"), cwd=tmp_path)
    expect_error(run, train / "input" / "002.png", "changed since")
    assert "worker" not in run.stderr
    # Its workers ended with the run: they ignore SIGTERM, so one left behind would hang the exit of the
    # process (multiprocessing stops children with SIGTERM and waits for them).
    assert multiprocessing.active_children() == []


def test_fifo_named_like_an_image_never_blocks(tmp_path):
    photos = tmp_path / "photos"
    write_png(photos / "good.png", rgb(30, 30))
    os.mkfifo(photos / "pipe.png")
    expect_ok(run_tool("derain", photos, "--model", "Identity", "--out", tmp_path / "out", cwd=tmp_path))
    run = run_tool("derain", photos / "pipe.png", "--model", "Identity", "--out", tmp_path / "out2", cwd=tmp_path)
    expect_error(run, "pipe.png")


def test_one_pixel_and_odd_formats_are_derained(tmp_path):
    """Graceful: a 1x1 image through DMSR's window protocol, 16-bit RGBA, a PNG named .jpg."""
    import cv2

    photos = tmp_path / "photos"
    write_png(photos / "dot.png", rgb(1, 1))
    deep = (np.arange(24 * 20 * 4, dtype=np.uint16).reshape(24, 20, 4) * 97)
    cv2.imwrite(str(photos / "deep.png"), deep)
    (photos / "named.jpg").write_bytes((photos / "dot.png").read_bytes())
    weights = save_ours(tmp_path / "tiny.pth")
    run = run_tool("derain", photos, "--weights", weights, "--out", tmp_path / "out", "--device", "cpu",
                   cwd=tmp_path)
    expect_ok(run)
    assert read_image(tmp_path / "out" / "dot.png").shape == (1, 1, 3)
    assert read_image(tmp_path / "out" / "deep.png").shape == (24, 20, 3)
    assert read_image(tmp_path / "out" / "named.png").shape == (1, 1, 3)


def test_evaluate_names_images_too_small_to_score(tmp_path):
    gt = tmp_path / "gt" / "Rain100L"
    write_png(gt / "target" / "a.png", rgb(5, 5))
    write_png(tmp_path / "res" / "Rain100L" / "a.png", rgb(5, 5, seed=1))
    run = run_tool("evaluate", "--result_dir", tmp_path / "res", "--gt_dir", tmp_path / "gt", cwd=tmp_path)
    expect_error(run, "a.png", "too small")


@pytest.mark.parametrize("damage", ["header-length", "entry-offset", "entry-size", "truncated"])
def test_a_damaged_store_is_named_at_start_up(damage, tmp_path):
    """A store with the right magic but a hostile header: no giant read, no reshape error mid-training."""
    import json
    import struct

    from data.store import MAGIC

    train, val = make_pairs(tmp_path / "train", n=3), make_pairs(tmp_path / "val", n=1)
    expect_ok(run_tool("build_store", "--root", train, "--out", tmp_path / "s.store", cwd=tmp_path))
    data = bytearray((tmp_path / "s.store").read_bytes())
    (length,) = struct.unpack("<Q", data[len(MAGIC):len(MAGIC) + 8])
    start = len(MAGIC) + 8
    header = json.loads(data[start:start + length])
    if damage == "header-length":
        data[len(MAGIC):start] = struct.pack("<Q", 2**60)
    elif damage == "truncated":
        data = data[: len(data) // 2]
    else:
        entry = header["pairs"][1]
        entry.update({"offset": 7} if damage == "entry-offset" else {"height": -70})
        text = json.dumps(header).encode()
        data[len(MAGIC):start + length] = struct.pack("<Q", len(text)) + text
        data[start + len(text):start + len(text)] = b" " * (length - len(text))  # keep the data start in place
    (tmp_path / "s.store").write_bytes(bytes(data))
    run = run_tool("train", *train_args(train, val, tmp_path / "ck", "TRAINING.STORE", tmp_path / "s.store"),
                   cwd=tmp_path)
    expect_error(run, tmp_path / "s.store")
