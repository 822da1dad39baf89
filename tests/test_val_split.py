"""TRAINING.VAL_SPLIT: validation pairs held back from the training folder, fixed, recorded, resumable."""
from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

import train
from data.folders import ImagePair
from data.split import SPLIT_FILE, SplitError, read_listing, split_pairs, split_size
from training.config import ConfigError, load_config
from training.trainer import Trainer
from utils.checkpoint import load_checkpoint
from utils.distributed import DistInfo
from utils.errors import UserError
from utils.image_io import write_image

TINY = ["MODEL.ARGS.base_channels", "8", "MODEL.ARGS.num_res", "1", "OPTIM.BATCH_SIZE", "2",
        "OPTIM.WARMUP_EPOCHS", "1", "TRAINING.NUM_WORKERS", "0", "TRAINING.VAL_PS", "64",
        "TRAINING.TRAIN_PS", "64", "TRAINING.VAL_SAVE_EVERY", "0"]


def _pairs(n: int) -> list[ImagePair]:
    return [ImagePair(f"{i:03d}", Path(f"input/{i:03d}.png"), Path(f"target/{i:03d}.png"), 8, 8) for i in range(n)]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """8 training pairs of 70x76 (smooth clean images, sparse bright 'rain')."""
    root = tmp_path_factory.mktemp("split") / "train"
    rng = np.random.default_rng(1)
    for i in range(8):
        clean = np.kron(rng.integers(0, 256, (8, 9, 3)).astype(np.float32), np.ones((9, 9, 1)))[:70, :76]
        rain = clean + 90 * (rng.random(clean.shape[:2]) < 0.15)[..., None]
        write_image(root / "target" / f"{i:03d}.png", clean.astype(np.uint8))
        write_image(root / "input" / f"{i:03d}.png", np.clip(rain, 0, 255).astype(np.uint8))
    return root


def _opts(train_dir, save_dir, *extra):
    return ["--device", "cpu", "--opts", *TINY, "TRAINING.TRAIN_DIR", str(train_dir), "TRAINING.VAL_DIR", "",
            "TRAINING.SAVE_DIR", str(save_dir), "TRAINING.VAL_SPLIT", "2", *extra]


def test_split_is_fixed_disjoint_and_sized():
    pairs = _pairs(50)
    train_a, val_a = split_pairs(pairs, 5, seed=0)
    train_b, val_b = split_pairs(list(pairs), 5, seed=0)
    assert [p.name for p in val_a] == [p.name for p in val_b]  # the same pairs every time
    assert len(val_a) == 5 and len(train_a) == 45
    assert {p.name for p in train_a} | {p.name for p in val_a} == {p.name for p in pairs}
    assert not {p.name for p in train_a} & {p.name for p in val_a}
    assert [p.name for p in val_a] == sorted(p.name for p in val_a)  # kept in the folder's order
    assert [p.name for p in split_pairs(pairs, 5, seed=1)[1]] != [p.name for p in val_a]  # VAL_SPLIT_SEED matters
    assert split_pairs(pairs, 0, seed=0) == (pairs, [])
    assert [split_size(f, 200) for f in (0.1, 0.001, 0.5, 20, 1)] == [20, 1, 100, 20, 1]


def test_split_does_not_depend_on_the_training_seed(folder, tmp_path):
    a = Trainer(load_config(None, _opts(folder, tmp_path / "a")[3:] + ["TRAINING.SEED", "0"]),
                torch.device("cpu"), DistInfo())
    b = Trainer(load_config(None, _opts(folder, tmp_path / "b")[3:] + ["TRAINING.SEED", "7"]),
                torch.device("cpu"), DistInfo())
    try:
        assert [p.name for p in a.val_set.pairs] == [p.name for p in b.val_set.pairs]
        assert len(a.val_set) == 2 and len(a.train_set) == 6
        assert not {p.name for p in a.val_set.pairs} & {p.name for p in a.train_set.pairs}
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("value", [8, 9, 0.9999])
def test_a_split_that_leaves_nothing_to_train_on_is_refused(value):
    with pytest.raises(SplitError, match="leaving nothing to train on"):
        split_pairs(_pairs(8), value)


@pytest.mark.parametrize("value", ["2.5", "-1", "'ten'", "nan"])
def test_bad_val_split_values_are_config_errors(value):
    with pytest.raises(ConfigError, match="TRAINING.VAL_SPLIT"):
        load_config(None, ["TRAINING.VAL_SPLIT", value])


def test_training_validates_on_the_held_back_pairs_and_records_them(folder, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    summary = train.main(_opts(folder, tmp_path, "OPTIM.NUM_EPOCHS", "2"))
    run = tmp_path / "Deraining" / "DMSR"
    listed = read_listing(run / SPLIT_FILE)
    expected = [p.input.name for p in split_pairs([*_pairs(8)], 2, seed=0)[1]]
    assert listed == expected and len(listed) == 2
    log = (run / "train.log").read_text()
    assert "validation split: 2 of the 8 pairs" in log and "training on the other 6" in log
    # validation PSNR of the rainy input = mean over exactly the listed pairs (whole 64x64 centre crops)
    from data.paired import PairedValDataset
    from metrics.psnr_ssim import tensor_psnr

    val = PairedValDataset(folder, patch_size=64)
    by_name = {val.pairs[i].input.name: val[i] for i in range(len(val))}
    expected_input = np.mean([float(tensor_psnr(by_name[n][0][None], by_name[n][1][None], data_range=1.0)[0])
                              for n in listed])
    assert summary["input_psnr"] == pytest.approx(expected_input, abs=1e-9)
    assert [h["epoch"] for h in summary["history"] if "val_psnr" in h] == [1, 2]


def _stop_after(steps):
    original = Trainer._step
    count = {"n": 0}

    def step(self, inp, tgt):
        out = original(self, inp, tgt)
        count["n"] += 1
        if count["n"] == steps:
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    return step


def test_resume_with_a_split_gives_the_same_weights(folder, tmp_path, monkeypatch):
    extra = ["OPTIM.NUM_EPOCHS", "3", "TRAINING.DETERMINISTIC", "True"]
    try:
        straight = train.main(_opts(folder, tmp_path / "straight", *extra))
        monkeypatch.setattr(Trainer, "_step", _stop_after(4))  # 3 steps an epoch (6 pairs, batch 2): mid-epoch 2
        stopped = train.main(_opts(folder, tmp_path / "resumed", *extra))
        monkeypatch.undo()
        assert stopped["stopped_by"] == "SIGTERM"
        resumed = train.main(["--resume"] + _opts(folder, tmp_path / "resumed", *extra))
    finally:
        torch.use_deterministic_algorithms(False)
    assert resumed["global_step"] == straight["global_step"] == 9
    a = load_checkpoint(tmp_path / "straight" / "Deraining" / "DMSR" / "model_latest.pth")["model"]
    b = load_checkpoint(tmp_path / "resumed" / "Deraining" / "DMSR" / "model_latest.pth")["model"]
    assert max((a[k].double() - b[k].double()).abs().max().item() for k in a) <= 1e-6
    assert [round(h["val_psnr"], 6) for h in resumed["history"]] == \
        [round(h["val_psnr"], 6) for h in straight["history"]]


def test_resume_refuses_a_changed_split(folder, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(folder, data)
    train.main(_opts(data, tmp_path, "OPTIM.NUM_EPOCHS", "1", "OPTIM.WARMUP_EPOCHS", "0"))
    run = tmp_path / "Deraining" / "DMSR"
    before = (run / SPLIT_FILE).read_bytes()
    for sub in ("input", "target"):  # a pair added to the folder changes which pairs are held back
        shutil.copy(data / sub / "000.png", data / sub / "008.png")
    with pytest.raises(UserError, match="validation split differs from the one this run started with"):
        train.main(["--resume"] + _opts(data, tmp_path, "OPTIM.NUM_EPOCHS", "2"))
    assert (run / SPLIT_FILE).read_bytes() == before


def test_val_tile_validates_through_the_window_protocol(folder, tmp_path):
    from inference.windows import forward_tiled
    from metrics.psnr_ssim import tensor_psnr

    cfg = load_config(None, _opts(folder, tmp_path)[3:] + ["TRAINING.VAL_PS", "0", "TRAINING.VAL_TILE", "64"])
    trainer = Trainer(cfg, torch.device("cpu"), DistInfo())
    try:
        psnr, _ = trainer.validate_scores()
        trainer.model.eval()
        with torch.no_grad():
            expected = np.mean([float(tensor_psnr(forward_tiled(trainer.model, x[None], 64).clamp(0, 1), y[None],
                                                  data_range=1.0)[0]) for x, y, _ in trainer.val_set])
        assert trainer.val_set[0][0].shape[-2:] == (70, 76)  # whole images, 4 windows each
        assert psnr == pytest.approx(expected, abs=1e-9)
    finally:
        trainer.close()


@pytest.mark.parametrize("tile", ["40", "32", "-64"])
def test_val_tile_must_suit_the_model(tile):
    with pytest.raises(ConfigError, match="TRAINING.VAL_TILE"):
        load_config(None, ["TRAINING.VAL_TILE", tile])
