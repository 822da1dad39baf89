"""train.py: learning-rate schedule, learning, exact resume, failures, signals, torchrun."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from conftest import REPO, require_shared

import train
from training.config import load_config
from training.schedules import lr_sequence
from training.trainer import Trainer
from utils.checkpoint import load_checkpoint
from utils.distributed import DistInfo
from utils.errors import UserError
from utils.image_io import write_image

TINY = ["MODEL.ARGS.base_channels", "8", "MODEL.ARGS.num_res", "1", "OPTIM.BATCH_SIZE", "2",
        "OPTIM.WARMUP_EPOCHS", "1", "TRAINING.NUM_WORKERS", "0", "TRAINING.VAL_PS", "64",
        "TRAINING.TRAIN_PS", "64", "TRAINING.VAL_SAVE_EVERY", "0"]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """A tiny paired dataset: clean random-smooth images and noisy 'rainy' copies."""
    root = tmp_path_factory.mktemp("pairs")
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 2)):
        for i in range(n):
            clean = rng.integers(0, 256, (8, 9, 3)).astype(np.float32)
            clean = np.kron(clean, np.ones((9, 9, 1)))[:70, :76].astype(np.uint8)
            rain = np.clip(clean + rng.integers(0, 80, clean.shape) * (rng.random(clean.shape[:2]) < 0.2)[..., None],
                           0, 255).astype(np.uint8)
            write_image(root / split / "target" / f"{i:03d}.png", clean)
            write_image(root / split / "input" / f"{i:03d}.png", rain)
    return root


@pytest.fixture
def deterministic():
    yield
    torch.use_deterministic_algorithms(False)


def _opts(pairs, save_dir, *extra, dmsr=True):
    tiny = TINY if dmsr else TINY[4:]  # without the DMSR width options
    return ["--device", "cpu", "--opts", *tiny, "TRAINING.TRAIN_DIR", str(pairs / "train"),
            "TRAINING.VAL_DIR", str(pairs / "val"), "TRAINING.SAVE_DIR", str(save_dir), *extra]


def _weights(save_dir, name="model_latest.pth"):
    return load_checkpoint(save_dir / "Deraining" / "DMSR" / name)["model"]


def test_lr_sequence_matches_release_for_300_epochs():
    release = json.loads(require_shared("reference", "dmsr", "release_lr.json").read_text())["NUM_EPOCHS=300"]
    cfg = load_config(str(REPO / "training.yml"))
    ours = lr_sequence(cfg.OPTIM)
    assert len(ours) == len(release) == 300
    rel = np.abs(np.array(ours) - np.array(release)) / np.array(release)
    assert rel.max() < 1e-4, f"worst epoch {rel.argmax() + 1}: {rel.max():.2e}"


def test_short_runs_follow_the_300_epoch_form():
    """The release jumps to 2.10e-4 at epoch 4 of a 10-epoch run; we keep the intended shape."""
    cfg = load_config(str(REPO / "training.yml"), ["OPTIM.NUM_EPOCHS", "10"])
    lrs = lr_sequence(cfg.OPTIM)
    assert lrs[:4] == pytest.approx([2e-4 / 3, 4e-4 / 3, 2e-4, 2e-4])
    assert max(lrs) <= 2e-4 * (1 + 1e-12)
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:]))
    assert lrs[-1] == pytest.approx(1e-6 + (2e-4 - 1e-6) * (1 + np.cos(np.pi * 6 / 7)) / 2)


def test_mspfn_exponential_decay_per_step():
    cfg = load_config(str(REPO / "configs" / "mspfn.yml"))
    trainer_opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=cfg.OPTIM.LR_INITIAL)
    from training.schedules import build_scheduler

    sched, per_step = build_scheduler(trainer_opt, cfg.OPTIM)
    assert per_step
    for _ in range(40000):
        trainer_opt.step()
        sched.step()
    assert trainer_opt.param_groups[0]["lr"] == pytest.approx(5e-4 * 0.8 ** 2 + 1e-6, rel=1e-9)


def test_a_few_steps_lower_the_loss_on_a_fixed_batch(pairs, tmp_path):
    cfg = load_config(None, _opts(pairs, tmp_path)[3:])
    trainer = Trainer(cfg, torch.device("cpu"), DistInfo())
    inp, tgt, _ = next(iter(trainer.train_loader))
    first = trainer._step(inp, tgt)
    for _ in range(15):
        last = trainer._step(inp, tgt)
    assert last < 0.7 * first


def test_training_improves_validation_and_writes_outputs(pairs, tmp_path):
    summary = train.main(_opts(pairs, tmp_path, "OPTIM.NUM_EPOCHS", "3", "OPTIM.LR_INITIAL", "1e-3"))
    run = tmp_path / "Deraining" / "DMSR"
    assert {"model_latest.pth", "model_best.pth", "config.yaml", "train.log"} <= {p.name for p in run.iterdir()}
    assert any((run / "tensorboard").iterdir())
    text = (run / "config.yaml").read_text()
    assert "# command: " in text and "# git commit: " in text and "base_channels: 8" in text
    assert [h["epoch"] for h in summary["history"]] == [1, 2, 3]
    assert summary["history"][-1]["val_psnr"] > summary["history"][0]["val_psnr"]
    best = load_checkpoint(run / "model_best.pth")
    assert best["epoch"] == summary["best_epoch"] and best["best_psnr"] == summary["best_psnr"]


def _kill_after(trainer_cls, steps):
    """Patch Trainer._step to send SIGTERM to this process after ``steps`` steps."""
    original = trainer_cls._step
    count = {"n": 0}

    def step(self, inp, tgt):
        out = original(self, inp, tgt)
        count["n"] += 1
        if count["n"] == steps:
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    return step


# mid-epoch (with TRAINING.PRECISE_BN, which rewrites the BatchNorm statistics before each validation) and at
# an epoch boundary (without); 3 steps per epoch
@pytest.mark.parametrize("stop_after,precise_bn", [(5, "4"), (6, "0")])
def test_sigterm_saves_and_resume_is_exact(pairs, tmp_path, monkeypatch, deterministic, stop_after, precise_bn):
    extra = ["OPTIM.NUM_EPOCHS", "4", "TRAINING.DETERMINISTIC", "True", "TRAINING.PRECISE_BN", precise_bn]
    straight = train.main(_opts(pairs, tmp_path / "straight", *extra))

    monkeypatch.setattr(Trainer, "_step", _kill_after(Trainer, stop_after))
    stopped = train.main(_opts(pairs, tmp_path / "split", *extra))
    monkeypatch.undo()
    assert stopped["stopped_by"] == "SIGTERM"
    ckpt = load_checkpoint(tmp_path / "split" / "Deraining" / "DMSR" / "model_latest.pth")
    assert (ckpt["epoch"], ckpt["step_in_epoch"]) == ((2, 2) if stop_after == 5 else (2, 0))
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler removed again

    # N/2 epochs + resume + N/2 (stop_after=6), or a pre-empted mid-epoch job (stop_after=5)
    resume = ["--resume"] if stop_after == 6 else []
    resume_opt = [] if resume else ["TRAINING.RESUME", "True"]
    resumed = train.main(resume + _opts(pairs, tmp_path / "split", *extra, *resume_opt))
    assert resumed["last_epoch"] == 4 and resumed["global_step"] == straight["global_step"] == 12
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "split")
    worst = max((a[k].double() - b[k].double()).abs().max().item() for k in a)
    assert worst <= 1e-6
    assert [round(h["val_psnr"], 6) for h in resumed["history"]] == \
        [round(h["val_psnr"], 6) for h in straight["history"]]


def test_bad_config_key_is_named(pairs, tmp_path):
    with pytest.raises(UserError, match="OPTIM.LR_INITAL"):
        train.main(_opts(pairs, tmp_path, "OPTIM.LR_INITAL", "1e-3"))
    cfg = tmp_path / "bad.yml"
    cfg.write_text("TRAINING:\n  TRAIN_PATCH: 64\n")
    with pytest.raises(UserError, match="TRAINING.TRAIN_PATCH"):
        train.main(["--config", str(cfg), "--device", "cpu"])


def test_dataset_errors_name_the_files(pairs, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(pairs / "train", bad)
    (bad / "target" / "004.png").unlink()
    with pytest.raises(UserError, match="without a partner.*004.png"):
        train.main(_opts(pairs, tmp_path / "ck", "TRAINING.TRAIN_DIR", str(bad)))
    shutil.copy(pairs / "train" / "target" / "004.png", bad / "target" / "004.png")
    (bad / "input" / "002.png").write_bytes(b"not a png at all")
    (bad / "target" / "003.png").write_bytes((pairs / "train" / "target" / "003.png").read_bytes()[:200])
    with pytest.raises(UserError) as info:
        train.main(_opts(pairs, tmp_path / "ck", "TRAINING.TRAIN_DIR", str(bad)))
    assert "002.png" in str(info.value) and "003.png" in str(info.value)
    assert not (tmp_path / "ck" / "Deraining" / "DMSR" / "model_latest.pth").exists()


def test_unwritable_save_dir_is_reported(pairs, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the save folder should be")
    with pytest.raises(UserError, match="save folder .*file"):
        train.main(_opts(pairs, blocker))


def test_failed_save_keeps_previous_checkpoint(pairs, tmp_path, monkeypatch):
    train.main(_opts(pairs, tmp_path, "OPTIM.NUM_EPOCHS", "2", "TRAINING.MAX_STEPS_PER_EPOCH", "1"))
    before = _weights(tmp_path)
    real_save = torch.save

    def full_disk(obj, f, *a, **k):
        real_save(obj, f, *a, **k)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(UserError, match="No space left on device"):
        train.main(_opts(pairs, tmp_path, "OPTIM.NUM_EPOCHS", "3", "TRAINING.RESUME", "True"))
    monkeypatch.undo()
    after = _weights(tmp_path)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not [p for p in (tmp_path / "Deraining" / "DMSR").iterdir() if p.name.endswith(".tmp")]


def test_persistent_nan_stops_and_keeps_last_good_checkpoint(pairs, tmp_path, monkeypatch):
    train.main(_opts(pairs, tmp_path, "OPTIM.NUM_EPOCHS", "2", "TRAINING.MAX_STEPS_PER_EPOCH", "1"))
    good = _weights(tmp_path)
    from losses.dmsr import DMSRLoss

    monkeypatch.setattr(DMSRLoss, "forward", lambda self, out, tgt: out[0].mean() * float("nan"))
    with pytest.raises(UserError, match="not finite for 4 steps"):
        train.main(_opts(pairs, tmp_path, "OPTIM.NUM_EPOCHS", "4", "TRAINING.RESUME", "True",
                         "TRAINING.NAN_PATIENCE", "4"))
    after = _weights(tmp_path)
    assert all(torch.equal(good[k], after[k]) for k in good)


def test_torchrun_two_processes_hold_identical_weights(pairs, tmp_path):
    script = tmp_path / "ddp_run.py"
    script.write_text(textwrap.dedent(f"""
        import sys, torch
        sys.path.insert(0, {str(REPO)!r})
        from training.config import load_config
        from utils.distributed import init_distributed, cleanup
        from training.trainer import Trainer
        cfg = load_config(None, {(_opts(pairs, tmp_path / 'ck')[3:] + ['OPTIM.NUM_EPOCHS', '2',
                                  'TRAINING.MAX_STEPS_PER_EPOCH', '1'])!r})
        dist, device = init_distributed("cpu")
        trainer = Trainer(cfg, device, dist)
        summary = trainer.fit()
        torch.save({{"state": trainer.model.state_dict(), "steps": summary["global_step"],
                    "world": dist.world_size}}, {str(tmp_path)!r} + f"/rank{{dist.rank}}.pt")
        cleanup()
    """))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    # --standalone: a rendezvous on a free local port (a fixed one may be taken on a shared machine).
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2 and r0["steps"] == r1["steps"] == 2
    assert all(torch.equal(r0["state"][k], r1["state"][k]) for k in r0["state"])
    saved = load_checkpoint(tmp_path / "ck" / "Deraining" / "DMSR" / "model_latest.pth")["model"]
    assert all(torch.equal(saved[k], r0["state"][k]) for k in saved)  # rank 0 saved, without "module."


@pytest.mark.parametrize("config", ["training.yml", "configs/demo.yml", "configs/mspfn.yml", "configs/prenet.yml"])
def test_shipped_configs_load(config):
    cfg = load_config(str(REPO / config))
    assert cfg.is_frozen() and cfg.MODEL.NAME in ("DMSR", "MSPFN", "PReNet")


@pytest.mark.parametrize("config,opts", [
    ("configs/mspfn.yml", ["MODEL.ARGS.width", "8", "MODEL.ARGS.num_ffm", "1", "MODEL.ARGS.caus", "[1, 1, 1]"]),
    ("configs/prenet.yml", ["MODEL.ARGS.stages", "2"]),
])
def test_other_models_train_through_train_py(pairs, tmp_path, config, opts):
    out = train.main(["--config", str(REPO / config)] + _opts(pairs, tmp_path, "OPTIM.NUM_EPOCHS", "2", *opts,
                                                                  dmsr=False))
    assert [h["epoch"] for h in out["history"]] == [1, 2]
    assert np.isfinite([h["loss"] for h in out["history"]]).all()
    assert np.isfinite(out["best_psnr"])


def test_wrong_model_options_are_a_config_error(pairs, tmp_path):
    with pytest.raises(UserError, match="MODEL.NAME / MODEL.ARGS: .*PReNet.*base_channels"):
        train.main(_opts(pairs, tmp_path, "MODEL.NAME", "PReNet"))
    with pytest.raises(UserError, match="unknown model 'DMRS'.*DMSR"):
        train.main(_opts(pairs, tmp_path, "MODEL.NAME", "DMRS"))


def test_speed_switches_train_and_keep_ema(pairs, tmp_path):
    out = train.main(_opts(pairs, tmp_path, "OPTIM.NUM_EPOCHS", "2", "FAST.AMP", "bf16", "FAST.CHANNELS_LAST", "True",
                           "FAST.EMA", "0.9", "OPTIM.GRAD_CLIP", "0.5", "OPTIM.FUSED", "True",
                           "MODEL.ARGS.efficient_attention", "True"))
    assert np.isfinite([h["loss"] for h in out["history"]]).all()
    ckpt = load_checkpoint(tmp_path / "Deraining" / "DMSR" / "model_latest.pth")
    key = "feat_extract.0.main.0.weight"
    assert ckpt["ema"] is not None and not torch.equal(ckpt["ema"][key], ckpt["model"][key])


def test_fast_flag_turns_on_the_device_preset_and_records_it(pairs, tmp_path):
    out = train.main(["--fast"] + _opts(pairs, tmp_path, "OPTIM.NUM_EPOCHS", "2", "TRAINING.MAX_STEPS_PER_EPOCH", "1",
                                        "FAST.AMP", ""))  # --opts still override the preset (no bf16 here)
    saved = load_config(None, None, freeze=False)
    saved.merge_from_file(str(tmp_path / "Deraining" / "DMSR" / "config.yaml"))
    assert saved.FAST.CHANNELS_LAST and saved.OPTIM.FUSED
    assert saved.MODEL.ARGS.efficient_attention and saved.MODEL.ARGS.efficient_fft  # DMSR's exact fast options
    assert saved.FAST.AMP == ""
    assert "--fast" in (tmp_path / "Deraining" / "DMSR" / "config.yaml").read_text().splitlines()[0]
    assert out["global_step"] == 2


def test_release_keys_nothing_reads_are_accepted_and_dropped(tmp_path, caplog):
    cfg_file = tmp_path / "old.yml"
    cfg_file.write_text("GPU: [0]\nVERBOSE: True\nTRAINING:\n  SAVE_IMAGES: False\n  TRAIN_PS: 128\n")
    cfg = load_config(str(cfg_file))
    assert cfg.TRAINING.TRAIN_PS == 128 and "GPU" not in cfg and "SAVE_IMAGES" not in cfg.TRAINING
    assert sum("nothing here reads" in r.getMessage() for r in caplog.records) == 3
