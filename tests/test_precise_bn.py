"""TRAINING.PRECISE_BN: BatchNorm statistics recomputed on fixed training patches before each validation.

Resume with it is exact: ``test_train.py::test_sigterm_saves_and_resume_is_exact``.
"""
from __future__ import annotations

import logging

import pytest
import torch
from conftest import REPO
from test_train import _opts, pairs  # noqa: F401 - the tiny dataset fixture

import train
from models import build_model
from training.batchnorm import has_batchnorm, precise_bn_batches, recompute_bn
from training.config import load_config
from training.trainer import Trainer
from utils.checkpoint import load_checkpoint
from utils.distributed import DistInfo

RUN = ["OPTIM.NUM_EPOCHS", "2", "TRAINING.DETERMINISTIC", "True", "TRAINING.VAL_AFTER_EVERY", "1"]


def _checkpoint(save_dir):
    return load_checkpoint(save_dir / "Deraining" / "DMSR" / "model_latest.pth")


@pytest.fixture(scope="module")
def runs(pairs, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("precise_bn")
    plain = train.main(_opts(pairs, root / "plain", *RUN))
    precise = train.main(_opts(pairs, root / "precise", *RUN, "TRAINING.PRECISE_BN", "4"))
    torch.use_deterministic_algorithms(False)
    return root, plain, precise


def test_training_follows_the_same_course_only_the_statistics_change(runs):
    root, plain, precise = runs
    assert [h["loss"] for h in precise["history"]] == [h["loss"] for h in plain["history"]]
    a, b = _checkpoint(root / "plain")["model"], _checkpoint(root / "precise")["model"]
    stats = {k for k in a if k.endswith(("running_mean", "running_var"))}
    assert stats and all(torch.equal(a[k], b[k]) for k in a if k not in stats and "num_batches" not in k)
    assert all(not torch.equal(a[k], b[k]) for k in stats)
    assert [h["val_psnr"] for h in precise["history"]] != [h["val_psnr"] for h in plain["history"]]


def test_the_saved_statistics_are_the_means_over_the_fixed_patches_and_validated(runs, pairs):  # noqa: F811
    root, _, precise = runs
    cfg = load_config(None, _opts(pairs, root / "again", *RUN, "TRAINING.PRECISE_BN", "4")[3:])
    trainer = Trainer(cfg, torch.device("cpu"), DistInfo())
    batches = precise_bn_batches(trainer.train_set, 4, 64)
    assert [b.shape for b in batches] == [(4, 3, 64, 64)]
    again = precise_bn_batches(trainer.train_set, 4, 64)
    assert torch.equal(batches[0], again[0])  # the same patches at every validation
    saved = _checkpoint(root / "precise")["model"]
    trainer.model.load_state_dict(saved)
    for m in trainer.model.modules():  # scramble them: recomputing must not depend on what was there
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.fill_(3.0)
            m.running_var.fill_(7.0)
    recompute_bn(trainer.model, batches, torch.device("cpu"))
    mine = trainer.model.state_dict()
    for k in saved:
        if k.endswith(("running_mean", "running_var")):
            torch.testing.assert_close(mine[k], saved[k], rtol=1e-5, atol=1e-6)
    trainer.model.load_state_dict(saved)
    assert trainer.validate() == pytest.approx(precise["history"][-1]["val_psnr"], abs=1e-9)
    assert trainer.model.training  # recomputing and validating leave the mode as it was


def test_a_model_without_batchnorm_is_told_so(pairs, tmp_path, caplog):  # noqa: F811
    assert has_batchnorm(build_model("DMSR", base_channels=8, num_res=1))
    assert not has_batchnorm(build_model("PReNet"))
    with caplog.at_level(logging.WARNING):
        out = train.main(["--config", str(REPO / "configs" / "prenet.yml")] + _opts(
            pairs, tmp_path, "MODEL.ARGS.stages", "2", "OPTIM.NUM_EPOCHS", "2", "TRAINING.MAX_STEPS_PER_EPOCH", "1",
            "TRAINING.PRECISE_BN", "4", dmsr=False))
    assert len(out["history"]) == 2
    assert "TRAINING.PRECISE_BN: PReNet has no BatchNorm layer" in caplog.text
