"""Hostile suite, issue 21 class 2 (values that are not weights), with the converter's classes 3 and 5
(inputs that are not archives, ``--force``).

A complete variable set of the released model is built here (zeros of the
right names and shapes, from the name table itself), so one bad variable is
the only thing wrong with the input: the converter must refuse it naming
that variable, and write nothing.  The leaderboard, the other newer tool
that reads weights, refuses such checkpoints before any work.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hostile_helpers import expect_error, expect_ok, make_pairs, run_tool, save_ours, snapshot, temp_files

from models import build_model
from models.mspfn import MSPFN
from models.mspfn_tf import VARIANTS, release_entries, release_model_kwargs, tf_shape
from utils.checkpoint import load_checkpoint

VARIANT = "m17n1"
VICTIM = "generator/rnn1/weight:0"  # the first layer's kernel


@pytest.fixture(scope="module")
def variables() -> dict[str, np.ndarray]:
    """Every variable of the released test model, by its TensorFlow name, as float32 zeros."""
    with torch.device("meta"):
        shapes = {k: tuple(t.shape) for k, t in MSPFN(**release_model_kwargs(VARIANT)).state_dict().items()}
    scope = VARIANTS[VARIANT].scope
    return {f"{scope}/{e.tf_name}:0": np.zeros(tf_shape(e.kind, shapes[e.key]), np.float32)
            for e in release_entries(VARIANT)}


def _spoilt(value: np.ndarray, kind: str) -> np.ndarray:
    value = value.copy()
    if kind == "nan":
        value.flat[5] = np.nan
    elif kind in ("inf", "-inf"):
        value.flat[-1] = float(kind)
    elif kind == "complex":
        return value.astype(np.complex64) + 1j
    elif kind == "text":
        return np.full(value.shape, "0.5")
    return value


@pytest.mark.parametrize("kind,why", [("nan", "1 NaN or infinite value(s)"), ("inf", "1 NaN or infinite value(s)"),
                                      ("-inf", "1 NaN or infinite value(s)"), ("complex", "complex, not real"),
                                      ("text", "not numbers")])
def test_a_variable_that_is_not_weights_is_refused_by_name(kind, why, variables, tmp_path):
    npz = tmp_path / "variables.npz"
    np.savez(npz, **{**variables, VICTIM: _spoilt(variables[VICTIM], kind)})
    before = snapshot(tmp_path)
    run = run_tool("convert_mspfn_tf", "--npz", npz, "--variant", VARIANT, "--out", tmp_path / "mspfn.pth",
                   cwd=tmp_path)
    expect_error(run, f"not real, finite numbers: {VICTIM} (", why)
    assert "missing" not in run.stderr and "ComplexWarning" not in run.output  # the rest of the file is fine
    assert snapshot(tmp_path) == before and not temp_files(tmp_path)


def test_force_replaces_an_existing_file(variables, tmp_path):
    npz = tmp_path / "variables.npz"
    np.savez(npz, **variables)
    out = tmp_path / "mspfn.pth"
    out.write_text("an older conversion")
    expect_ok(run_tool("convert_mspfn_tf", "--npz", npz, "--variant", VARIANT, "--out", out, "--force",
                       cwd=tmp_path))
    ckpt = load_checkpoint(out)
    assert ckpt["model_name"] == "MSPFN" and ckpt["converted_from"]["source"] == str(npz)
    assert all(not t.any() for t in ckpt["model"].values()) and len(ckpt["model"]) == len(variables)
    assert not temp_files(tmp_path)


@pytest.mark.parametrize("kind", ["folder", "missing"])
def test_npz_that_is_not_a_file(kind, tmp_path):
    npz = tmp_path / "variables.npz"
    if kind == "folder":
        npz.mkdir()
    run = run_tool("convert_mspfn_tf", "--npz", npz, "--variant", VARIANT, "--out", tmp_path / "m.pth", cwd=tmp_path)
    expect_error(run, npz, "is a folder, not a .npz archive" if kind == "folder" else "no such file")
    assert not (tmp_path / "m.pth").exists()


@pytest.mark.parametrize("kind,why", [("nan", "hold NaN or infinity"), ("complex", "should be floating-point")])
def test_leaderboard_refuses_weights_that_are_not_weights_before_any_work(kind, why, tmp_path):
    kwargs = {"base_channels": 8, "num_res": 1}
    state = build_model("DMSR", **kwargs).state_dict()
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = state[key].to(torch.complex64) if kind == "complex" else state[key].clone().fill_(float("nan"))
    good, bad = save_ours(tmp_path / "good.pth", kwargs=kwargs), save_ours(tmp_path / "bad.pth", kwargs=kwargs,
                                                                           state=state)
    make_pairs(tmp_path / "sets" / "Rain100L", n=1)
    run = run_tool("leaderboard", "--models", f"DMSR:{good}", f"DMSR:{bad}", "--input_dir", tmp_path / "sets",
                   "--out", tmp_path / "lb", "--device", "cpu", "--macs-size", "64", "64", cwd=tmp_path)
    expect_error(run, bad, why, key)
    assert "s/image" not in run.output and not (tmp_path / "lb" / "leaderboard.md").exists()
