"""Hostile suite, class 3: operating-system errors - permission denied, a full disk, a file where a
folder is expected (or the reverse).  Each is one ``error:`` line naming the path, with no partial
file left behind; unreadable paths are tested as ``nobody`` when the suite runs as root.
"""
from __future__ import annotations

import pytest
from hostile_helpers import (
    expect_error,
    expect_ok,
    fill,
    lock_out,
    make_pairs,
    make_results,
    open_to_all,
    rgb,
    run_tool,
    snapshot,
    temp_files,
    train_args,
    write_png,
)


@pytest.fixture
def photos(world):
    folder = world / "photos"
    write_png(folder / "a.png", rgb(40, 48))
    write_png(folder / "b.png", rgb(33, 20, seed=1))
    return folder


@pytest.fixture
def sets(world):
    return make_pairs(world / "sets" / "Rain100L", n=2).parent


# ----------------------------------------------------------------------------- derain.py

def test_derain_out_is_a_file(photos, world):
    (world / "out").write_text("my notes")
    run = run_tool("derain", photos, "--model", "Identity", "--out", world / "out", cwd=world)
    expect_error(run, world / "out", "not a folder")
    assert (world / "out").read_text() == "my notes"


def test_derain_out_in_an_unwritable_folder(photos, world):
    (world / "locked").mkdir(mode=0o555)
    run = run_tool("derain", photos, "--model", "Identity", "--out", world / "locked" / "out", cwd=world,
                   as_nobody=True)
    expect_error(run, world / "locked" / "out", "Permission denied")


def test_derain_unreadable_photo_is_skipped_and_named(photos, world):
    open_to_all(world)
    lock_out(photos / "b.png")
    run = run_tool("derain", photos, "--model", "Identity", "--out", world / "out", cwd=world, as_nobody=True)
    expect_error(run, photos / "b.png", "Permission denied")
    assert (world / "out" / "a.png").is_file()


def test_derain_unreadable_folder(photos, world):
    lock_out(photos)
    run = run_tool("derain", photos, "--model", "Identity", "--out", world / "out", cwd=world, as_nobody=True)
    photos.chmod(0o755)
    expect_error(run, photos, "Permission denied")


def test_derain_output_path_is_a_folder(photos, world):
    (world / "out" / "a.png").mkdir(parents=True)
    run = run_tool("derain", photos, "--model", "Identity", "--out", world / "out", cwd=world)
    expect_error(run, world / "out" / "a.png", "is a folder")
    assert not temp_files(world)


def test_derain_full_disk(photos, world, small_fs):
    disk = small_fs(64)
    write_png(photos / "big.png", rgb(300, 400, seed=3))
    run = run_tool("derain", photos, "--model", "Identity", "--out", disk / "out", cwd=world)
    expect_error(run, disk / "out", "No space left on device")
    assert not temp_files(disk)


# ----------------------------------------------------------------------------- test.py

def test_test_py_result_dir_is_a_file(sets, world):
    (world / "results").write_text("not a folder")
    run = run_tool("test", "--model", "Identity", "--input_dir", sets, "--result_dir", world / "results", cwd=world)
    expect_error(run, world / "results", "not a folder")


def test_test_py_unwritable_result_dir(sets, world):
    (world / "results").mkdir(mode=0o555)
    run = run_tool("test", "--model", "Identity", "--input_dir", sets, "--result_dir", world / "results", cwd=world,
                   as_nobody=True)
    expect_error(run, world / "results", "Permission denied")


def test_test_py_unreadable_input(sets, world):
    open_to_all(world)
    lock_out(sets / "Rain100L" / "input" / "001.png")
    run = run_tool("test", "--model", "Identity", "--input_dir", sets, "--result_dir", world / "results", cwd=world,
                   as_nobody=True)
    expect_error(run, sets / "Rain100L" / "input" / "001.png", "Permission denied")


def test_test_py_json_is_a_folder(sets, world):
    (world / "scores.json").mkdir()
    run = run_tool("test", "--model", "Identity", "--input_dir", sets, "--result_dir", world / "results",
                   "--json", world / "scores.json", cwd=world)
    expect_error(run, world / "scores.json", "is a folder")


def test_test_py_full_disk(world, small_fs):
    disk = small_fs(64)
    root = make_pairs(world / "sets" / "Rain100L", n=2, size=(300, 400))
    run = run_tool("test", "--model", "Identity", "--input_dir", root.parent, "--result_dir", disk, cwd=world)
    expect_error(run, disk / "Identity" / "Rain100L", "No space left on device")
    assert not temp_files(disk)


def test_test_py_input_dir_is_a_file(world):
    (world / "input.txt").write_text("x")
    run = run_tool("test", "--model", "Identity", "--input_dir", world / "input.txt", cwd=world)
    expect_error(run, world / "input.txt", "not a folder")


# ----------------------------------------------------------------------------- evaluate.py

@pytest.fixture
def scored(world):
    return make_results(world, n=2)


def test_evaluate_result_dir_is_a_file(world):
    (world / "res.txt").write_text("x")
    run = run_tool("evaluate", "--result_dir", world / "res.txt", cwd=world)
    expect_error(run, world / "res.txt", "not a folder")


def test_evaluate_json_under_a_file(scored, world):
    (world / "reports").write_text("a file")
    run = run_tool("evaluate", "--result_dir", scored[0], "--gt_dir", scored[1], "--json",
                   world / "reports" / "s.json", cwd=world)
    expect_error(run, world / "reports", "not a folder")


def test_evaluate_json_in_an_unwritable_folder(scored, world):
    (world / "locked").mkdir(mode=0o555)
    run = run_tool("evaluate", "--result_dir", scored[0], "--gt_dir", scored[1], "--json",
                   world / "locked" / "s.json", cwd=world, as_nobody=True)
    expect_error(run, world / "locked" / "s.json", "Permission denied")


def test_evaluate_unreadable_result(scored, world):
    lock_out(scored[0] / "Rain100L" / "000.png")
    run = run_tool("evaluate", "--result_dir", scored[0], "--gt_dir", scored[1], cwd=world, as_nobody=True)
    expect_error(run, scored[0] / "Rain100L" / "000.png", "Permission denied")


def test_evaluate_unreadable_target_folder(scored, world):
    folder = scored[1] / "Rain100L" / "target"
    lock_out(folder)
    run = run_tool("evaluate", "--result_dir", scored[0], "--gt_dir", scored[1], cwd=world, as_nobody=True)
    folder.chmod(0o755)
    expect_error(run, folder, "Permission denied")


# ----------------------------------------------------------------------------- train.py

@pytest.fixture
def data(world):
    return make_pairs(world / "train", n=3), make_pairs(world / "val", n=1)


def test_train_save_dir_is_a_file(data, world):
    (world / "ck").write_text("x")
    expect_error(run_tool("train", *train_args(*data, world / "ck"), cwd=world), world / "ck")


def test_train_unwritable_save_dir(data, world):
    (world / "ck").mkdir(mode=0o555)
    run = run_tool("train", *train_args(*data, world / "ck"), cwd=world, as_nobody=True)
    expect_error(run, world / "ck", "Permission denied")


def test_train_unreadable_training_folder(data, world):
    open_to_all(world)
    lock_out(data[0] / "input")
    run = run_tool("train", *train_args(*data, world / "ck"), cwd=world, as_nobody=True)
    (data[0] / "input").chmod(0o755)
    expect_error(run, data[0] / "input", "Permission denied")


def test_train_unreadable_training_image(data, world):
    open_to_all(world)
    lock_out(data[0] / "target" / "001.png")
    run = run_tool("train", *train_args(*data, world / "ck"), cwd=world, as_nobody=True)
    expect_error(run, data[0] / "target" / "001.png", "Permission denied")


def test_train_full_disk_at_the_first_save(data, world, small_fs):
    disk = small_fs(512)
    run = run_tool("train", *train_args(*data, disk), cwd=world)
    expect_error(run, disk / "Deraining" / "DMSR" / "model_", "No space left on device")
    assert not temp_files(disk) and not list(disk.rglob("*.pth"))


def test_train_full_disk_keeps_the_previous_checkpoint(data, world, small_fs):
    disk = small_fs(16 * 1024)
    expect_ok(run_tool("train", *train_args(*data, disk), cwd=world))
    run_dir = disk / "Deraining" / "DMSR"
    before = snapshot(run_dir)
    fill(disk, leave=512 * 1024)
    run = run_tool("train", "--resume", *train_args(*data, disk, "OPTIM.NUM_EPOCHS", "3"), cwd=world)
    expect_error(run, run_dir / "model_", "No space left on device", "intact")
    after = snapshot(run_dir)
    assert all(after[k] == before[k] for k in before if k.endswith(".pth"))
    assert not temp_files(disk)


def test_train_config_is_a_folder(world):
    (world / "conf.yml").mkdir()
    expect_error(run_tool("train", "--config", world / "conf.yml", cwd=world), world / "conf.yml", "not a file")


def test_train_unreadable_config(world):
    (world / "conf.yml").write_text("OPTIM:\n  NUM_EPOCHS: 1\n")
    lock_out(world / "conf.yml")
    run = run_tool("train", "--config", world / "conf.yml", cwd=world, as_nobody=True)
    expect_error(run, world / "conf.yml", "Permission denied")


def test_train_store_is_a_folder(data, world):
    (world / "train.store").mkdir()
    run = run_tool("train", *train_args(*data, world / "ck", "TRAINING.STORE", world / "train.store"), cwd=world)
    expect_error(run, world / "train.store")


# ----------------------------------------------------------------------------- build_store.py

def test_build_store_out_is_a_folder(data, world):
    (world / "s.store").mkdir()
    run = run_tool("build_store", "--root", data[0], "--out", world / "s.store", cwd=world)
    expect_error(run, world / "s.store", "folder")


def test_build_store_out_under_a_file(data, world):
    (world / "stores").write_text("x")
    run = run_tool("build_store", "--root", data[0], "--out", world / "stores" / "s.store", cwd=world)
    expect_error(run, world / "stores", "not a folder")


def test_build_store_out_in_an_unwritable_folder(data, world):
    (world / "locked").mkdir(mode=0o555)
    run = run_tool("build_store", "--root", data[0], "--out", world / "locked" / "s.store", cwd=world,
                   as_nobody=True)
    expect_error(run, world / "locked" / "s.store", "Permission denied")


def test_build_store_full_disk(world, small_fs):
    disk = small_fs(256)
    root = make_pairs(world / "train", n=3, size=(200, 300))
    run = run_tool("build_store", "--root", root, "--out", disk / "s.store", cwd=world)
    expect_error(run, disk / "s.store", "No space left on device")
    assert list(disk.iterdir()) == []


def test_build_store_root_missing(world):
    run = run_tool("build_store", "--root", world / "nowhere", "--out", world / "s.store", cwd=world)
    expect_error(run, world / "nowhere")


def test_build_store_root_is_a_file(world):
    (world / "root").write_text("x")
    expect_error(run_tool("build_store", "--root", world / "root", "--out", world / "s.store", cwd=world),
                 world / "root")


def test_build_store_unreadable_image(data, world):
    lock_out(data[0] / "input" / "002.png")
    run = run_tool("build_store", "--root", data[0], "--out", world / "s.store", cwd=world, as_nobody=True)
    expect_error(run, data[0] / "input" / "002.png", "Permission denied")


# ----------------------------------------------------------------------------- make_demo_data.py

DEMO = ["--num-train", "4", "--patch", "32"]


def test_demo_out_under_a_file(world):
    (world / "data").write_text("x")
    expect_error(run_tool("make_demo_data", "--out", world / "data" / "demo", *DEMO, cwd=world), world / "data")


def test_demo_out_in_an_unwritable_folder(world):
    (world / "locked").mkdir(mode=0o555)
    run = run_tool("make_demo_data", "--out", world / "locked" / "demo", *DEMO, cwd=world, as_nobody=True)
    expect_error(run, world / "locked" / "demo", "Permission denied")


def test_demo_full_disk(world, small_fs):
    disk = small_fs(128)
    run = run_tool("make_demo_data", "--out", disk / "demo", *DEMO, cwd=world)
    expect_error(run, disk / "demo", "No space left on device")
    assert not temp_files(disk)
