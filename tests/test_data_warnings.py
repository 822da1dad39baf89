"""The training start-up warnings about data (data.provenance.warn_about_data, called once by the trainer)."""
from __future__ import annotations

import logging
import shutil
import time

import cv2
from conftest import require_shared
from hostile_helpers import make_pairs, rgb, train_args, write_png

import train
from data import build_dataset
from data.provenance import TEST_SET_WARNING, warn_about_data
from data.split import split_pairs
from data.store import build_store


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "data.provenance"]


def _datasets(train_dir, val_dir=None, val_split=0, store=None):
    """(train set, validation set) as the trainer builds them (a split: both from train_dir)."""
    train_set = build_dataset("paired_train", root=train_dir, patch_size=32, store=store, verify=False)
    if val_split:
        kept, held = split_pairs(train_set.pairs, val_split)
        return (build_dataset("paired_train", root=train_dir, patch_size=32, store=store, pairs=kept),
                build_dataset("paired_val", root=train_dir, store=store, pairs=held))
    return train_set, (build_dataset("paired_val", root=val_dir, verify=False) if val_dir else None)


def test_train_py_warns_once_when_validating_on_a_known_test_set(tmp_path, caplog):
    rain100h = require_shared("data", "Rain100H")
    train_dir = make_pairs(tmp_path / "train", n=2, size=(64, 64))
    caplog.set_level(logging.INFO)
    train.main(train_args(train_dir, rain100h, tmp_path / "runs", "TRAINING.MAX_STEPS_PER_EPOCH", "1"))
    found = [m for m in _warnings(caplog) if TEST_SET_WARNING in m]
    assert found == [f"TRAINING.VAL_DIR {rain100h} is Rain100H 480x320, a known test set (exact): {TEST_SET_WARNING}. "
                     "Validate on pairs held back from the training set instead (TRAINING.VAL_SPLIT 0.05)"]
    assert len(_warnings(caplog)) == 1  # nothing else: the synthetic training pairs share no scene with it
    log = (tmp_path / "runs" / "Deraining" / "DMSR" / "train.log").read_text()
    assert log.count(TEST_SET_WARNING) == 1


def test_validation_pairs_whose_clean_image_is_in_training(tmp_path, caplog):
    """Each clean image twice in the folder (once re-saved as JPEG): a split holds back pairs whose twin trains."""
    root = make_pairs(tmp_path / "train", n=4, size=(64, 96))
    for i in range(4):  # pairs 1xx: the same scenes as 00x, the clean image once exact, once as JPEG
        clean = (root / "target" / f"00{i}.png").read_bytes()
        if i % 2:
            (root / "target" / f"10{i}.png").write_bytes(clean)
        else:
            img = cv2.imread(str(root / "target" / f"00{i}.png"))
            cv2.imwrite(str(root / "target" / f"10{i}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 80])
        write_png(root / "input" / f"10{i}.png", rgb(64, 96, seed=40 + i))
    caplog.set_level(logging.INFO)
    train_set, val_set = _datasets(root, val_split=3)
    held = {p.name for p in val_set.pairs}
    twins = {name for name in held if ({"00" + name[-1], "10" + name[-1]} - {name}).pop() not in held}
    warn_about_data(train_set, val_set, None)
    (message,) = _warnings(caplog)
    assert message.startswith(f"{len(twins)} of the 3 validation pairs (the pairs TRAINING.VAL_SPLIT holds back from "
                              f"{root}) have their clean image also in the training data")
    assert twins  # 3 of 8 pairs held back: at least one has its twin in training
    assert "validation scores are then optimistic" in message


def test_training_data_holding_test_files_and_stores(tmp_path, caplog):
    rain100h = require_shared("data", "Rain100H")
    root = make_pairs(tmp_path / "train", n=8, size=(64, 96))
    for name in ("001.png", "002.png"):  # two Rain100H test pairs slipped into the training folder
        for role in ("input", "target"):
            shutil.copy(rain100h / role / name, root / role / f"h{name}")
    caplog.set_level(logging.INFO)
    warn_about_data(*_datasets(root), None)
    assert _warnings(caplog) == [f"TRAINING.TRAIN_DIR {root} holds 4 file(s) of the test set Rain100H 480x320: "
                                 "scores on that set will be optimistic"]
    # The same from a pre-decoded store (the files are found through the store's root).
    caplog.clear()
    build_store(root, tmp_path / "train.store")
    warn_about_data(*_datasets(root, store=tmp_path / "train.store"), None)
    assert len(_warnings(caplog)) == 1 and "holds 4 file(s)" in _warnings(caplog)[0]
    # Training on the test set itself.
    caplog.clear()
    val_dir = make_pairs(tmp_path / "val", n=2, size=(64, 96), seed=30)
    warn_about_data(*_datasets(rain100h, val_dir=val_dir), str(val_dir))
    assert _warnings(caplog) == [f"TRAINING.TRAIN_DIR {rain100h} is Rain100H 480x320, a known test set (exact): "
                                 "a model trained on a test set cannot be scored on it"]


def test_real_training_set_raintrainl(caplog):
    """RainTrainL against Rain100H: a known test set, no shared scene; RainTrainL's own split: nothing to say."""
    raintrainl, rain100h = require_shared("data", "RainTrainL"), require_shared("data", "Rain100H")
    caplog.set_level(logging.INFO)
    started = time.process_time()
    warn_about_data(*_datasets(raintrainl, val_dir=rain100h), str(rain100h))
    seconds = time.process_time() - started
    assert len(_warnings(caplog)) == 1 and TEST_SET_WARNING in _warnings(caplog)[0]
    assert seconds < 20, f"{seconds:.1f} s of CPU"  # measured 1.6 s: 300 clean images decoded
    caplog.clear()
    warn_about_data(*_datasets(raintrainl, val_split=20), None)
    assert _warnings(caplog) == []


def test_no_validation_set_checks_the_training_data_only(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    warn_about_data(build_dataset("paired_train", root=make_pairs(tmp_path / "t", n=2), patch_size=32), None, None)
    assert _warnings(caplog) == []
