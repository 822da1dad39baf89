"""Hostile suite: released weights by name - no network, 404, HTML, cut transfers, changed files, full or
unwritable caches, unknown names, bad settings.  Each is one ``error:`` line naming the file or name and
what to do, with nothing half-written in the cache and the previously cached file intact.

The authors' sites are played by a loopback server reached through ``$DERAIN_WEIGHTS_MIRROR`` with
``DERAIN_WEIGHTS_OFFLINE=1`` (so no case ever leaves the machine), in whatever process runs the tool.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hostile_helpers import expect_error, fill, make_pairs, rgb, run_tool, snapshot, temp_files, write_png
from weights_server import Answer, WeightsServer, shared_weights

from models import weights as released

SMALL, BIG = "PRN_r/Rain100H", "BRN/Rain100H"


@pytest.fixture
def server():
    s = WeightsServer()
    yield s
    s.close()


@pytest.fixture
def home(world, monkeypatch) -> Path:
    """``$DERAIN_HOME`` holding one good cached file (PRN_r/Rain100L), offline, mirror unset."""
    home = world / "home"
    good = released.get("PRN_r/Rain100L")
    (home / "weights" / good.name).mkdir(parents=True)
    shutil.copyfile(shared_weights()[good.sha256], home / "weights" / good.name / good.file)
    monkeypatch.setenv(released.ENV_HOME, str(home))
    monkeypatch.setenv(released.ENV_OFFLINE, "1")
    monkeypatch.delenv(released.ENV_MIRROR, raising=False)
    return home


def _file(name: str) -> bytes:
    return shared_weights()[released.get(name).sha256].read_bytes()


def _check_intact(home: Path, before: dict) -> None:
    assert snapshot(home) == before and temp_files(home) == []


FAULTS = {  # name -> (answer at the mirror, what the error says)
    "404": (lambda: Answer(b"<html>gone</html>", status=404, content_type="text/html"), "answered 404"),
    "html": (lambda: Answer(b"<!DOCTYPE html><html>log in first</html>", content_type="text/html"), "HTML page"),
    "truncated": (lambda: Answer(_file(SMALL)[:40_000], length=86_047), "transfer cut after 40,000 of 86,047"),
    "changed": (lambda: Answer(_file(SMALL)[:-1] + bytes([_file(SMALL)[-1] ^ 1])), "SHA-256 is"),
    "too-long": (lambda: Answer(_file(SMALL) + b"\0" * 10), "announces 86,057 bytes"),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_bad_download_is_named_and_leaves_nothing(server, home, world, monkeypatch, fault):
    answer, says = FAULTS[fault]
    url = server.serve(f"/lab/{SMALL}/net_latest.pth", answer())
    monkeypatch.setenv(released.ENV_MIRROR, server.url + "/lab")
    before = snapshot(home)
    run = run_tool("weights", "fetch", SMALL, cwd=world)
    expect_error(run, url, says, home / "weights" / SMALL / "net_latest.pth")
    _check_intact(home, before)


def test_no_network(home, world, monkeypatch):
    closed = WeightsServer()
    closed.close()  # nothing listens on that port any more
    monkeypatch.setenv(released.ENV_MIRROR, closed.url)
    before = snapshot(home)
    run = run_tool("weights", "fetch", SMALL, cwd=world)
    expect_error(run, f"{closed.url}/{SMALL}/net_latest.pth", "cannot be reached")
    _check_intact(home, before)


def test_test_py_by_name_with_the_file_nowhere(home, world):
    data = make_pairs(world / "data" / "Rain100H", n=1).parent
    before = snapshot(home)
    run = run_tool("test", "--weights", BIG, "--input_dir", data, "--result_dir", world / "res", "--device", "cpu",
                   cwd=world)
    expect_error(run, BIG, "downloads are off", home / "weights" / BIG / "net_latest.pth")
    _check_intact(home, before)


def test_full_disk_keeps_the_cached_file(small_fs, world, monkeypatch, tmp_path):
    home = small_fs(512)
    mirror = tmp_path / "mirror"
    for name in (SMALL, BIG):
        (mirror / name).mkdir(parents=True)
        (mirror / name / released.get(name).file).write_bytes(_file(name))
    monkeypatch.setenv(released.ENV_HOME, str(home))
    monkeypatch.setenv(released.ENV_MIRROR, str(mirror))
    monkeypatch.setenv(released.ENV_OFFLINE, "1")
    released.ensure(released.get(SMALL))  # a file cached earlier
    fill(home, leave=200_000)  # room for a small file, not for BRN's 1.6 MB
    before = snapshot(home)
    run = run_tool("weights", "fetch", SMALL, BIG, cwd=world)
    expect_error(run, home / "weights" / BIG / "net_latest.pth", "No space left on device")
    _check_intact(home, before)


@pytest.mark.parametrize("tool", ["weights", "test", "derain", "leaderboard"])
def test_unknown_name_lists_the_close_ones(home, world, tool):
    data = make_pairs(world / "data" / "Rain100H", n=1).parent
    photo = write_png(world / "photo.png", rgb(32, 32))
    args = {"weights": ["fetch", "BRN/Rain100h"],
            "test": ["--weights", "BRN/Rain100h", "--input_dir", data, "--result_dir", world / "res"],
            "derain": [photo, "--weights", "BRN/Rain100h", "--out", world / "out"],
            "leaderboard": ["--models", "BRN:BRN/Rain100h", "--input_dir", data, "--out", world / "lb"]}[tool]
    before = snapshot(world)
    run = run_tool(tool, *args, cwd=world)
    expect_error(run, "BRN/Rain100h", "did you mean BRN/Rain100H")
    assert snapshot(world) == before


def test_damaged_cached_file_is_refused_not_replaced(home, world):
    cached = home / "weights" / "PRN_r/Rain100L" / "net_latest.pth"
    cached.write_bytes(cached.read_bytes()[:-10])
    photo = write_png(world / "photo.png", rgb(32, 32))
    before = snapshot(home)
    run = run_tool("derain", photo, "--weights", "PRN_r/Rain100L", "--out", world / "out", cwd=world)
    expect_error(run, cached, "changed or damaged", "fetch --force PRN_r/Rain100L")
    _check_intact(home, before)
    assert not (world / "out").exists()


def test_md5_only_name_says_how_to_get_the_file(home, world):
    photo = write_png(world / "photo.png", rgb(32, 32))
    run = run_tool("derain", photo, "--weights", "RESCAN/RainLight", "--out", world / "out", cwd=world)
    expect_error(run, "RESCAN/RainLight", "SHA-256 is not recorded", "logs/RainLight/RESCAN/latest",
                 home / "weights" / "RESCAN/RainLight" / "latest")


def test_model_that_does_not_fit_the_name(home, world):
    photo = write_png(world / "photo.png", rgb(32, 32))
    run = run_tool("derain", photo, "--model", "PReNet", "--weights", "PRN_r/Rain100L", "--out", world / "out",
                   cwd=world)
    expect_error(run, "--model PReNet", "PRN_r/Rain100L", "leave --model out")


def test_bad_mirror_setting(home, world, monkeypatch):
    monkeypatch.setenv(released.ENV_MIRROR, "ftp://lab.example/weights")
    run = run_tool("weights", "fetch", SMALL, cwd=world)
    expect_error(run, "DERAIN_WEIGHTS_MIRROR=ftp://lab.example/weights", "http(s)://")


def test_home_is_a_file(world, monkeypatch, server):
    (world / "home").write_text("my notes")
    monkeypatch.setenv(released.ENV_HOME, str(world / "home"))
    monkeypatch.setenv(released.ENV_OFFLINE, "1")
    server.serve(f"/lab/{SMALL}/net_latest.pth", Answer(_file(SMALL)))
    monkeypatch.setenv(released.ENV_MIRROR, server.url + "/lab")
    run = run_tool("weights", "fetch", SMALL, cwd=world)
    expect_error(run, world / "home", "is a file, not a folder")
    assert (world / "home").read_text() == "my notes"


def test_unwritable_cache(home, world, monkeypatch, server):
    server.serve(f"/lab/{SMALL}/net_latest.pth", Answer(_file(SMALL)))
    monkeypatch.setenv(released.ENV_MIRROR, server.url + "/lab")
    for folder in (home / "weights", home / "weights" / "PRN_r"):
        folder.chmod(0o555)
    before = snapshot(home)
    run = run_tool("weights", "fetch", SMALL, cwd=world, as_nobody=True)
    expect_error(run, home / "weights" / SMALL, "Permission denied")
    _check_intact(home, before)
