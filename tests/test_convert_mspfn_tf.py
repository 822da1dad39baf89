"""scripts/convert_mspfn_tf.py: TF variables -> our checkpoint, run by test.py/derain.py as the release's script.

Uses the golden variables of ../shared/reference/mspfn (regenerated, see
conftest) as the "authors' checkpoint".  The ``--ckpt`` path needs
TensorFlow and skips without it.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import REPO, mspfn_release_variables, require_shared

import derain
import test as test_script
from inference.runner import load_model
from models.mspfn_tf import TFConversionError, convert_release_variables
from scripts.convert_mspfn_tf import TF_MISSING, ConversionInputError
from scripts.convert_mspfn_tf import main as convert
from utils.checkpoint import FORMAT_NAME, FORMAT_VERSION, load_checkpoint


@pytest.fixture(scope="module")
def m17n1_npz(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tf") / "m17n1_variables.npz"
    np.savez(path, **mspfn_release_variables("m17n1"))
    return path


@pytest.fixture(scope="module")
def m17n1_pth(m17n1_npz, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("converted") / "mspfn_m17n1.pth"
    assert convert(["--npz", str(m17n1_npz), "--variant", "m17n1", "--out", str(out)]) == 0
    return out


def test_npz_gives_a_checkpoint_of_this_project(m17n1_pth):
    ckpt = load_checkpoint(m17n1_pth)
    assert (ckpt["format"], ckpt["version"], ckpt["model_name"]) == (FORMAT_NAME, FORMAT_VERSION, "MSPFN")
    assert ckpt["model_kwargs"] == {"width": 64, "num_ffm": 17, "caus": [1, 1, 1], "convention": "release"}
    want = convert_release_variables(mspfn_release_variables("m17n1"), "m17n1").state_dict
    assert sorted(ckpt["model"]) == sorted(want)
    assert all(torch.equal(ckpt["model"][k], want[k]) for k in want)
    model, name = load_model(None, m17n1_pth)  # no model name, no options: all from the checkpoint
    assert name == "MSPFN" and model.spec.channel_order == "BGR" and model.spec.quantize == "truncate"
    assert sum(p.numel() for p in model.parameters()) == 15_823_424


def test_names_with_or_without_the_output_suffix():
    variables = mspfn_release_variables("m17n1")
    bare = {name[:-2]: value for name, value in variables.items()}
    a = convert_release_variables(variables, "m17n1").state_dict
    b = convert_release_variables(bare, "m17n1").state_dict
    assert all(torch.equal(a[k], b[k]) for k in a)


def _release_script(model, bgr: np.ndarray) -> np.ndarray:
    """What the release's test script writes (BGR uint8) for ``bgr``, run by our converted model.

    ``img / 127.5 - 1`` in, ``np.uint8(np.clip((y + 1) * 127.5, 0, 255))``
    out; sides that are not multiples of 4 (which the release cannot run)
    are reflect-padded and cropped back.
    """
    h, w = bgr.shape[:2]
    x = torch.from_numpy((bgr / 127.5 - 1).astype(np.float32)).permute(2, 0, 1)[None]
    x = F.pad(x, (0, -w % 4, 0, -h % 4), mode="reflect")
    with torch.no_grad():
        y = model(x)[0, :, :h, :w].permute(1, 2, 0).numpy()
    return np.uint8(np.clip((y + 1) * 127.5, 0, 255.0))


def test_test_py_and_derain_py_run_it_as_the_release_does(m17n1_pth, tmp_path):
    """Real Rain100H crops, sides multiple of 8, of 4 only (odd 1/4 scale) and of neither."""
    rainy = cv2.imread(str(require_shared("data", "Rain100H", "input", "001.png")))
    folder = tmp_path / "crops"
    folder.mkdir()
    crops = {"a_64x96": rainy[:64, :96], "b_68x100": rainy[100:168, 200:300], "c_37x61": rainy[7:44, 11:72]}
    for stem, crop in crops.items():
        cv2.imwrite(str(folder / f"{stem}.png"), crop)
    results = tmp_path / "results"
    assert test_script.main(["--weights", str(m17n1_pth), "--input_dir", str(folder), "--no-score",
                             "--result_dir", str(results), "--device", "cpu"]) == 0
    model, _ = load_model(None, m17n1_pth)
    for stem, crop in crops.items():
        ours = cv2.imread(str(results / "MSPFN" / "crops" / f"{stem}.png"))
        want = _release_script(model, crop)
        assert ours.shape == crop.shape
        assert np.array_equal(ours, want), f"{stem}: {np.abs(ours.astype(int) - want).max()} grey levels off"
        assert np.abs(ours.astype(int) - crop).mean() > 1  # the random weights do change the image

    out = tmp_path / "derained"
    assert derain.main([str(folder / "b_68x100.png"), "--weights", str(m17n1_pth), "--out", str(out),
                        "--device", "cpu"]) == 0
    assert np.array_equal(cv2.imread(str(out / "b_68x100.png")), _release_script(model, crops["b_68x100"]))
    # --quantize still overrides the release's truncation
    assert derain.main([str(folder / "b_68x100.png"), "--weights", str(m17n1_pth), "--out", str(out),
                        "--device", "cpu", "--quantize", "round"]) == 0
    rounded = cv2.imread(str(out / "b_68x100.png")).astype(int) - _release_script(model, crops["b_68x100"])
    assert rounded.min() >= 0 and rounded.max() == 1


def _convert_fails(variables: dict, tmp_path: Path, variant: str = "m17n1") -> str:
    npz, out = tmp_path / "vars.npz", tmp_path / "out.pth"
    np.savez(npz, **variables)
    with pytest.raises(TFConversionError) as err:
        convert(["--npz", str(npz), "--variant", variant, "--out", str(out)])
    assert not out.exists() and not list(tmp_path.glob("*.pth*")), "nothing may be written"
    return str(err.value)


def test_unknown_missing_and_mis_shaped_variables_are_named(tmp_path):
    good = mspfn_release_variables("m17n1")
    extra = {**good, "generator/rnn3/weight:0": np.zeros((3, 3, 64, 3), np.float32)}
    assert "1 unknown: generator/rnn3/weight:0" in _convert_fails(extra, tmp_path)

    missing = {k: v for k, v in good.items() if k != "generator/BCM_7/up_8/alpha:0"}
    assert "1 missing: generator/BCM_7/up_8/alpha" in _convert_fails(missing, tmp_path)

    bad = dict(good)
    bad["generator/rnn5/weight:0"] = np.zeros((3, 3, 128, 32), np.float32)  # in/out swapped
    msg = _convert_fails(bad, tmp_path)
    assert "1 mis-shaped: generator/rnn5/weight:0 [3, 3, 128, 32] (expected [3, 3, 32, 128])" in msg
    assert "unknown" not in msg and "missing" not in msg

    msg = _convert_fails(good, tmp_path, variant="m17")  # the wrong variant: says which one fits
    assert "missing" in msg and "use --variant m17n1" in msg


def test_optimizer_state_of_a_training_checkpoint_is_skipped():
    variables = dict(mspfn_release_variables("m17n1"))
    slot = np.zeros((64,), np.float32)
    variables.update({"generator/rnn1/alpha/Adam": slot, "generator/rnn1/alpha/Adam_1": slot,
                      "beta1_power": np.float32(0.9), "beta2_power": np.float32(0.999),
                      "MSPFN/global_step": np.int64(5)})
    conversion = convert_release_variables(variables, "m17n1")
    assert len(conversion.state_dict) == 859 and len(conversion.skipped) == 5


def test_bad_inputs_are_one_line_errors(tmp_path, monkeypatch):
    with pytest.raises(ConversionInputError, match="no such file: .*absent.npz"):
        convert(["--npz", str(tmp_path / "absent.npz"), "--variant", "m17n1", "--out", str(tmp_path / "o.pth")])
    (tmp_path / "notes.npz").write_text("not an archive")
    with pytest.raises(ConversionInputError, match="notes.npz: not a readable .npz"):
        convert(["--npz", str(tmp_path / "notes.npz"), "--variant", "m17n1", "--out", str(tmp_path / "o.pth")])
    with pytest.raises(ConversionInputError, match="no TensorFlow checkpoint at .*epoch50"):
        convert(["--ckpt", str(tmp_path / "MSPFN" / "epoch50"), "--variant", "m17n1", "--out", str(tmp_path / "o.pth")])
    (tmp_path / "epoch50.index").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # as if TensorFlow were not installed
    with pytest.raises(ConversionInputError, match="pip install tensorflow-cpu"):
        convert(["--ckpt", str(tmp_path / "epoch50"), "--variant", "m17n1", "--out", str(tmp_path / "o.pth")])
    assert "not in requirements.txt" in TF_MISSING and not list(tmp_path.glob("*.pth"))


def test_command_line_error_exit(tmp_path):
    npz = tmp_path / "few.npz"
    np.savez(npz, **{"generator/rnn1/weight:0": np.zeros((3, 3, 64, 3), np.float32)})
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "convert_mspfn_tf.py"), "--npz", str(npz),
                          "--variant", "m17n1", "--out", str(tmp_path / "o.pth")],
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.startswith("error: TensorFlow variables do not fit MSPFN variant 'm17n1'")
    assert "858 missing" in run.stderr and not (tmp_path / "o.pth").exists()


def test_tensorflow_checkpoint(tmp_path, m17n1_npz):
    """A TF Saver checkpoint (with optimizer slots) read by TensorFlow's reader converts like the .npz."""
    tf = pytest.importorskip("tensorflow", reason="TensorFlow is not installed (optional: pip install tensorflow-cpu)")
    variables = mspfn_release_variables("m17n1")
    prefix = tmp_path / "MSPFN" / "epoch50"
    graph = tf.Graph()
    with graph.as_default():
        tf_vars = [tf.compat.v1.Variable(value, name=name[:-2]) for name, value in variables.items()]
        tf_vars.append(tf.compat.v1.Variable(np.zeros(64, np.float32), name="generator/rnn1/alpha/Adam"))
        tf_vars.append(tf.compat.v1.Variable(np.int64(7), name="MSPFN/global_step"))
        saver = tf.compat.v1.train.Saver(tf_vars)
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.save(sess, str(prefix), write_meta_graph=False)
    out = tmp_path / "from_ckpt.pth"
    assert convert(["--ckpt", str(prefix), "--variant", "m17n1", "--out", str(out)]) == 0
    from_npz = tmp_path / "from_npz.pth"
    assert convert(["--npz", str(m17n1_npz), "--variant", "m17n1", "--out", str(from_npz)]) == 0
    a, b = load_checkpoint(out), load_checkpoint(from_npz)
    assert a["model_kwargs"] == b["model_kwargs"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in b["model"])
