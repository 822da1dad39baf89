"""Checkpoint loading in every accepted format, and clear errors for bad files."""
from __future__ import annotations

import os
from collections import OrderedDict

import pytest
import torch

from models.dmsr import DMSR
from utils.checkpoint import (
    FORMAT_NAME,
    CheckpointError,
    load_checkpoint,
    load_model_weights,
    save_checkpoint,
)


def _tiny():
    torch.manual_seed(1)
    return DMSR(base_channels=8, num_res=1)


def _fresh_equal(path, reference):
    torch.manual_seed(2)
    other = DMSR(base_channels=8, num_res=1)
    assert not torch.equal(other.feat_extract[0].main[0].weight, reference.feat_extract[0].main[0].weight)
    load_model_weights(other, path)
    for (k, a), (_, b) in zip(reference.state_dict().items(), other.state_dict().items()):
        assert torch.equal(a, b), k
    return other


@pytest.mark.parametrize("prefix", ["", "module."])
def test_authors_training_format(tmp_path, prefix):
    model = _tiny()
    sd = OrderedDict((prefix + k, v) for k, v in model.state_dict().items())
    opt = torch.optim.Adam(model.parameters(), lr=2e-4)
    path = tmp_path / "model_best.pth"
    torch.save({"epoch": 12, "state_dict": sd, "optimizer": opt.state_dict()}, path)
    _fresh_equal(path, model)


def test_bare_state_dict(tmp_path):
    model = _tiny()
    path = tmp_path / "net.pth"
    torch.save(model.state_dict(), path)
    _fresh_equal(path, model)


def test_own_format_round_trip_and_ema(tmp_path):
    model = _tiny()
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in model.state_dict().items()}
    path = tmp_path / "model_latest.pth"
    save_checkpoint({"format": FORMAT_NAME, "version": 1, "model": model.state_dict(), "ema": ema,
                     "model_name": "DMSR", "model_kwargs": {"base_channels": 8, "num_res": 1},
                     "epoch": 3, "best_psnr": 30.5, "config": "MODEL:\n  NAME: DMSR\n"}, path)
    ckpt = _fresh_equal(path, model) and load_checkpoint(path)
    assert ckpt["epoch"] == 3 and ckpt["best_psnr"] == 30.5
    other = DMSR(base_channels=8, num_res=1)
    load_model_weights(other, path, use_ema=True)
    key = "feat_extract.0.main.0.weight"
    assert torch.equal(other.state_dict()[key], ema[key])


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("this is not a checkpoint")
    with pytest.raises(CheckpointError, match="notes.pth"):
        load_model_weights(_tiny(), path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found: .*absent.pth"):
        load_model_weights(_tiny(), tmp_path / "absent.pth")


def test_truncated_file(tmp_path):
    path = tmp_path / "cut.pth"
    torch.save(_tiny().state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pth"):
        load_model_weights(_tiny(), path)


def test_arbitrary_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": _tiny().state_dict(), "extra": os.stat_result((0,) * 10)}, path)
    with pytest.raises(CheckpointError, match="evil.pth"):
        load_model_weights(_tiny(), path)


def test_wrong_model_names_missing_unexpected_and_mis_shaped_keys(tmp_path):
    sd = _tiny().state_dict()
    sd.pop("feat_extract.0.main.0.bias")
    sd["extra.weight"] = torch.zeros(1)
    sd["feat_extract.5.main.0.weight"] = torch.zeros(3, 8, 5, 5)
    path = tmp_path / "other_net.pth"
    torch.save(sd, path)
    model = _tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as info:
        load_model_weights(model, path)
    msg = str(info.value)
    assert "other_net.pth" in msg
    assert "1 missing: feat_extract.0.main.0.bias" in msg
    assert "1 unexpected: extra.weight" in msg
    assert "feat_extract.5.main.0.weight (checkpoint (3, 8, 5, 5), model (3, 8, 3, 3))" in msg
    # nothing was loaded partially
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_width_mismatch_lists_only_first_keys(tmp_path):
    path = tmp_path / "wide.pth"
    torch.save(DMSR(base_channels=16, num_res=1).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"mis-shaped: .*\.\.\. and \d+ more"):
        load_model_weights(_tiny(), path)


def test_atomic_save_keeps_previous_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "model_latest.pth"
    save_checkpoint({"epoch": 1}, path)

    def crash(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="model_latest.pth: No space left"):
        save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["model_latest.pth"]


def test_atomic_writes_get_ordinary_permissions(tmp_path):
    import os
    import stat

    from utils.files import atomic_write

    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "scores.json", "{}\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "scores.json").stat().st_mode) == 0o644  # not mkstemp's 0600
    assert [p.name for p in tmp_path.iterdir()] == ["scores.json"]  # no temporary file left
