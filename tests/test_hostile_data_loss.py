"""Hostile suite, class 1: no tool destroys or overwrites user data without a word.

make_demo_data.py --force deletes only the files its own earlier build
wrote; train.py refuses a session folder holding another run (or in use by a
running one); test.py, derain.py, evaluate.py and build_store.py never write
over the images they read.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from hostile_helpers import (
    REPO,
    expect_error,
    expect_ok,
    make_pairs,
    make_results,
    rgb,
    run_tool,
    snapshot,
    tool_env,
    train_args,
    write_png,
)

DEMO = ["--num-train", "4", "--patch", "32"]


@pytest.fixture
def real_dataset(tmp_path):
    """What a user's dataset folder looks like: train/, test/Rain100H/ and notes."""
    root = tmp_path / "Datasets"
    make_pairs(root / "train", n=2)
    make_pairs(root / "test" / "Rain100H", n=2)
    (root / "NOTES.txt").write_text("where these images came from")
    return root


@pytest.mark.parametrize("force", [True, False])
def test_demo_builder_never_touches_a_real_dataset(force, real_dataset, tmp_path):
    before = snapshot(real_dataset)
    run = run_tool("make_demo_data", "--out", real_dataset, *DEMO, *(["--force"] if force else []), cwd=tmp_path)
    expect_error(run, real_dataset, "only ever deletes files it wrote")
    assert snapshot(real_dataset) == before


@pytest.fixture
def demo(tmp_path):
    out = tmp_path / "demo"
    expect_ok(run_tool("make_demo_data", "--out", out, *DEMO, cwd=tmp_path))
    return out


@pytest.mark.parametrize("where", ["train/input/mine.png", "test/Rain100H/input/001.png", "train/NOTES.txt"])
def test_demo_force_refuses_to_delete_files_it_did_not_write(where, demo, tmp_path):
    write_png(demo / where, rgb(20, 20)) if where.endswith(".png") else (demo / where).write_text("mine")
    before = snapshot(demo)
    run = run_tool("make_demo_data", "--out", demo, *DEMO, "--seed", "3", "--force", cwd=tmp_path)
    expect_error(run, demo / where, "did not write")
    assert snapshot(demo) == before


def test_demo_manifest_of_someone_else_is_not_trusted(tmp_path):
    out = tmp_path / "mine"
    make_pairs(out / "train", n=1)
    (out / "manifest.json").write_text(json.dumps({"train": {"000": {}}, "test": {}}))
    before = snapshot(out)
    run = run_tool("make_demo_data", "--out", out, *DEMO, "--force", cwd=tmp_path)
    expect_error(run, out)
    assert snapshot(out) == before


def test_demo_force_finishes_an_interrupted_build(demo, tmp_path):
    """Graceful: the marker written first lets --force clear an unfinished build, and only it."""
    manifest = json.loads((demo / "manifest.json").read_text())
    (demo / "manifest.json").write_text(json.dumps({"settings": manifest["settings"], "building": True,
                                                    "train": manifest["train"], "test": manifest["test"]}))
    for p in sorted((demo / "train" / "input").iterdir())[:2]:
        p.unlink()
    expect_ok(run_tool("make_demo_data", "--out", demo, *DEMO, "--force", cwd=tmp_path))
    assert len(list((demo / "train" / "input").iterdir())) == 4
    assert "building" not in json.loads((demo / "manifest.json").read_text())


# ----------------------------------------------------------------------------- train.py

@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """The data and save folder of one finished tiny run (copied by each test that changes it)."""
    root = tmp_path_factory.mktemp("run")
    data = make_pairs(root / "train", n=3), make_pairs(root / "val", n=1)
    expect_ok(run_tool("train", *train_args(*data, root / "ck"), cwd=root))
    return data, root / "ck"


@pytest.fixture
def trained(finished_run, tmp_path):
    data, save_dir = finished_run
    shutil.copytree(save_dir, tmp_path / "ck")
    return data, tmp_path / "ck" / "Deraining" / "DMSR"


def _kept(folder) -> dict:
    return {k: v for k, v in snapshot(folder).items() if k.endswith((".pth", ".yaml"))}


def test_train_refuses_a_session_holding_a_run(trained, tmp_path):
    data, session = trained
    before = _kept(session)
    run = run_tool("train", *train_args(*data, tmp_path / "ck", "OPTIM.NUM_EPOCHS", "2"), cwd=tmp_path)
    expect_error(run, session, "--resume", "MODEL.SESSION")
    assert _kept(session) == before


def test_train_resume_without_latest_refuses_to_replace_best(trained, tmp_path):
    data, session = trained
    (session / "model_latest.pth").unlink()
    before = _kept(session)
    run = run_tool("train", "--resume", *train_args(*data, tmp_path / "ck", "OPTIM.NUM_EPOCHS", "2"), cwd=tmp_path)
    expect_error(run, session, "model_best.pth", "no model_latest.pth")
    assert _kept(session) == before


def test_two_runs_in_one_session_folder(tmp_path):
    data = make_pairs(tmp_path / "train", n=3), make_pairs(tmp_path / "val", n=1)
    args = train_args(*data, tmp_path / "ck", "OPTIM.NUM_EPOCHS", "1000")
    first = subprocess.Popen([sys.executable, str(REPO / "train.py"), *args], cwd=tmp_path, env=tool_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = tmp_path / "ck" / "Deraining" / "DMSR" / ".lock"
    try:
        deadline = time.monotonic() + 120
        while not (lock.is_file() and lock.read_text()) and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.2)
        assert first.poll() is None, first.communicate()[1][-2000:]
        second = run_tool("train", *args, cwd=tmp_path, timeout=60)
        expect_error(second, tmp_path / "ck" / "Deraining" / "DMSR", "in use by another run", f"pid {first.pid}")
    finally:
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=120)
    assert first.returncode == 143, err[-2000:]  # stopped by SIGTERM after saving: not "finished"
    assert "Traceback" not in err and (lock.parent / "model_latest.pth").is_file()


def test_a_stale_lock_is_taken_over(tmp_path):
    data = make_pairs(tmp_path / "train", n=3), make_pairs(tmp_path / "val", n=1)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    session = tmp_path / "ck" / "Deraining" / "DMSR"
    session.mkdir(parents=True)
    (session / ".lock").write_text(json.dumps({"pid": int(dead.stdout), "host": os.uname().nodename,
                                               "started": "yesterday"}))
    expect_ok(run_tool("train", *train_args(*data, tmp_path / "ck"), cwd=tmp_path))


# ----------------------------------------------------------------------------- test.py, evaluate.py

def test_test_py_results_never_go_into_the_input_folder(tmp_path):
    photos = tmp_path / "results" / "Identity" / "photos"
    write_png(photos / "a.png", rgb(30, 30))
    (photos / "b.jpg").write_bytes(write_png(tmp_path / "b.png", rgb(30, 30, seed=2)).read_bytes())
    before = snapshot(photos)
    run = run_tool("test", "--model", "Identity", "--input_dir", photos, "--result_dir", tmp_path / "results",
                   cwd=tmp_path)
    expect_error(run, photos, "--result_dir")
    assert snapshot(photos) == before


@pytest.mark.parametrize("option,image", [("--json", "input/000.png"), ("--csv", "target/001.png")])
def test_test_py_scores_never_overwrite_a_test_image(option, image, tmp_path):
    root = make_pairs(tmp_path / "sets" / "Rain100L", n=2)
    before = snapshot(root)
    run = run_tool("test", "--model", "Identity", "--input_dir", root.parent, "--result_dir", tmp_path / "res",
                   option, root / image, cwd=tmp_path)
    expect_error(run, root / image)
    assert snapshot(root) == before


@pytest.fixture
def results(tmp_path):
    return make_results(tmp_path, n=2)


def test_evaluate_json_never_overwrites_a_result(results, tmp_path):
    before = snapshot(tmp_path)
    target = results[0] / "Rain100L" / "000.png"
    run = run_tool("evaluate", "--result_dir", results[0], "--gt_dir", results[1], "--json", target, cwd=tmp_path)
    expect_error(run, target)
    assert snapshot(tmp_path) == before


def test_evaluate_json_and_csv_must_differ(results, tmp_path):
    run = run_tool("evaluate", "--result_dir", results[0], "--gt_dir", results[1], "--json", tmp_path / "s",
                   "--csv", tmp_path / "s", cwd=tmp_path)
    expect_error(run, tmp_path / "s", "same file")


# ----------------------------------------------------------------------------- derain.py

def test_derain_never_overwrites_its_inputs(tmp_path):
    photos = tmp_path / "photos"
    write_png(photos / "a.png", rgb(30, 30))
    before = snapshot(photos)
    run = run_tool("derain", photos, "--model", "Identity", "--out", photos, cwd=tmp_path)
    expect_error(run, photos / "a.png", "overwrite an input")
    assert snapshot(photos) == before


def test_derain_other_extension_still_cannot_overwrite_an_input(tmp_path):
    photos = tmp_path / "photos"
    write_png(photos / "a.png", rgb(30, 30))
    (photos / "a.jpg").write_bytes(b"\xff\xd8 the user's own JPEG, not even decodable")
    before = snapshot(photos)
    run = run_tool("derain", photos / "a.png", "--model", "Identity", "--out", photos, "--ext", "jpg", cwd=tmp_path)
    expect_error(run, photos / "a.jpg", "overwrite an input")
    assert snapshot(photos) == before


def test_derain_side_by_side_images_cannot_clash(tmp_path):
    photos = tmp_path / "photos"
    write_png(photos / "a.png", rgb(30, 30))
    write_png(photos / "a_before_after.png", rgb(30, 30, seed=4))
    run = run_tool("derain", photos, "--model", "Identity", "--out", tmp_path / "out", "--side-by-side",
                   cwd=tmp_path)
    expect_error(run, "a_before_after.png", "would both be written")
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- build_store.py

def test_build_store_never_overwrites_an_image(tmp_path):
    root = make_pairs(tmp_path / "train", n=2)
    before = snapshot(root)
    run = run_tool("build_store", "--root", root, "--out", root / "input" / "000.png", cwd=tmp_path)
    expect_error(run, root / "input" / "000.png")
    assert snapshot(root) == before


def test_build_store_never_overwrites_another_file(tmp_path):
    root = make_pairs(tmp_path / "train", n=2)
    (tmp_path / "thesis.pdf").write_bytes(b"%PDF-1.5 months of work")
    run = run_tool("build_store", "--root", root, "--out", tmp_path / "thesis.pdf", cwd=tmp_path)
    expect_error(run, tmp_path / "thesis.pdf", "not an image store")
    assert (tmp_path / "thesis.pdf").read_bytes() == b"%PDF-1.5 months of work"


def test_build_store_replaces_an_older_store(tmp_path):
    root = make_pairs(tmp_path / "train", n=2)
    expect_ok(run_tool("build_store", "--root", root, "--out", tmp_path / "s.store", cwd=tmp_path))
    write_png(root / "input" / "002.png", rgb(70, 76, seed=9))
    write_png(root / "target" / "002.png", rgb(70, 76, seed=9))
    expect_ok(run_tool("build_store", "--root", root, "--out", tmp_path / "s.store", cwd=tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.store", "train"]


def test_test_py_set_names_cannot_reach_outside_the_result_dir(tmp_path):
    root = make_pairs(tmp_path / "sets" / "Rain100L", n=1)
    run = run_tool("test", "--model", "Identity", "--input_dir", root.parent, "--datasets", "../sets/Rain100L",
                   "--result_dir", tmp_path / "res", cwd=tmp_path)
    expect_error(run, "../sets/Rain100L", "not a path")
    assert not (tmp_path / "res").exists()
