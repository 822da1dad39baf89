"""Hostile suite, issue 21 classes 3 and 5: tracebacks in the newer paths, and the smaller ones.

* NIQE undefined for an image (too small, or flat): every tool - evaluate.py,
  test.py, compare.py, the leaderboard - names it in a warning, leaves it out
  of the NIQE mean, counts it, and scores the others.
* Every ``__main__`` goes through ``utils.errors.run_cli``: one ``error:``
  line (config errors too), exit 1 (2 for usage errors), no traceback - and
  a real bug keeps its traceback.
* Running out of CPU memory is one line saying what ran out and what to lower.
* Broken and looping symbolic links, unlistable sub-folders: named, never
  skipped without a word.  A refused or impossible training run leaves
  nothing behind (no session folder, no lines added to an earlier train.log).
"""
from __future__ import annotations

import ast
import json
import os
import runpy
import shutil
import sys

import numpy as np
import pytest
from hostile_helpers import (
    REPO,
    expect_error,
    expect_ok,
    make_pairs,
    make_results,
    rgb,
    run_tool,
    save_ours,
    snapshot,
    train_args,
    write_png,
)

from metrics.niqe import niqe
from utils.image_io import read_image

# What torch 2.x raises when the CPU allocator fails (c10/core/impl/alloc_cpu.cpp), verbatim.
TORCH_CPU_OOM = ("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you "
                 "tried to allocate 1073741824 bytes. Error code 12 (Cannot allocate memory)")


def _photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A picture NIQE is defined for when at least 192 pixels one way (texture in every block)."""
    noise = np.random.default_rng(seed).integers(-20, 21, (h, w, 3))
    return np.clip(rgb(h, w, seed).astype(int) + noise, 0, 255).astype(np.uint8)


def _niqe_set(folder):
    """``good.png`` (NIQE defined), ``tiny.png`` (under 192 pixels both ways) and ``flat.png`` (one grey)."""
    write_png(folder / "good.png", _photo(200, 296))
    write_png(folder / "tiny.png", _photo(100, 120, seed=1))
    write_png(folder / "flat.png", np.full((200, 296, 3), 128, np.uint8))
    return folder


# ----------------------------------------------------------------------------- NIQE undefined: one policy

def test_evaluate_niqe_skips_names_and_counts_undefined_images(tmp_path):
    _niqe_set(tmp_path / "res" / "Real")
    out = tmp_path / "niqe.json"
    run = run_tool("evaluate", "--result_dir", tmp_path / "res", "--datasets", "Real", "--metrics", "niqe",
                   "--json", out, "--workers", "2", cwd=tmp_path)
    expect_ok(run)
    assert "not scored by NIQE" in run.stderr and "tiny.png" in run.stderr and "flat.png" in run.stderr
    assert "2 of 3 image(s) not scored by NIQE" in run.stdout
    report = json.loads(out.read_text())
    assert report["Real"] == {"niqe": pytest.approx(niqe(read_image(tmp_path / "res" / "Real" / "good.png"))),
                              "n": 3, "not_scored": 2}


def test_evaluate_psnr_ssim_and_undefined_niqe_together(tmp_path):
    results, gt = make_results(tmp_path, n=2)  # 70x76 images: PSNR/SSIM defined, NIQE not
    out = tmp_path / "all.json"
    run = run_tool("evaluate", "--result_dir", results, "--gt_dir", gt, "--metrics", "psnr,ssim,niqe", "--json", out,
                   cwd=tmp_path)
    expect_ok(run)
    scores = json.loads(out.read_text())["Rain100L"]
    assert scores["n"] == 2 and scores["not_scored"] == 2 and "niqe" not in scores and scores["psnr"] > 10


def test_test_py_counts_undefined_niqe(tmp_path):
    photos = _niqe_set(tmp_path / "Real")
    run = run_tool("test", "--model", "Identity", "--input_dir", photos, "--result_dir", tmp_path / "r",
                   cwd=tmp_path)
    expect_ok(run)
    assert "tiny.png" in run.stderr and "flat.png" in run.stderr and "not scored by NIQE" in run.stdout
    report = json.loads((tmp_path / "r" / "Identity" / "scores.json").read_text())["Real"]
    value = niqe(read_image(photos / "good.png"))
    assert report == {"niqe": pytest.approx(value), "input_niqe": pytest.approx(value), "n": 3, "not_scored": 2}
    table = (tmp_path / "r" / "Identity" / "scores.csv").read_text().splitlines()
    assert table[0] == "dataset,n,niqe,input_niqe,not_scored" and table[1].startswith("Real,3,") and \
        table[1].endswith(",2")
    assert sorted(p.name for p in (tmp_path / "r" / "Identity" / "Real").iterdir()) == [
        "flat.png", "good.png", "tiny.png"]  # all derained


def test_compare_without_targets_shows_undefined_niqe(tmp_path):
    _niqe_set(tmp_path / "input")
    _niqe_set(tmp_path / "A")
    run = run_tool("compare", "--methods", f"A={tmp_path / 'A'}", "--input", tmp_path / "input", "--out",
                   tmp_path / "cmp", "--images", "tiny", "flat", "--panel-width", "64", cwd=tmp_path)
    expect_ok(run)
    for name in ("input/tiny.png", "A/flat.png"):
        assert str(tmp_path / name) in run.stderr
    page = (tmp_path / "cmp" / "index.html").read_text()
    assert "NIQE undefined" in page and "NIQE is undefined for 2 image(s)" in page
    assert read_image(tmp_path / "cmp" / "figure.png").shape[1] == 2 * 64 + 6 + 2 * 6


def test_compare_image_too_small_to_score_is_named(tmp_path):
    for folder in ("input", "target", "A"):
        write_png(tmp_path / folder / "dot.png", rgb(8, 9))
    run = run_tool("compare", "--methods", f"A={tmp_path / 'A'}", "--input", tmp_path / "input", "--target",
                   tmp_path / "target", "--out", tmp_path / "cmp", cwd=tmp_path)
    expect_error(run, tmp_path / "input" / "dot.png", tmp_path / "target" / "dot.png", "too small")
    assert not (tmp_path / "cmp" / "index.html").exists()


def test_leaderboard_counts_undefined_niqe(tmp_path):
    _niqe_set(tmp_path / "sets" / "Real" / "input")
    run = run_tool("leaderboard", "--models", "Identity", "--input_dir", tmp_path / "sets", "--datasets", "Real",
                   "--out", tmp_path / "lb", "--device", "cpu", cwd=tmp_path)
    expect_ok(run)
    assert "tiny.png not scored" in run.stderr and "flat.png not scored" in run.stderr
    (row,) = json.loads((tmp_path / "lb" / "leaderboard.json").read_text())["rows"]
    assert row["not_scored"] == 2 and row["n"] == 3
    assert row["no_reference"]["NIQE"] == pytest.approx(niqe(read_image(tmp_path / "sets/Real/input/good.png")))


# ----------------------------------------------------------------------------- one error handler

def _main_blocks() -> dict[str, str]:
    """Source of every ``if __name__ == "__main__":`` block of the project's Python files."""
    blocks = {}
    for path in sorted(REPO.rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if rel.startswith(("tests/", ".venv/")) or "/." in f"/{rel}":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
                blocks[rel] = ast.unparse(node)
    return blocks


def test_every_main_goes_through_run_cli():
    blocks = _main_blocks()
    assert {"train.py", "test.py", "derain.py", "evaluate.py", "scripts/compare.py",
            "scripts/convert_mspfn_tf.py", "scripts/complexity.py", "scripts/leaderboard.py"} <= set(blocks)
    for rel, block in blocks.items():
        assert "run_cli(" in block and "except" not in block, f"{rel}: {block}"


@pytest.mark.parametrize("tool,args,culprit", [
    ("complexity", ["--model", "DMSR", "--size", "16", "16"], "multiples of 16"),
    ("complexity", ["--model", "NoSuchNet"], "unknown model 'NoSuchNet'"),
    ("compare", ["--methods", "=x", "--input", "in", "--out", "o"], "expected NAME=DIR"),
    ("leaderboard", ["--models", "DMSR", "--input_dir", "sets", "--out", "lb", "--macs-size", "30", "30"],
     "multiples of 16"),
])
def test_newer_tools_fail_in_one_line(tool, args, culprit, tmp_path):
    if tool == "leaderboard":  # DMSR: a tiny checkpoint; the set exists; the MAC size does not suit DMSR
        make_pairs(tmp_path / "sets" / "Rain100L", n=1)
        args = ["--models", f"DMSR:{save_ours(tmp_path / 'w.pth')}", *args[2:], "--device", "cpu"]
    run = run_tool(tool, *args, cwd=tmp_path)
    expect_error(run, culprit)
    assert run.stderr.strip().splitlines()[-1].startswith("error: ") and "s/image" not in run.stderr


def test_train_config_error_starts_like_every_other_error(tmp_path):
    data = make_pairs(tmp_path / "train", n=2), make_pairs(tmp_path / "val", n=1)
    run = run_tool("train", *train_args(*data, tmp_path / "ck", "OPTIM.LR_INITAL", "1e-3"), cwd=tmp_path)
    expect_error(run, "OPTIM.LR_INITAL")
    assert run.stderr.startswith("error: ") and "config error" not in run.stderr
    assert not (tmp_path / "ck").exists()


# ----------------------------------------------------------------------------- out of memory

def _in_process(script: str, args: list, monkeypatch) -> object:
    """Run ``script`` as ``__main__`` here (so a monkeypatch reaches it); returns its exit code or message."""
    monkeypatch.setattr(sys, "argv", [str(REPO / script), *map(str, args)])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(REPO / script), run_name="__main__")
    return done.value.code


def _oom(*args, **kwargs):
    raise RuntimeError(TORCH_CPU_OOM)


@pytest.mark.parametrize("script", ["derain.py", "test.py"])
def test_cpu_out_of_memory_while_deraining(script, tmp_path, monkeypatch):
    monkeypatch.setattr("models.identity.Identity.forward", _oom)
    photos = tmp_path / "photos"
    write_png(photos / "a.png", rgb(30, 30))
    args = ([photos, "--out", tmp_path / "out"] if script == "derain.py"
            else ["--input_dir", photos, "--result_dir", tmp_path / "out"])
    message = _in_process(script, [*args, "--model", "Identity", "--device", "cpu"], monkeypatch)
    assert message == ("error: out of memory (RAM): torch could not allocate 1.0 GiB; lower --max-batch (windows "
                       "per pass) or --tile (window size, e.g. --tile 128)")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.png"))


def test_memory_error_while_training(tmp_path, monkeypatch):
    def no_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 3.00 GiB for an array with shape (1024, 1024, 768)")

    monkeypatch.setattr("training.trainer.Trainer._step", no_memory)
    monkeypatch.setattr("logging.raiseExceptions", True)  # train.py turns it off for the process
    data = make_pairs(tmp_path / "train", n=2), make_pairs(tmp_path / "val", n=1)
    message = _in_process("train.py", train_args(*data, tmp_path / "ck"), monkeypatch)
    assert message.startswith("error: out of memory (RAM): Unable to allocate 3.00 GiB")
    assert message.endswith("; lower OPTIM.BATCH_SIZE or TRAINING.TRAIN_PS (patch size), or TRAINING.NUM_WORKERS")


def test_other_runtime_errors_keep_their_traceback(tmp_path, monkeypatch):
    def bug(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator is mentioned, but this is a bug: mat1 and mat2 shapes differ")

    monkeypatch.setattr("models.identity.Identity.forward", bug)
    write_png(tmp_path / "a.png", rgb(30, 30))
    monkeypatch.setattr(sys, "argv", ["derain.py", str(tmp_path / "a.png"), "--model", "Identity", "--out",
                                      str(tmp_path / "out")])
    with pytest.raises(RuntimeError, match="this is a bug"):
        runpy.run_path(str(REPO / "derain.py"), run_name="__main__")


# ----------------------------------------------------------------------------- links and folders

def _links(folder):
    os.symlink(folder / "gone.png", folder / "dangling.png")
    os.symlink(folder / "loop.png", folder / "loop.png")


def test_derain_names_broken_and_looping_links(tmp_path):
    photos = tmp_path / "photos"
    write_png(photos / "good.png", rgb(20, 20))
    _links(photos)
    run = run_tool("derain", photos, "--model", "Identity", "--out", tmp_path / "out", cwd=tmp_path)
    expect_error(run, photos / "dangling.png", "No such file or directory", photos / "loop.png",
                 "Too many levels of symbolic links", "1 of 3 image(s) derained")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["good.png"]


@pytest.mark.parametrize("link", ["dangling", "looping"])
@pytest.mark.parametrize("tool", ["test", "evaluate", "train"])
def test_other_tools_name_a_broken_link(tool, link, tmp_path):
    """A third pair whose input (test.py, training) or result (evaluate.py) is a link to nowhere, or to itself."""
    root = make_pairs(tmp_path / "Rain100L", n=2)
    results = tmp_path / "res" / "Rain100L"
    shutil.copytree(root / "input", results)
    os.symlink(root / "target" / "000.png", root / "target" / "002.png")
    broken = (results if tool == "evaluate" else root / "input") / "002.png"
    os.symlink(broken if link == "looping" else tmp_path / "gone.png", broken)
    if tool == "evaluate":
        os.symlink(root / "input" / "000.png", root / "input" / "002.png")
    args = {"test": ["--model", "Identity", "--input_dir", tmp_path, "--datasets", "Rain100L", "--result_dir",
                     tmp_path / "r"],
            "evaluate": ["--result_dir", results.parent, "--gt_dir", tmp_path],
            "train": train_args(root, make_pairs(tmp_path / "val", n=1), tmp_path / "ck")}[tool]
    run = run_tool(tool, *args, cwd=tmp_path)
    expect_error(run, broken, "Too many levels of symbolic links" if link == "looping" else "No such file")
    assert not (tmp_path / "ck").exists()


def test_derain_recursive_names_an_unreadable_sub_folder(world):
    photos = world / "photos"
    write_png(photos / "a.png", rgb(20, 20))
    write_png(photos / "locked" / "b.png", rgb(20, 20))
    write_png(photos / "open" / "c.png", rgb(20, 20))
    for folder in (world, photos, photos / "open"):
        folder.chmod(0o777)
    (photos / "locked").chmod(0)
    run = run_tool("derain", photos, "--recursive", "--model", "Identity", "--out", world / "out", cwd=world,
                   as_nobody=True)
    (photos / "locked").chmod(0o755)
    expect_error(run, f"cannot list the folder {photos / 'locked'}: Permission denied", "2 of 2 image(s) derained")
    assert (world / "out" / "a.png").is_file() and (world / "out" / "open" / "c.png").is_file()


# ----------------------------------------------------------------------------- training leaves nothing behind

def test_train_with_an_empty_train_dir_leaves_no_session_folder(tmp_path):
    (tmp_path / "train" / "input").mkdir(parents=True)
    (tmp_path / "train" / "target").mkdir()
    run = run_tool("train", *train_args(tmp_path / "train", make_pairs(tmp_path / "val", n=1), tmp_path / "ck"),
                   cwd=tmp_path)
    expect_error(run, tmp_path / "train" / "input", "no images")
    assert not (tmp_path / "ck").exists()  # no session folder, lock or empty train.log


def test_a_refused_run_adds_nothing_to_the_earlier_run(tmp_path):
    data = make_pairs(tmp_path / "train", n=2), make_pairs(tmp_path / "val", n=1)
    expect_ok(run_tool("train", *train_args(*data, tmp_path / "ck"), cwd=tmp_path))
    session = tmp_path / "ck" / "Deraining" / "DMSR"
    before = snapshot(session)
    assert "train.log" in before
    run = run_tool("train", *train_args(*data, tmp_path / "ck", "OPTIM.NUM_EPOCHS", "2"), cwd=tmp_path)
    expect_error(run, session, "--resume")
    assert snapshot(session) == before  # train.log included
