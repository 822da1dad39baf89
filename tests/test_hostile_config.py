"""Hostile suite, classes 4 and 6: configuration values and arguments out of range, and files that
must never run as code (a ``.py`` config, YAML tags that build Python objects).

Every bad value is refused at start-up with an error naming the key, before
anything is written.
"""
from __future__ import annotations

import pytest
from hostile_helpers import expect_error, make_pairs, rgb, run_tool, save_ours, train_args, write_png


@pytest.fixture
def data(tmp_path):
    return make_pairs(tmp_path / "train", n=3), make_pairs(tmp_path / "val", n=1)


BAD_OPTS = [  # (overrides, what the message must name)
    (["TRAINING.SEED", "-1"], "TRAINING.SEED"),
    (["OPTIM.LR_INITIAL", "-0.001"], "OPTIM.LR_INITIAL"),
    (["OPTIM.LR_INITIAL", "1e999"], "OPTIM.LR_INITIAL"),
    (["OPTIM.BETA1", "1.0"], "OPTIM.BETA1"),
    (["OPTIM.BETA2", "-0.1"], "OPTIM.BETA2"),
    (["OPTIM.EPS", "0.0"], "OPTIM.EPS"),
    (["OPTIM.SCHEDULER", "exp_decay", "OPTIM.DECAY_STEPS", "0"], "OPTIM.DECAY_STEPS"),
    (["OPTIM.GAMMA", "-0.5"], "OPTIM.GAMMA"),
    (["OPTIM.MILESTONES", "[50, 30]"], "OPTIM.MILESTONES"),
    (["OPTIM.GRAD_CLIP", "-1.0"], "OPTIM.GRAD_CLIP"),
    (["OPTIM.BATCH_SIZE", "0"], "OPTIM.BATCH_SIZE"),
    (["OPTIM.WARMUP_EPOCHS", "5"], "OPTIM.WARMUP_EPOCHS"),
    (["TRAINING.NUM_WORKERS", "-1"], "TRAINING.NUM_WORKERS"),
    (["TRAINING.VAL_PS", "-5"], "TRAINING.VAL_PS"),
    (["TRAINING.LOG_EVERY", "0"], "TRAINING.LOG_EVERY"),
    (["TRAINING.NAN_PATIENCE", "0"], "TRAINING.NAN_PATIENCE"),
    (["TRAINING.PRECISE_BN", "-8"], "TRAINING.PRECISE_BN"),
    (["TRAINING.PRECISE_BN", "'all'"], "TRAINING.PRECISE_BN"),
    (["TRAINING.TRAIN_PS", "100000"], "TRAINING.TRAIN_PS"),
    (["TRAINING.TRAIN_PS", "40"], "TRAINING.TRAIN_PS"),
    (["FAST.EMA", "1.5"], "FAST.EMA"),
    (["MODEL.SESSION", "../../escape"], "MODEL.SESSION"),
    (["MODEL.MODE", "/etc"], "MODEL.MODE"),
    (["MODEL.ARGS.num_res", "0"], "num_res"),
    (["MODEL.ARGS.base_channels", "12"], "base_channels"),
    (["MODEL.ARGS.base_channels", "'wide'"], "base_channels"),
    (["MODEL.ARGS.num_res", "1000000000"], "num_res"),
    (["MODEL.ARGS.bogus", "1"], "bogus"),
    (["MODEL.NAME", "PReNet", "MODEL.ARGS.stages", "0"], "stages"),
    (["LOSS.NAME", "Nope"], "unknown loss 'Nope'"),
    (["LOSS.ARGS.fft_weight", "'heavy'"], "fft_weight"),
    (["OPTIM.BATCH_SIZE", "1.5"], "OPTIM.BATCH_SIZE"),
    (["OPTIM.LR_INITAL", "1e-3"], "OPTIM.LR_INITAL"),
    (["OPTIM.NUM_EPOCHS"], "KEY VALUE pairs"),
]


@pytest.mark.parametrize("opts,culprit", BAD_OPTS, ids=[" ".join(o) for o, _ in BAD_OPTS])
def test_train_refuses_a_bad_value_naming_the_key(opts, culprit, data, tmp_path):
    # the tiny-run overrides come first: the bad one is applied after them
    run = run_tool("train", *train_args(*data, tmp_path / "ck", *opts), cwd=tmp_path, timeout=60)
    expect_error(run, culprit)
    assert not (tmp_path / "ck").exists()  # refused before anything was written


@pytest.mark.parametrize("device", ["tpu", "meta", "cuda:99"])
def test_train_refuses_a_bad_device(device, data, tmp_path):
    run = run_tool("train", *train_args(*data, tmp_path / "ck"), "--device", device, cwd=tmp_path)
    expect_error(run, device)


BAD_YAML = {  # file content -> what the message must name
    "list.yml": ("- OPTIM\n- MODEL\n", "sections"),
    "syntax.yml": ("OPTIM: {BATCH_SIZE: [1, 2\n", "not a valid YAML"),
    "date.yml": ("MODEL:\n  SESSION: 2024-01-01\n", "MODEL.SESSION"),
    "nan.yml": ("OPTIM:\n  LR_INITIAL: .nan\n", "OPTIM.LR_INITIAL"),
    "scalar_section.yml": ("OPTIM: 5\n", "OPTIM"),
    "bomb.yml": ("a: &a {x: 1, y: 1}\nb: &b {x: *a, y: *a}\nc: &c {x: *b, y: *b}\nMODEL:\n  ARGS: {z: *c}\n",
                 "aliases"),
    "deep.yml": ("MODEL:\n  ARGS:\n    a: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    "binary.yml": (b"\xff\xfe\x00\x01garbage", "not a text"),
}


@pytest.mark.parametrize("name", list(BAD_YAML))
def test_train_refuses_a_bad_config_file(name, tmp_path):
    content, culprit = BAD_YAML[name]
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    run = run_tool("train", "--config", path, "--device", "cpu", cwd=tmp_path, timeout=60)
    expect_error(run, culprit, *([] if name == "nan.yml" else [path]))  # a bad value names its key


# ----------------------------------------------------------------------------- class 6: code from a file

def test_a_python_config_is_never_run(tmp_path):
    marker = tmp_path / "ran"
    config = tmp_path / "evil.py"
    config.write_text(f"import pathlib\npathlib.Path({str(marker)!r}).write_text('pwned')\ncfg = {{}}\n")
    run = run_tool("train", "--config", config, "--device", "cpu", cwd=tmp_path)
    expect_error(run, config, ".yml or .yaml")
    assert not marker.exists()


def test_python_in_a_yml_file_is_not_run(tmp_path):
    marker = tmp_path / "ran"
    config = tmp_path / "evil.yml"
    config.write_text(f"import os\nos.system('touch {marker}')\n")
    run = run_tool("train", "--config", config, "--device", "cpu", cwd=tmp_path)
    expect_error(run, config)
    assert not marker.exists()


@pytest.mark.parametrize("tag", ["!!python/object/apply:os.system", "!!python/name:os.system"])
def test_yaml_tags_that_build_objects_are_refused(tag, tmp_path):
    marker = tmp_path / "ran"
    config = tmp_path / "evil.yaml"
    config.write_text(f"MODEL:\n  SESSION: {tag} ['touch {marker}']\n")
    run = run_tool("train", "--config", config, "--device", "cpu", cwd=tmp_path)
    expect_error(run, config, "not a valid YAML")
    assert not marker.exists()


# ----------------------------------------------------------------------------- the scripts' own arguments

DEMO_ARGS = [
    (["--num-train", "0"], "--num-train", 1),
    (["--num-train", "1000000000"], "--num-train", 1),
    (["--patch", "8"], "--patch", 1),
    (["--patch", "4000"], "--patch 4000", 1),
    (["--seed", "-1"], "--seed", 1),
    (["--preset", "monsoon"], "--preset", 2),
    (["--num-train", "many"], "--num-train", 2),
]


@pytest.mark.parametrize("args,culprit,rc", DEMO_ARGS, ids=[" ".join(a) for a, _, _ in DEMO_ARGS])
def test_make_demo_data_refuses_bad_arguments(args, culprit, rc, tmp_path):
    run = run_tool("make_demo_data", "--out", tmp_path / "demo", *args, cwd=tmp_path, timeout=60)
    expect_error(run, culprit, rc=rc)
    assert not (tmp_path / "demo").exists()


@pytest.mark.parametrize("workers", ["0", "-3", "lots"])
def test_build_store_refuses_bad_workers(workers, tmp_path):
    root = make_pairs(tmp_path / "train", n=1)
    run = run_tool("build_store", "--root", root, "--out", tmp_path / "s.store", "--workers", workers, cwd=tmp_path)
    expect_error(run, "--workers", rc=2)


def test_evaluate_refuses_zero_workers(tmp_path):
    expect_error(run_tool("evaluate", "--result_dir", tmp_path, "--workers", "0", cwd=tmp_path), "--workers", rc=2)


@pytest.fixture
def photo(tmp_path):
    return write_png(tmp_path / "in" / "a.png", rgb(40, 40))


INFERENCE_ARGS = [  # (arguments, culprit, exit status); DMSR weights are added where "W" appears
    (["--tile", "-3"], "tile", 1),
    (["W", "--tile", "40"], "multiple of", 1),
    (["W", "--tile", "100000"], "at most", 1),
    (["--max-batch", "0"], "--max-batch", 2),
    (["--model-opts", "bogus=1"], "bogus", 1),
    (["--model-opts", "=="], "KEY=VALUE", 1),
    (["W", "--model-opts", "base_channels=12"], "base_channels", 1),
    (["--model", "Nope"], "unknown model 'Nope'", 1),
    (["--device", "tpu"], "tpu", 1),
    (["--device", "meta"], "meta", 1),
    (["--quantize", "ceil"], "--quantize", 2),
]


@pytest.mark.parametrize("tool", ["test", "derain"])
@pytest.mark.parametrize("args,culprit,rc", INFERENCE_ARGS, ids=[" ".join(a) for a, _, _ in INFERENCE_ARGS])
def test_inference_tools_refuse_bad_arguments(tool, args, culprit, rc, photo, tmp_path):
    if args[0] == "W":
        args = ["--weights", save_ours(tmp_path / "w.pth"), *args[1:]]
    else:
        args = ["--model", "Identity", *args] if "--model" not in args else args
    where = (["--input_dir", photo.parent, "--result_dir", tmp_path / "out"] if tool == "test"
             else [photo, "--out", tmp_path / "out"])
    run = run_tool(tool, *where, *args, cwd=tmp_path, timeout=60)
    expect_error(run, culprit, rc=rc)
    assert not (tmp_path / "out").exists()
