"""Hostile suite, issue 21 class 1 (and the output checks of class 5): outputs over inputs.

No tool writes over a file it reads, nor over a file it did not create
without being told to; an output that cannot be one (a file where a folder
must be, a folder where a file must be) is refused before any work.  The
leaderboard, compare.py and the MSPFN converter are held to what test.py,
derain.py and evaluate.py already did; two weights files with the same last
path parts get labels (and image folders) that tell them apart.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hostile_helpers import (
    expect_error,
    expect_ok,
    make_pairs,
    make_results,
    rgb,
    run_tool,
    save_ours,
    snapshot,
    temp_files,
    write_png,
)

from models import build_model
from utils.image_io import read_image

TINY_DMSR = {"base_channels": 8, "num_res": 1}
LB_FAST = ["--device", "cpu", "--macs-size", "64", "64"]
NO_WORK = "s/image"  # the leaderboard's progress lines; absent when it refused before deraining anything


def _dmsr(path, seed: int):
    torch.manual_seed(seed)
    return save_ours(path, kwargs=TINY_DMSR, state=build_model("DMSR", **TINY_DMSR).state_dict())


@pytest.fixture
def board(tmp_path):
    """``sets/Rain100L/{input,target}`` (2 pairs) and two different tiny DMSR files ``run{A,B}/DMSR/model_best.pth``."""
    make_pairs(tmp_path / "sets" / "Rain100L", n=2, size=(40, 44))
    for k, run in enumerate("AB"):
        _dmsr(tmp_path / f"run{run}" / "DMSR" / "model_best.pth", seed=k)
    return tmp_path


def _leaderboard(root, out, *models, extra=()):
    return run_tool("leaderboard", "--models", *models, "--input_dir", root / "sets", "--datasets", "Rain100L",
                    "--out", out, *LB_FAST, *extra, cwd=root)


# ----------------------------------------------------------------------------- leaderboard: where --out may be

@pytest.mark.parametrize("where", ["input folder", "target folder", "set folder", "input_dir"])
def test_leaderboard_out_is_or_holds_an_input_folder(where, board):
    sets = board / "sets"
    out = {"input folder": sets / "Rain100L" / "input", "target folder": sets / "Rain100L" / "target",
           "set folder": sets / "Rain100L", "input_dir": sets}[where]
    before = snapshot(sets)
    run = _leaderboard(board, out, "Identity", extra=["--save-images"])
    expect_error(run, f"--out {out}", "Rain100L")
    assert NO_WORK not in run.output
    assert snapshot(sets) == before and not temp_files(board)


def test_leaderboard_out_equal_to_a_plain_image_folder(tmp_path):
    photos = tmp_path / "photos"
    for name in ("a.png", "b.png"):
        write_png(photos / name, rgb(40, 40))
    before = snapshot(photos)
    run = run_tool("leaderboard", "--models", "Identity", "--input_dir", photos, "--out", photos, "--save-images",
                   *LB_FAST, cwd=tmp_path)
    expect_error(run, f"--out {photos}", "photos input folder")
    assert snapshot(photos) == before


def test_leaderboard_out_holding_a_weights_file(board):
    weights = board / "runA" / "DMSR" / "model_best.pth"
    before = snapshot(board / "runA")
    run = _leaderboard(board, board / "runA", f"DMSR:{weights}", extra=["--save-images"])
    expect_error(run, f"--out {board / 'runA'}", weights)
    assert snapshot(board / "runA") == before


@pytest.mark.parametrize("blocked", ["out is a file", "out under a file"])
def test_leaderboard_unusable_out_is_found_before_any_work(blocked, board):
    (board / "notes.txt").write_text("my notes")
    out = board / "notes.txt" if blocked == "out is a file" else board / "notes.txt" / "lb"
    run = _leaderboard(board, out, f"DMSR:{board / 'runA' / 'DMSR' / 'model_best.pth'}")
    expect_error(run, out, "notes.txt is a file")
    assert NO_WORK not in run.output
    assert (board / "notes.txt").read_text() == "my notes"


@pytest.mark.parametrize("entry", ["DMSR:", ":weights.pth", ""])
def test_leaderboard_malformed_models_entry_is_a_usage_error(entry, board):
    run = _leaderboard(board, board / "lb", entry)
    expect_error(run, repr(entry), "MODEL:WEIGHTS", "usage:", rc=2)
    assert not (board / "lb").exists()


# ----------------------------------------------------------------------------- leaderboard: labels

def test_leaderboard_same_last_path_parts_get_labels_that_tell_them_apart(board):
    a, b = (board / f"run{r}" / "DMSR" / "model_best.pth" for r in "AB")
    expect_ok(_leaderboard(board, board / "lb", f"DMSR:{a}", f"DMSR:{b}", extra=["--save-images"]))
    rows = json.loads((board / "lb" / "leaderboard.json").read_text())["rows"]
    assert [r["weights"]["label"] for r in rows] == ["runA/DMSR/model_best.pth", "runB/DMSR/model_best.pth"]
    assert [r["weights"]["path"] for r in rows] == [str(a), str(b)]
    table = (board / "lb" / "leaderboard.md").read_text()
    assert "runA/DMSR/model_best.pth (unknown)" in table and "runB/DMSR/model_best.pth (unknown)" in table
    # Each row's images in their own folder, and they are that file's results (the two networks differ).
    from inference.runner import derain_image, load_model

    rainy = read_image(board / "sets" / "Rain100L" / "input" / "000.png")
    saved = {}
    for run, weights in (("A", a), ("B", b)):
        model, _ = load_model("DMSR", weights)
        saved[run] = read_image(board / "lb" / "images" / f"DMSR_run{run}_DMSR_model_best.pth" / "Rain100L" / "000.png")
        assert np.array_equal(saved[run], derain_image(model, rainy, "cpu"))
    assert not np.array_equal(saved["A"], saved["B"])


def test_leaderboard_shortest_distinguishing_ending(board):
    a = board / "runA" / "DMSR" / "model_best.pth"
    other = _dmsr(board / "elsewhere" / "model_best.pth", seed=2)
    expect_ok(_leaderboard(board, board / "lb", f"DMSR:{a}", f"DMSR:{other}"))
    rows = json.loads((board / "lb" / "leaderboard.json").read_text())["rows"]
    assert [r["weights"]["label"] for r in rows] == ["DMSR/model_best.pth", "elsewhere/model_best.pth"]


@pytest.mark.parametrize("twice", ["same file", "same file by another path", "no weights"])
def test_leaderboard_entry_given_twice(twice, board):
    a = board / "runA" / "DMSR" / "model_best.pth"
    entries = {"same file": [f"DMSR:{a}", f"DMSR:{a}"],
               "same file by another path": [f"DMSR:{a}", f"DMSR:{board / 'runA' / '..' / 'runA' / 'DMSR' / a.name}"],
               "no weights": ["Identity", "Identity"]}[twice]
    run = _leaderboard(board, board / "lb", *entries)
    expect_error(run, "given twice")
    assert NO_WORK not in run.output and not (board / "lb" / "leaderboard.md").exists()


# ----------------------------------------------------------------------------- compare.py

@pytest.fixture
def shots(tmp_path):
    """input/, target/ and results A/ with two 48x52 images, and in each a page named like compare's."""
    for i in range(2):
        write_png(tmp_path / "input" / f"{i}.png", rgb(48, 52, seed=i))
        write_png(tmp_path / "target" / f"{i}.png", rgb(48, 52, seed=10 + i))
        write_png(tmp_path / "A" / f"{i}.png", rgb(48, 52, seed=20 + i))
    for folder in ("input", "target", "A"):
        (tmp_path / folder / "index.html").write_text("<p>my own page</p>")
    return tmp_path


def _compare(root, out):
    return run_tool("compare", "--methods", f"A={root / 'A'}", "--input", root / "input", "--target",
                    root / "target", "--out", out, "--panel-width", "64", cwd=root)


@pytest.mark.parametrize("folder,what", [("input", "--input"), ("target", "--target"), ("A", "A method")])
def test_compare_out_equal_to_a_folder_it_reads(folder, what, shots):
    before = snapshot(shots)
    run = _compare(shots, shots / folder)
    expect_error(run, f"--out {shots / folder}", f"the {what} folder")
    assert snapshot(shots) == before and not temp_files(shots)


def test_compare_out_holding_the_folders_it_reads(shots):
    before = snapshot(shots)
    run = _compare(shots, shots)
    expect_error(run, f"--out {shots}", "holds the")
    assert snapshot(shots) == before


@pytest.mark.parametrize("blocked", ["out is a file", "out under a file"])
def test_compare_unusable_out(blocked, shots):
    (shots / "notes.txt").write_text("my notes")
    out = shots / "notes.txt" if blocked == "out is a file" else shots / "notes.txt" / "cmp"
    run = _compare(shots, out)
    expect_error(run, out, "notes.txt is a file")
    assert (shots / "notes.txt").read_text() == "my notes"


# ----------------------------------------------------------------------------- convert_mspfn_tf.py

@pytest.fixture
def npz(tmp_path):
    path = tmp_path / "variables.npz"
    np.savez(path, **{"generator/rnn1/weight:0": np.zeros((3, 3, 3, 4), np.float32)})
    return path


def test_converter_out_equal_to_its_input(npz, tmp_path):
    before = snapshot(tmp_path)
    for force in ((), ("--force",)):
        run = run_tool("convert_mspfn_tf", "--npz", npz, "--variant", "m17n1", "--out", npz, *force, cwd=tmp_path)
        expect_error(run, f"--out {npz} is the input {npz}")
    assert snapshot(tmp_path) == before and not temp_files(tmp_path)


def test_converter_out_equal_to_a_checkpoint_file(tmp_path):
    """Checked before TensorFlow is needed: the prefix's own files are never written over."""
    ckpt = tmp_path / "MSPFN"
    ckpt.mkdir()
    for name in ("checkpoint", "epoch50.index", "epoch50.data-00000-of-00001"):
        (ckpt / name).write_bytes(b"the authors' file " + name.encode())
    before = snapshot(tmp_path)
    for prefix, out in ((ckpt / "epoch50", ckpt / "epoch50.index"), (ckpt, ckpt / "checkpoint")):
        run = run_tool("convert_mspfn_tf", "--ckpt", prefix, "--variant", "m17n1", "--out", out, "--force",
                       cwd=tmp_path)
        expect_error(run, f"--out {out} is the input")
    assert snapshot(tmp_path) == before


def test_converter_refuses_an_existing_file_without_force(npz, tmp_path):
    (tmp_path / "model.pth").write_text("someone else's file")
    run = run_tool("convert_mspfn_tf", "--npz", npz, "--variant", "m17n1", "--out", tmp_path / "model.pth",
                   cwd=tmp_path)
    expect_error(run, tmp_path / "model.pth", "exists", "--force")
    assert (tmp_path / "model.pth").read_text() == "someone else's file"


@pytest.mark.parametrize("blocked", ["out is a folder", "out under a file"])
def test_converter_unusable_out(blocked, npz, tmp_path):
    (tmp_path / "notes.txt").write_text("my notes")
    (tmp_path / "weights").mkdir()
    out = tmp_path / "weights" if blocked == "out is a folder" else tmp_path / "notes.txt" / "model.pth"
    run = run_tool("convert_mspfn_tf", "--npz", npz, "--variant", "m17n1", "--out", out, cwd=tmp_path)
    expect_error(run, out, "is a folder" if blocked == "out is a folder" else "notes.txt is a file")
    assert (tmp_path / "notes.txt").read_text() == "my notes" and not any((tmp_path / "weights").iterdir())


# ----------------------------------------------------------------------------- the same rule in the older tools

def test_evaluate_csv_never_overwrites_a_target(tmp_path):
    results, gt = make_results(tmp_path)
    target = gt / "Rain100L" / "target" / "000.png"
    before = snapshot(tmp_path)
    run = run_tool("evaluate", "--result_dir", results, "--gt_dir", gt, "--csv", target, cwd=tmp_path)
    expect_error(run, target, "would overwrite an image being scored")
    assert snapshot(tmp_path) == before


def test_test_py_json_never_overwrites_a_target(tmp_path):
    sets = make_pairs(tmp_path / "sets" / "Rain100L", n=2).parent
    target = sets / "Rain100L" / "target" / "001.png"
    before = snapshot(sets)
    run = run_tool("test", "--model", "Identity", "--input_dir", sets, "--result_dir", tmp_path / "r", "--json",
                   target, cwd=tmp_path)
    expect_error(run, target, "would overwrite the test image")
    assert snapshot(sets) == before
