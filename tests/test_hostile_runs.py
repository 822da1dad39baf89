"""Hostile suite, classes 7, 8 and 9: scores that are not data, real bugs hidden as user errors, and
exit statuses and distributed runs.

* A result identical to its target has an infinite PSNR: the JSON stays
  strict (null) and the table says what happened.
* A genuine bug (a KeyError/TypeError/ValueError from the code, not from the
  user's input) keeps its traceback in every tool.
* A run stopped by SIGTERM/SIGINT exits 143 after saving; under torchrun a
  stop on rank 0 stops every rank at once.
"""
from __future__ import annotations

import builtins
import importlib
import json
import math
import signal
import socket
import subprocess
import sys
import time

import pytest
from hostile_helpers import (
    REPO,
    expect_ok,
    make_pairs,
    make_results,
    rgb,
    run_tool,
    tool_env,
    train_args,
    write_png,
)

from utils.checkpoint import load_checkpoint


def _strict_json(path) -> dict:
    def refuse(name):
        raise ValueError(f"{path} holds {name}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture
def results(tmp_path):
    return make_results(tmp_path, n=3)


def test_evaluate_one_result_identical_to_its_target(results, tmp_path):
    res, gt = results
    (res / "Rain100L" / "001.png").write_bytes((gt / "Rain100L" / "target" / "001.png").read_bytes())
    run = run_tool("evaluate", "--result_dir", res, "--gt_dir", gt, "--json", tmp_path / "s.json", cwd=tmp_path)
    expect_ok(run)
    report = _strict_json(tmp_path / "s.json")
    assert report["Rain100L"]["psnr"] is None and report["Rain100L"]["identical"] == 1
    assert math.isfinite(report["Rain100L"]["psnr_others"]) and report["average"]["psnr"] is None
    assert "1 of 3 result(s) identical to the target" in run.stdout


def test_evaluate_every_result_identical(results, tmp_path):
    res, gt = results
    for p in (gt / "Rain100L" / "target").iterdir():
        (res / "Rain100L" / p.name).write_bytes(p.read_bytes())
    run = run_tool("evaluate", "--result_dir", res, "--gt_dir", gt, "--json", tmp_path / "s.json", "--csv",
                   tmp_path / "s.csv", cwd=tmp_path)
    expect_ok(run)
    report = _strict_json(tmp_path / "s.json")
    assert report["Rain100L"]["identical"] == 3 and "psnr_others" not in report["Rain100L"]
    assert report["Rain100L"]["ssim"] == 1.0
    assert "Rain100L,3,inf,1.000000" in (tmp_path / "s.csv").read_text()


def test_test_py_rainy_input_identical_to_its_target(tmp_path):
    root = make_pairs(tmp_path / "sets" / "Rain100L", n=2)
    (root / "input" / "000.png").write_bytes((root / "target" / "000.png").read_bytes())
    run = run_tool("test", "--model", "Identity", "--input_dir", root.parent, "--result_dir", tmp_path / "res",
                   cwd=tmp_path)
    expect_ok(run)
    assert _strict_json(tmp_path / "res" / "Identity" / "scores.json")["Rain100L"]["identical"] == 1
    assert "identical to the target" in run.stdout


# ----------------------------------------------------------------------------- class 8: bugs keep tracebacks

BUGS = {  # tool -> (what the injected bug replaces, the exception it raises)
    "test": ("inference.runner", "derain_image", "KeyError"),
    "derain": ("utils.image_io", "write_image", "TypeError"),
    "evaluate": ("metrics.report", "score_y", "ValueError"),
    "train": ("training.trainer", "Trainer._step", "TypeError"),
    "build_store": ("data.store", "read_pair", "KeyError"),
    "make_demo_data": ("data.demo", "synthesize_rain", "ValueError"),
}


@pytest.mark.parametrize("tool", list(BUGS))
def test_a_real_bug_keeps_its_traceback(tool, tmp_path, monkeypatch):
    module, attr, exc = BUGS[tool]
    train, val = make_pairs(tmp_path / "train", n=2), make_pairs(tmp_path / "gt" / "Rain100L", n=1)
    (tmp_path / "res").mkdir()
    (val / "input").rename(tmp_path / "res" / "Rain100L")  # results to score against gt/Rain100L/target
    photo = write_png(tmp_path / "in" / "a.png", rgb(30, 30))
    args = {
        "test": ["--model", "Identity", "--input_dir", photo.parent, "--result_dir", tmp_path / "r"],
        "derain": [photo, "--model", "Identity", "--out", tmp_path / "o"],
        "evaluate": ["--result_dir", tmp_path / "res", "--gt_dir", tmp_path / "gt"],
        "train": train_args(train, val, tmp_path / "ck"),
        "build_store": ["--root", train, "--out", tmp_path / "s.store"],
        "make_demo_data": ["--out", tmp_path / "demo", "--num-train", "4", "--patch", "32"],
    }[tool]

    def bug(*args, **kwargs):
        raise getattr(builtins, exc)("a genuine bug")

    owner, _, name = attr.rpartition(".")
    mod = importlib.import_module(module)
    monkeypatch.setattr(getattr(mod, owner) if owner else mod, name, bug)  # the script imports it afresh
    if tool == "train":  # the validation set is gt/Rain100L: give it its input folder back
        (tmp_path / "res" / "Rain100L").rename(val / "input")
    run = run_tool(tool, *args, cwd=tmp_path)
    assert run.rc != 0
    assert "Traceback" in run.stderr and f"{exc}: " in run.stderr and "a genuine bug" in run.stderr, run.stderr


# ----------------------------------------------------------------------------- class 9: exit statuses

EPOCHS = 4  # the signal comes at the first step, 3 steps (seconds) before the first epoch ends


def _start_training(tmp_path, *extra):
    data = make_pairs(tmp_path / "train", n=3), make_pairs(tmp_path / "val", n=1)
    args = train_args(*data, tmp_path / "ck", "OPTIM.BATCH_SIZE", "1", "OPTIM.NUM_EPOCHS", str(EPOCHS), *extra)
    proc = subprocess.Popen([sys.executable, str(REPO / "train.py"), *args], cwd=tmp_path, env=tool_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = tmp_path / "ck" / "Deraining" / "DMSR" / "config.yaml"  # written just before the first step
    deadline = time.monotonic() + 120
    while not started.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    return proc, args


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_run_exits_143_and_resumes(sig, tmp_path):
    proc, args = _start_training(tmp_path)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "Traceback" not in err and f"received {sig.name}" in err
    latest = tmp_path / "ck" / "Deraining" / "DMSR" / "model_latest.pth"
    assert load_checkpoint(latest)["epoch"] < EPOCHS
    if sig == signal.SIGTERM:  # the pre-empted job goes on where it stopped and finishes: exit 0
        run = run_tool("train", "--resume", *args, cwd=tmp_path)
        expect_ok(run)
        assert load_checkpoint(latest)["epoch"] == EPOCHS


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(tmp_path, patch: str, *extra) -> subprocess.CompletedProcess:
    data = make_pairs(tmp_path / "train", n=4), make_pairs(tmp_path / "val", n=1)
    args = train_args(*data, tmp_path / "ck", "OPTIM.BATCH_SIZE", "1", "OPTIM.NUM_EPOCHS", "3", *extra)
    script = tmp_path / "run.py"
    script.write_text(f"import os, signal, sys, runpy, torch\nsys.path.insert(0, {str(REPO)!r})\n"
                      f"from training.trainer import Trainer\n{patch}\n"
                      f"sys.argv = ['train.py'] + {[str(a) for a in args]!r}\n"
                      f"runpy.run_path({str(REPO / 'train.py')!r}, run_name='__main__')\n")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(_free_port()), str(script)]
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=tmp_path, env=tool_env(), capture_output=True, text=True, timeout=300)
    proc.seconds = time.monotonic() - start
    return proc


def test_torchrun_nan_weights_on_rank_0_stop_every_rank(tmp_path):
    poison = ("real = Trainer._finish_epoch\n"
              "def poisoned(self, *a, **k):\n"
              "    with torch.no_grad(): next(self.model.parameters()).fill_(float('nan'))\n"
              "    return real(self, *a, **k)\n"
              "Trainer._finish_epoch = poisoned")
    proc = _torchrun(tmp_path, poison)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and proc.seconds < 240, out[-3000:]
    assert "weights hold NaN" in out and "rank 0 stopped the run" in out, out[-3000:]
    assert "training/trainer.py" not in out  # both ranks ended with a message, not a traceback of ours


def test_torchrun_sigterm_mid_epoch_averages_batchnorm_before_saving(tmp_path):
    kill = ("real = Trainer._step\n"
            "def step(self, inp, tgt):\n"
            "    out = real(self, inp, tgt)\n"
            "    if self.dist.rank == 0 and self.global_step == 0: os.kill(os.getpid(), signal.SIGTERM)\n"
            "    return out\n"
            "Trainer._step = step")
    proc = _torchrun(tmp_path, kill)
    out = proc.stdout + proc.stderr
    assert "BatchNorm statistics averaged over the 2 ranks" in out, out[-3000:]
    assert "exitcode: 143" in out or "exit code 143" in out or proc.returncode == 143, out[-3000:]
    ckpt = load_checkpoint(tmp_path / "ck" / "Deraining" / "DMSR" / "model_latest.pth")
    assert (ckpt["epoch"], ckpt["step_in_epoch"]) == (1, 1)
    assert "training/trainer.py" not in out
