"""Released weights by name: the registry, the cache, verified downloads from a loopback server, the tools.

The authors' URLs and the mirror are played by :class:`weights_server.WeightsServer`
on 127.0.0.1, serving the ``../shared/weights`` files (tests that need them
skip without ``../shared``).  Small files (PRN_r, 86 KB) keep the downloads fast.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, require_shared
from hostile_helpers import snapshot, temp_files, tool_env
from weights_server import Answer, WeightsServer, point_registry_at, shared_weights, upstream_path

import derain
from inference.runner import load_model
from models import MODELS, check_model
from models import weights as released
from models.complexity import count_macs, count_parameters
from scripts import leaderboard, model_zoo
from scripts import weights as weights_tool
from utils.errors import UsageError
from utils.image_io import read_image, write_image

SMALL = "PRN_r/Rain100H"  # 86,047 bytes


def _load_test_py():
    # "test" is also the name of CPython's regression-test package, so load the file explicitly.
    spec = importlib.util.spec_from_file_location("derain_test_py", REPO / "test.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


test_py = _load_test_py()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty ``$DERAIN_HOME``; no mirror, not offline.  Returns the cache folder (``<home>/weights``)."""
    monkeypatch.setenv(released.ENV_HOME, str(tmp_path / "home"))
    monkeypatch.delenv(released.ENV_MIRROR, raising=False)
    monkeypatch.delenv(released.ENV_OFFLINE, raising=False)
    return tmp_path / "home" / "weights"


@pytest.fixture
def server():
    s = WeightsServer()
    yield s
    s.close()


@pytest.fixture
def upstream(server, tmp_path, monkeypatch, cache) -> WeightsServer:
    """The registry with the authors' URLs on the loopback server, which serves the shared files there."""
    monkeypatch.setattr(released, "REGISTRY", point_registry_at(server, tmp_path))
    return server


def _entry(name: str = SMALL) -> released.WeightsEntry:
    return released.get(name)


def _shared(name: str = SMALL) -> Path:
    return shared_weights()[_entry(name).sha256]


def _upstream(name: str = SMALL) -> str:
    e = _entry(name)
    return upstream_path({"name": e.name, "file": e.file})


def _no_partial_files(cache: Path) -> None:
    assert temp_files(cache.parent if cache.parent.exists() else cache) == []


# ----------------------------------------------------------------------------- the registry


def test_registry_holds_what_sources_md_states():
    """Every shared file is an entry with its SOURCES.md repository, commit, path, size and SHA-256."""
    text = require_shared("weights", "SOURCES.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([^`]+)` \| (\S+ @ \w+|same) .*?\| `([^`]+)` \| (\d+) \| ([0-9a-f]{64}) \|$", text, re.M)
    assert len(rows) == 15
    by_sha = {e.sha256: e for e in released.registry().values() if e.sha256}
    repo = None
    for _here, source, path, size, sha in rows:
        repo = repo if source == "same" else source.replace(" @ ", "@")
        entry = by_sha[sha]
        assert f"{entry.source.repository}@{entry.source.commit}" == repo
        assert (entry.source.path, entry.bytes, entry.file) == (path, int(size), path.rsplit("/", 1)[1])
    assert set(by_sha) == {r[4] for r in rows} == set(shared_weights())
    for entry in by_sha.values():  # the bytes in ../shared are the ones recorded
        assert released.mismatch(shared_weights()[entry.sha256], entry) is None


def test_registry_entries_are_consistent():
    published = leaderboard.load_published()
    entries = released.registry()
    assert len(entries) == 19
    for name, e in entries.items():
        assert name == e.name == f"{e.model}/{e.label}" and e.model in MODELS
        assert e.trained_on in published["training_sets"] and e.licence and e.test_set
        assert (e.sha256 is None) != (e.md5 is None)
        if e.sha256:
            assert re.fullmatch(r"[0-9a-f]{64}", e.sha256) and e.fetchable
            s = e.source
            assert e.urls == (f"https://github.com/{s.repository}/raw/{s.commit}/{s.path}",
                              f"https://raw.githubusercontent.com/{s.repository}/{s.commit}/{s.path}")
        else:
            assert re.fullmatch(r"[0-9a-f]{32}", e.md5) and not e.fetchable and e.urls == ()
        for m in e.measured:
            assert set(m) == {"test_set", "version", "n", "psnr", "ssim", "source"} and 0 < m["ssim"] < 1 < m["psnr"]
    # The names the issue promises, and the licences read from the repositories.
    assert {"PReNet/Rain100H", "BRN/Rain100L", "RESCAN/RainHeavy", "SPANet/SPA", "JORDER_E/practical"} <= set(entries)
    assert entries["SPANet/SPA"].licence.startswith("License.txt: BSD-style")
    assert {e.licence for n, e in entries.items() if n != "SPANet/SPA"} == {"not stated"}
    # Published figures belong to an entry by model and training set.
    figures = [p for p in published["published"] if p["model"] == "BRN" and p["trained_on"] == "RainTrainL"]
    assert [(p["test_set"], p["psnr"]) for p in figures] == [("Rain100L", 38.16), ("Rain12", 36.74)]


def test_stored_complexity_is_what_models_complexity_counts():
    """Parameters of every model and MACs of the cheap-to-count ones, on the meta device (no memory, fast)."""
    stored = released.complexity()
    assert stored["size"] == [256, 256] and set(stored["models"]) == {e.model for e in released.registry().values()}
    for model, counts in stored["models"].items():
        net = check_model(model)
        assert count_parameters(net) == counts["params"], model
        if model in ("BRN", "RESCAN", "JORDER_E", "PRN_r"):
            assert count_macs(net, (256, 256)) == counts["macs"], model


def test_model_zoo_page_is_current():
    """docs/MODEL_ZOO.md is what scripts/model_zoo.py makes of the registry (run it after editing the registry)."""
    text = model_zoo.render()
    assert model_zoo.PAGE.read_text(encoding="utf-8") == text, "run python scripts/model_zoo.py"
    for e in released.registry().values():
        card = text.split(f"\n## {e.name}\n", 1)[1].split("\n## ", 1)[0]
        assert f"python test.py --weights {e.name} --datasets {e.test_set}" in card
        assert f"{e.bytes:,} bytes" in card and (e.sha256 or e.md5) in card and e.licence in card
    card = text.split("\n## BRN/Rain100H\n", 1)[1].split("\n## ", 1)[0]
    assert "| parameters | 412,518 |" in card and "| MACs | 196.4 G at 256×256 |" in card
    assert "Rain100H: 30.47 / 0.913" in card and "30.4515 / 0.9116" in card
    assert model_zoo.main(["--check"]) == 0
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "docs/MODEL_ZOO.md" in readme and "--weights BRN/Rain100H" in readme


def test_model_zoo_check_fails_on_a_stale_page(tmp_path, monkeypatch):
    page = tmp_path / "MODEL_ZOO.md"
    page.write_text(model_zoo.render().replace("412,518", "412,519"), encoding="utf-8")
    monkeypatch.setattr(model_zoo, "PAGE", page)
    monkeypatch.setattr(model_zoo, "REPO", tmp_path)
    with pytest.raises(Exception, match="MODEL_ZOO.md is not what the registry gives"):
        model_zoo.main(["--check"])
    assert model_zoo.main([]) == 0 and model_zoo.main(["--check"]) == 0


# ----------------------------------------------------------------------------- fetching


def test_fetch_by_name_then_cache_hit_without_network(upstream, cache):
    path, entry = released.resolve(SMALL)
    assert entry.name == SMALL and path == cache / SMALL / "net_latest.pth"
    assert path.read_bytes() == _shared().read_bytes() and upstream.hits == [_upstream()]
    _no_partial_files(cache)
    upstream.close()  # no network from here on
    assert released.resolve(SMALL) == (path, entry) and upstream.hits == [_upstream()]
    # A file path is used as it is, whatever it holds; Path objects are never names.
    assert released.resolve(str(_shared())) == (_shared(), None)
    assert released.resolve(Path(SMALL)) == (Path(SMALL), None)


def test_mirror_is_tried_first_url_prefix_and_folder(upstream, cache, monkeypatch, tmp_path):
    mirrored = upstream.serve(f"/lab/{SMALL}/net_latest.pth", Answer(_shared()))
    monkeypatch.setenv(released.ENV_MIRROR, upstream.url + "/lab/")
    assert released.resolve(SMALL)[0].read_bytes() == _shared().read_bytes()
    assert upstream.hits == [mirrored[len(upstream.url):]]  # the authors' URL never asked

    folder = tmp_path / "mirror"
    (folder / SMALL).mkdir(parents=True)
    (folder / SMALL / "net_latest.pth").write_bytes(_shared().read_bytes())
    monkeypatch.setenv(released.ENV_MIRROR, str(folder))
    monkeypatch.setenv(released.ENV_HOME, str(tmp_path / "home2"))
    upstream.hits.clear()
    path = released.resolve(SMALL)[0]
    assert path.parent.parent.parent == tmp_path / "home2" / "weights" and upstream.hits == []
    assert path.read_bytes() == _shared().read_bytes()


@pytest.mark.parametrize("fault", ["missing", "tampered"])
def test_a_bad_mirror_falls_back_to_the_authors(upstream, cache, monkeypatch, caplog, fault):
    if fault == "tampered":
        data = bytearray(_shared().read_bytes())
        data[1000] ^= 1
        upstream.serve(f"/lab/{SMALL}/net_latest.pth", Answer(bytes(data)))
    monkeypatch.setenv(released.ENV_MIRROR, upstream.url + "/lab")
    with caplog.at_level(logging.WARNING, logger="models.weights"):
        path, _ = released.resolve(SMALL)
    assert path.read_bytes() == _shared().read_bytes()
    assert upstream.hits == [f"/lab/{SMALL}/net_latest.pth", _upstream()]
    expected = "answered 404 Not Found" if fault == "missing" else "SHA-256 is"
    assert any(expected in r.getMessage() and "/lab/" in r.getMessage() for r in caplog.records)


def _bad(upstream, answer: Answer, cache: Path, match: str, name: str = SMALL) -> str:
    """Serve ``answer`` at the authors' URL of ``name``: the fetch fails naming it, and leaves nothing."""
    upstream.serve(_upstream(name), answer)
    with pytest.raises(released.WeightsError) as info:
        released.resolve(name)
    message = str(info.value)
    assert match in message and upstream.url + _upstream(name) in message, message
    assert "\n" not in message and str(cache / name / _entry(name).file) in message  # where to put it by hand
    assert not (cache / name / _entry(name).file).exists()
    _no_partial_files(cache)
    return message


def test_hash_mismatch_is_never_accepted(upstream, cache):
    data = bytearray(_shared().read_bytes())
    data[-100] ^= 0x40  # same size, one bit changed
    message = _bad(upstream, Answer(bytes(data)), cache, "SHA-256 is")
    assert "changed (by its authors, or tampered with)" in message and _entry().sha256[:16] in message


def test_404(upstream, cache):
    _bad(upstream, Answer(b"404: Not Found", status=404, content_type="text/plain"), cache, "answered 404")


def test_truncated_transfer(upstream, cache):
    half = _shared().read_bytes()[:43_000]
    _bad(upstream, Answer(half, length=_entry().bytes), cache, "transfer cut after 43,000 of 86,047 bytes")


@pytest.mark.parametrize("content_type", ["text/html", "application/octet-stream"])
def test_html_page_instead_of_the_file(upstream, cache, content_type):
    page = b"<!DOCTYPE html>\n<html><body>Sign in to download</body></html>"
    page += b" " * (_entry().bytes - len(page))  # even with the right length, an HTML page is refused
    _bad(upstream, Answer(page, content_type=content_type), cache, "answered an HTML page")


def test_wrong_length_announced(upstream, cache):
    _bad(upstream, Answer(b"\0" * 1000), cache, "announces 1,000 bytes, the registry's file has 86,047")


def test_stalled_transfer_times_out(upstream, cache, monkeypatch):
    monkeypatch.setattr(released, "TIMEOUT", 0.5)
    _bad(upstream, Answer(_shared(), stall_after=20_000), cache, "transfer cut after")


def test_no_network(upstream, cache, monkeypatch):
    closed = WeightsServer()
    url = closed.url
    closed.close()  # nothing listens there any more: connection refused
    data = json.loads(released.REGISTRY.read_text())
    for e in data["weights"]:
        e["urls"] = [f"{url}/{e['name']}/{e['file']}"] if e.get("sha256") else []
    released.REGISTRY.write_text(json.dumps(data))
    released.load_registry.cache_clear()
    with pytest.raises(released.WeightsError, match=f"{url}/{SMALL}/net_latest.pth cannot be reached"):
        released.resolve(SMALL)
    _no_partial_files(cache)


def test_offline_uses_only_the_cache_and_mirror(upstream, cache, monkeypatch):
    monkeypatch.setenv(released.ENV_OFFLINE, "1")
    with pytest.raises(released.WeightsError, match="downloads are off") as info:
        released.resolve(SMALL)
    assert str(cache / SMALL / "net_latest.pth") in str(info.value) and upstream.hits == []
    monkeypatch.setenv(released.ENV_MIRROR, upstream.url + "/lab")
    with pytest.raises(released.WeightsError, match="not tried: DERAIN_WEIGHTS_OFFLINE"):
        released.resolve(SMALL)
    assert upstream.hits == [f"/lab/{SMALL}/net_latest.pth"]


def test_failed_refetch_keeps_the_cached_file(upstream, cache):
    path, _ = released.resolve(SMALL)
    before = snapshot(cache)
    upstream.serve(_upstream(), Answer(_shared().read_bytes()[:500], length=_entry().bytes))
    with pytest.raises(released.WeightsError, match="transfer cut"):
        released.ensure(_entry(), force=True)
    assert snapshot(cache) == before and released.resolve(SMALL)[0] == path
    _no_partial_files(cache)


def test_damaged_cached_file_is_refused_then_fetched_again(upstream, cache):
    path, _ = released.resolve(SMALL)
    path.write_bytes(path.read_bytes()[:-1] + b"x")
    with pytest.raises(released.WeightsError, match="changed or damaged") as info:
        released.resolve(SMALL)
    assert str(path) in str(info.value) and f"fetch --force {SMALL}" in str(info.value)
    with pytest.raises(released.WeightsError, match="1 cached file.* do not match the registry"):
        weights_tool.main(["verify"])
    weights_tool.main(["fetch", "--force", SMALL])
    assert path.read_bytes() == _shared().read_bytes()


def test_unknown_names_list_the_close_ones(cache):
    with pytest.raises(released.UnknownWeightsError, match="did you mean BRN/Rain100H") as info:
        released.resolve("brn/rain100h")
    assert isinstance(info.value, FileNotFoundError) and "\n" not in str(info.value)
    with pytest.raises(released.UnknownWeightsError, match="BRN/Rain10H is neither a file nor a released"):
        released.resolve("BRN/Rain10H")
    with pytest.raises(released.UnknownWeightsError, match="scripts/weights.py list"):
        released.get("nothing-like-it")


def test_md5_only_entries_are_recognised_not_fetched(cache):
    entry = _entry("BRN/RainHeavy")
    with pytest.raises(released.WeightsError, match="cannot be fetched verified") as info:
        released.resolve("BRN/RainHeavy")
    assert str(cache / "BRN/RainHeavy" / "net_latest.pth") in str(info.value)
    (cache / "BRN/RainHeavy").mkdir(parents=True)
    (cache / "BRN/RainHeavy" / "net_latest.pth").write_bytes(b"\0" * entry.bytes)  # put by hand, but wrong
    with pytest.raises(released.WeightsError, match=f"has md5 .*, the registry's file {entry.md5}"):
        released.resolve("BRN/RainHeavy")


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_download_leaves_no_partial_file(server, tmp_path, how):
    """A real process stopped mid-download (Ctrl-C, or a scheduler's SIGTERM) removes its temporary file."""
    server.serve(f"/lab/{SMALL}/net_latest.pth", Answer(_shared(), stall_after=30_000))
    home = tmp_path / "home"
    env = tool_env(DERAIN_HOME=str(home), DERAIN_WEIGHTS_MIRROR=server.url + "/lab", DERAIN_WEIGHTS_OFFLINE="1")
    # Ctrl-C as a terminal gives it: SIGINT not ignored (a shell starts background jobs with it ignored,
    # and a Python started so never raises KeyboardInterrupt)
    proc = subprocess.Popen([sys.executable, str(REPO / "scripts" / "weights.py"), "fetch", SMALL], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 180  # a loaded machine can take a while to import torch
    while not temp_files(tmp_path) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert temp_files(tmp_path), "the download never started"
    proc.send_signal(how)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == (130 if how == signal.SIGINT else 143), err
    assert "Traceback" not in err and temp_files(tmp_path) == []
    assert not (home / "weights" / SMALL / "net_latest.pth").exists()


# ----------------------------------------------------------------------------- the tools


@pytest.fixture
def rain100h(tmp_path) -> Path:
    """A Rain100H-shaped root: two real pairs cropped to 96x96 (BRN takes ~10 s per full image on a CPU)."""
    src = require_shared("data", "Rain100H")
    root = tmp_path / "data"
    for name in ("001.png", "002.png"):
        for sub in ("input", "target"):
            write_image(root / "Rain100H" / sub / name, read_image(src / sub / name)[100:196, 200:296])
    return root


def test_test_py_by_name_scores_what_the_file_path_scores(upstream, cache, rain100h, tmp_path):
    common = ["--input_dir", str(rain100h), "--datasets", "Rain100H", "--device", "cpu"]
    assert test_py.main(["--model", "BRN", "--weights", str(_shared("BRN/Rain100H")), *common,
                         "--result_dir", str(tmp_path / "by_path")]) == 0
    assert test_py.main(["--weights", "BRN/Rain100H", *common, "--result_dir", str(tmp_path / "by_name")]) == 0
    by_path, by_name = tmp_path / "by_path" / "BRN", tmp_path / "by_name" / "BRN"  # the name fixed --model
    scores = json.loads((by_path / "scores.json").read_text())
    assert json.loads((by_name / "scores.json").read_text()) == scores
    assert scores["Rain100H"]["n"] == 2 and scores["Rain100H"]["psnr"] > 20
    for name in ("001.png", "002.png"):
        assert (by_name / "Rain100H" / name).read_bytes() == (by_path / "Rain100H" / name).read_bytes()
    assert upstream.hits == [_upstream("BRN/Rain100H")]


def test_derain_py_by_name(upstream, cache, rain100h, tmp_path):
    photo = rain100h / "Rain100H" / "input" / "001.png"
    derain.main([str(photo), "--weights", SMALL, "--out", str(tmp_path / "a"), "--device", "cpu"])
    derain.main([str(photo), "--model", "PRN_r", "--weights", str(_shared()), "--out", str(tmp_path / "b")])
    assert (tmp_path / "a" / "001.png").read_bytes() == (tmp_path / "b" / "001.png").read_bytes()


def test_load_model_takes_the_model_from_the_name_or_the_hash(upstream, cache):
    model, name = load_model(None, SMALL)
    assert name == "PRN_r" and type(model).__name__ == "PRN_r"
    assert load_model(None, str(_shared()))[1] == "PRN_r"  # a released file by its path: known by its hash
    with pytest.raises(UsageError, match="--model PReNet does not fit the weights PRN_r/Rain100H, a PRN_r file"):
        load_model("PReNet", SMALL)


def test_leaderboard_takes_released_names(upstream, cache, rain100h, tmp_path):
    assert leaderboard.parse_entry(SMALL) == ("PRN_r", SMALL)
    assert leaderboard.parse_entry(f"PRN_r:{SMALL}") == ("PRN_r", SMALL)
    assert leaderboard.parse_entry("Identity") == ("Identity", None)
    with pytest.raises(UsageError, match="is a PRN_r file, not BRN"):
        leaderboard.parse_entry(f"BRN:{SMALL}")
    with pytest.raises(FileNotFoundError, match="did you mean PRN_r/Rain100H"):
        leaderboard.parse_entry("PRN_r:PRN_r/Rain100h")
    result = leaderboard.main(["--models", SMALL, "--input_dir", str(rain100h), "--datasets", "Rain100H",
                               "--out", str(tmp_path / "lb"), "--device", "cpu", "--macs-size", "16", "16"])
    (row,) = result["rows"]
    w = row["weights"]
    assert (w["name"], w["label"], w["trained_on"], w["sha256"]) == (SMALL, "Rain100H", "RainTrainH", _entry().sha256)
    assert w["path"] == str(cache / SMALL / "net_latest.pth") and row["params"] == 21_123


def test_weights_tool_list_fetch_verify(upstream, cache, capsys, tmp_path):
    rows = weights_tool.main(["list"])
    assert [r["name"] for r in rows] == list(released.registry())
    assert {r["cached"] for r in rows} == {"no", "no (by hand only)"}
    with pytest.raises(released.UnknownWeightsError, match="did you mean PRN/Rain100L, PRN/Rain100H"):
        weights_tool.main(["fetch", SMALL, "PRN/Rain100X"])  # every name is checked before any download
    assert upstream.hits == []
    paths = weights_tool.main(["fetch", SMALL, "PRN_r/Rain100L"])
    assert set(paths) == {SMALL, "PRN_r/Rain100L"}
    assert {r["name"] for r in weights_tool.main(["list"]) if r["cached"] == "yes"} == set(paths)
    capsys.readouterr()
    rows = weights_tool.main(["verify"])
    assert [r["status"] for r in rows] == [f"{SMALL}: ok", "PRN_r/Rain100L: ok"]
    stray = tmp_path / "mine.pth"
    stray.write_bytes(b"not a released file")
    rows = weights_tool.main(["verify", str(_shared("SPANet/SPA")), str(stray)])
    assert rows[0]["status"] == "SPANet/SPA (SPANet, trained on SPA-data; SHA-256 matches)"
    assert rows[1]["status"].startswith("not a released file (19 bytes, SHA-256 "
                                        + hashlib.sha256(b"not a released file").hexdigest()[:16])
    assert "SPANet/SPA (SPANet" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="verify: absent.pth is not a file"):
        weights_tool.main(["verify", "absent.pth"])
    with pytest.raises(UsageError, match="NAME... or --all"):
        weights_tool.main(["fetch"])


def test_fetch_all_builds_a_mirror_others_can_use(upstream, cache, monkeypatch, tmp_path):
    """``fetch --all`` into one cache, then that cache is a mirror for another (offline) machine."""
    paths = weights_tool.main(["fetch", "--all"])
    assert set(paths) == {n for n, e in released.registry().items() if e.fetchable}
    monkeypatch.setenv(released.ENV_MIRROR, str(cache))
    monkeypatch.setenv(released.ENV_OFFLINE, "1")
    monkeypatch.setenv(released.ENV_HOME, str(tmp_path / "other"))
    upstream.hits.clear()
    path, _ = released.resolve("JORDER_E/practical")
    assert path.read_bytes() == _shared("JORDER_E/practical").read_bytes() and upstream.hits == []


def test_default_cache_follows_xdg_and_home(monkeypatch, tmp_path):
    monkeypatch.delenv(released.ENV_HOME, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert released.cache_folder() == tmp_path / "xdg" / "derain" / "weights"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    assert released.cache_folder() == tmp_path / "me" / ".cache" / "derain" / "weights"
    monkeypatch.setenv(released.ENV_HOME, "~/elsewhere")
    assert released.cache_path(_entry()) == tmp_path / "me" / "elsewhere" / "weights" / SMALL / "net_latest.pth"
