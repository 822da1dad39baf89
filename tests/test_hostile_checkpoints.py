"""Hostile suite, classes 5 and 6: checkpoints whose metadata or contents cannot be trusted, and
pickles that would run code.

A checkpoint's model name and options are checked before anything is built
(no hang on ``stages=10**9``, no 40 TB allocation), non-finite or integer
weights are refused, and only tensors are ever unpickled.
"""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from hostile_helpers import (
    expect_error,
    expect_ok,
    make_pairs,
    malicious_pickle,
    rgb,
    run_tool,
    save_ours,
    snapshot,
    train_args,
    write_png,
)

from models import build_model
from utils.checkpoint import FORMAT_NAME, load_checkpoint, save_checkpoint

TINY = {"base_channels": 8, "num_res": 1}


def _tiny_state() -> dict:
    torch.manual_seed(0)
    return build_model("DMSR", **TINY).state_dict()


def _nan_state() -> dict:
    state = _tiny_state()
    state["feat_extract.0.main.0.weight"][0, 0, 0, 0] = float("nan")
    return state


def _int_state() -> dict:
    return {k: v.to(torch.int32) for k, v in _tiny_state().items()}


def _write(kind: str, path, marker):
    """Write the hostile checkpoint ``kind`` to ``path``; returns (extra arguments, culprit in the message)."""
    if kind == "stages-1e9":
        save_ours(path, "PReNet", {"stages": 10**9}, state=_tiny_state())
        return [], "stages"
    if kind == "width-2**20":
        save_ours(path, "PReNet", {"width": 2**20}, state=_tiny_state())
        return [], "width"
    if kind == "unknown-option":
        save_ours(path, "DMSR", {**TINY, "bogus": 1}, state=_tiny_state())
        return [], "bogus"
    if kind == "too-many-parameters":
        save_ours(path, "DMSR", {"base_channels": 256, "num_res": 64}, state=_tiny_state())
        return [], "parameters"
    if kind == "kwargs-not-a-mapping":
        save_ours(path, "DMSR", "abc", state=_tiny_state())
        return [], "model_kwargs"
    if kind == "unknown-model-name":
        save_ours(path, "Nope", {}, state=_tiny_state())
        return [], "'Nope'"
    if kind == "model-name-not-text":
        save_checkpoint({"format": FORMAT_NAME, "model_name": 5, "model_kwargs": TINY, "model": _tiny_state()}, path)
        return [], "model 5"
    if kind == "nan-weights":
        save_ours(path, state=_nan_state())
        return [], "NaN"
    if kind == "integer-weights":
        save_ours(path, state=_int_state())
        return [], "floating-point"
    if kind == "ema-missing":
        save_ours(path)
        return ["--ema"], "EMA"
    if kind == "truncated":
        save_ours(path)
        path.write_bytes(path.read_bytes()[:5000])
        return ["--model", "DMSR"], "not a readable PyTorch checkpoint"
    if kind == "empty":
        path.write_bytes(b"")
        return ["--model", "DMSR"], "not a readable"
    if kind == "json":
        path.write_text(json.dumps({"model": [1, 2, 3]}))
        return ["--model", "DMSR"], "not a readable"
    if kind == "folder":
        path.mkdir()
        return ["--model", "DMSR"], "not a file"
    if kind == "mis-shaped":
        save_ours(path)
        return ["--model-opts", "base_channels=16"], "mis-shaped"
    if kind == "not-tensors":
        torch.save({"conv.weight": [1.0, 2.0], "conv.bias": "zero"}, path)
        return ["--model", "DMSR"], "not tensors"
    if kind == "pickle-runs-code":
        malicious_pickle(path, marker, torch_format=False)
        return ["--model", "DMSR"], "not a readable"
    if kind == "torch-zip-runs-code":
        malicious_pickle(path, marker, torch_format=True)
        return ["--model", "DMSR"], "not a readable"
    raise AssertionError(kind)


KINDS = ["stages-1e9", "width-2**20", "unknown-option", "too-many-parameters", "kwargs-not-a-mapping",
         "unknown-model-name", "model-name-not-text", "nan-weights", "integer-weights", "ema-missing", "truncated",
         "empty", "json", "folder", "mis-shaped", "not-tensors", "pickle-runs-code", "torch-zip-runs-code"]


@pytest.mark.parametrize("tool", ["test", "derain"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_hostile_checkpoint_is_refused(tool, kind, tmp_path):
    marker = tmp_path / "code-ran"
    weights = tmp_path / "weights.pth"
    extra, culprit = _write(kind, weights, marker)
    photo = write_png(tmp_path / "in" / "a.png", rgb(40, 40))
    where = (["--input_dir", photo.parent, "--result_dir", tmp_path / "out"] if tool == "test"
             else [photo, "--out", tmp_path / "out"])
    run = run_tool(tool, *where, "--weights", weights, "--device", "cpu", *extra, cwd=tmp_path, timeout=60)
    expect_error(run, weights, culprit)
    assert not marker.exists(), "the checkpoint ran code"
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- train.py --resume

@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    data = make_pairs(root / "train", n=3), make_pairs(root / "val", n=1)
    expect_ok(run_tool("train", *train_args(*data, root / "ck"), cwd=root))
    return root, data


def _tamper(kind: str, path, marker) -> str:
    ckpt = load_checkpoint(path)
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[:3000])
        return "not a readable"
    if kind == "pickle-runs-code":
        malicious_pickle(path, marker, torch_format=True)
        return "not a readable"
    if kind == "other-model":
        save_ours(path, "PReNet", {"stages": 2}, state=build_model("PReNet", stages=2).state_dict())
        return "PReNet"
    if kind == "no-optimizer":
        del ckpt["optimizer"]
    elif kind == "rng-garbage":
        ckpt["rng"] = {"python": [1, 2], "numpy": "x", "torch": torch.zeros(3)}
    elif kind == "other-schedule":
        ckpt["scheduler"] = {"base_lrs": [1e-3], "last_epoch": 2, "lr_lambdas": [None]}
    elif kind == "nan-weights":
        ckpt["model"]["feat_extract.0.main.0.weight"][0, 0, 0, 0] = float("inf")
    elif kind == "optimizer-of-another-model":
        ckpt["optimizer"]["param_groups"][0]["params"] = [0, 1]
    elif kind == "epoch-losses-garbage":
        ckpt["epoch_losses"] = ["0.1", None]
    save_checkpoint(ckpt, path)
    return {"no-optimizer": "optimizer missing", "rng-garbage": "rng", "other-schedule": "schedule",
            "nan-weights": "NaN", "optimizer-of-another-model": "optimizer",
            "epoch-losses-garbage": "epoch_losses"}[kind]


@pytest.mark.parametrize("kind", ["truncated", "pickle-runs-code", "other-model", "no-optimizer", "rng-garbage",
                                  "other-schedule", "nan-weights", "optimizer-of-another-model",
                                  "epoch-losses-garbage"])
def test_resume_refuses_a_hostile_model_latest(kind, finished_run, tmp_path):
    root, data = finished_run
    save_dir = tmp_path / "ck"
    shutil.copytree(root / "ck", save_dir)
    latest = save_dir / "Deraining" / "DMSR" / "model_latest.pth"
    marker = tmp_path / "code-ran"
    culprit = _tamper(kind, latest, marker)
    before = snapshot(save_dir)
    run = run_tool("train", "--resume", *train_args(*data, save_dir, "OPTIM.NUM_EPOCHS", "2"), cwd=tmp_path)
    expect_error(run, latest, culprit)
    assert not marker.exists(), "the checkpoint ran code"
    after = snapshot(save_dir)
    assert {k: v for k, v in after.items() if k.endswith(".pth")} == \
        {k: v for k, v in before.items() if k.endswith(".pth")}
