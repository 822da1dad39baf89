"""Hostile input to scripts/ablate.py and to TRAINING.VAL_SPLIT: one clear line, nothing started or written.

Each case runs the tool's ``main`` in-process through the one error handler
(``utils.errors.run_cli``) and checks the exit status, a message naming the
culprit, no traceback, and that the user's files (the study folder, the
data) are byte-identical afterwards with no run started.
"""
from __future__ import annotations

import sys

import pytest
from conftest import REPO
from hostile_helpers import make_pairs, snapshot, temp_files

sys.path.insert(0, str(REPO / "scripts"))
import ablate  # noqa: E402

import train  # noqa: E402
from utils.errors import run_cli  # noqa: E402

STUDY = """name: s
base: base.yml
overrides: {{OPTIM.NUM_EPOCHS: 5, MODEL.ARGS.base_channels: 8, MODEL.ARGS.num_res: 1}}
variants:
  a: {{about: first}}
  b:
    overrides: {{MODEL.ARGS.use_fdsm: false}}
{extra}"""


def _cli(main, argv, capsys) -> tuple[int, str]:
    """Run ``main(argv)`` as its ``__main__`` does; returns (exit status, stderr)."""
    with pytest.raises(SystemExit) as stop:
        run_cli(lambda: main(argv))
    code = stop.value.code
    out = capsys.readouterr()
    text = out.err + (code if isinstance(code, str) else "")
    assert "Traceback" not in text + out.out
    return (1 if isinstance(code, str) else code or 0), text


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_pairs(tmp_path / "data", n=3)
    (tmp_path / "base.yml").write_text(f"TRAINING:\n  TRAIN_DIR: {tmp_path / 'data'}\n  VAL_DIR: {tmp_path / 'data'}\n")
    (tmp_path / "study.yml").write_text(STUDY.format(extra=""))
    return tmp_path


def _intact(root, before):
    assert snapshot(root) == before and not temp_files(root)
    assert not list(root.rglob("model_*.pth")) and not list(root.rglob("train.log"))


@pytest.mark.parametrize("text, culprit", [
    ("name: s\nvariants: [unclosed\n", "not a valid YAML study file"),
    ("- a list\n- not a study\n", "must hold sections"),
    ("name: s\nbase: base.yml\nvariants:\n  a:\n    overrides: {OPTIM.LR_INITAL: 1}\n",
     "variant a: unknown config key 'OPTIM.LR_INITAL'"),
    ("name: s\nbase: base.yml\nvariants:\n  a:\n    overrides: {TRAINING.VAL_SPLIT: 2.5}\n",
     "variant a: TRAINING.VAL_SPLIT must be"),
    ("name: s\nbase: nowhere.yml\nvariants:\n  a: {}\n", "base config nowhere.yml not found"),
    ("name: s\nbase: base.yml\nvariants:\n  a:\n    about: [1, 2]\n", "variant a: about must be text"),
    ("name: s\nbase: base.yml\nvariants:\n  a: {}\n  b:\n    overrides: {MODEL.ARGS.base_channels: -3}\n",
     "variant b: MODEL.NAME / MODEL.ARGS"),
])
def test_a_bad_study_file_starts_nothing(setup, capsys, text, culprit):
    (setup / "study.yml").write_text(text)
    before = snapshot(setup)
    code, err = _cli(ablate.main, ["study.yml"], capsys)
    assert code == 1 and culprit in err, err
    _intact(setup, before)


def test_a_missing_study_file(setup, capsys):
    code, err = _cli(ablate.main, ["no_such_study.yml"], capsys)
    assert code == 1 and "no_such_study.yml" in err


def test_an_unknown_variant_in_only(setup, capsys):
    before = snapshot(setup)
    code, err = _cli(ablate.main, ["study.yml", "--only", "a,zzz"], capsys)
    assert code == 1 and "'zzz'" in err and "its variants: a, b" in err
    _intact(setup, before)


def test_launchers_that_are_not_installed(setup, capsys, monkeypatch):
    before = snapshot(setup)
    monkeypatch.setenv("PATH", str(setup))  # neither sbatch nor srun
    code, err = _cli(ablate.main, ["study.yml", "--launcher", "slurm"], capsys)
    assert code == 1 and "sbatch and srun not found" in err
    monkeypatch.setitem(sys.modules, "submitit", None)
    code, err = _cli(ablate.main, ["study.yml", "--launcher", "slurm"], capsys)
    assert code == 1 and "needs submitit" in err and "pip install submitit" in err
    _intact(setup, before)


def test_a_folder_holding_another_study_is_left_alone(setup, capsys):
    from training.study import load_study, record

    record(load_study(setup / "study.yml", setup / "out"))
    other = setup / "other.yml"
    other.write_text(STUDY.format(extra="").replace("name: s", "name: t"))
    (setup / "out" / "s").rename(setup / "out" / "t")  # t's folder now holds study s
    before = snapshot(setup)
    code, err = _cli(ablate.main, [str(other), "--out", "out"], capsys)
    assert code == 1 and "already holds the study 's'" in err
    _intact(setup, before)


def test_a_non_study_folder_in_the_way(setup, capsys):
    (setup / "out" / "s").mkdir(parents=True)
    (setup / "out" / "s" / "notes.txt").write_text("mine")
    before = snapshot(setup)
    code, err = _cli(ablate.main, ["study.yml", "--out", "out"], capsys)
    assert code == 1 and "holds no study" in err
    _intact(setup, before)


def test_a_changed_variant_of_a_started_study(setup, capsys):
    from training.study import load_study, record

    study = load_study(setup / "study.yml", setup / "out")
    record(study)
    run = study.run_dir(study.variants[1])
    run.mkdir(parents=True)
    (run / "history.json").write_text('{"input": null, "epochs": []}')
    (setup / "study.yml").write_text(STUDY.format(extra="").replace("use_fdsm: false", "use_mpsrm: false"))
    before = snapshot(setup)
    code, err = _cli(ablate.main, ["study.yml", "--out", "out"], capsys)
    assert code == 1 and "variant b of" in err and "MODEL.ARGS.use_fdsm" in err
    _intact(setup, before)


@pytest.mark.parametrize("value, culprit", [
    ("3", "holds back 3 of the 3 pairs"),
    ("50", "holds back 50 of the 3 pairs"),
    ("0.999", "holds back 3 of the 3 pairs"),
    ("2.5", "TRAINING.VAL_SPLIT must be a whole number"),
    ("-1", "TRAINING.VAL_SPLIT must be"),
])
def test_a_val_split_leaving_nothing_to_train_on(setup, capsys, value, culprit):
    before = snapshot(setup)
    argv = ["--device", "cpu", "--opts", "MODEL.ARGS.base_channels", "8", "MODEL.ARGS.num_res", "1",
            "TRAINING.TRAIN_DIR", str(setup / "data"), "TRAINING.VAL_DIR", "", "TRAINING.SAVE_DIR",
            str(setup / "ck"), "TRAINING.VAL_SPLIT", value, "TRAINING.NUM_WORKERS", "0"]
    rc, err = _cli(train.main, argv, capsys)
    assert rc == 1 and culprit in err
    assert snapshot(setup) == before and not (setup / "ck").exists()  # no session folder, lock or log
