"""The training loop behind ``train.py``.

One :class:`Trainer` wires the registered model, loss and dataset to Adam and
PyTorch's own schedulers, validates, saves atomic checkpoints and resumes
exactly.  Defaults reproduce the DMSR release (``spec/PROTOCOL.md``); every
speed option (AMP, channels_last, torch.compile, EMA, fused Adam) is a config
switch that is off by default.
"""
from __future__ import annotations

import logging
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from data import build_dataset
from data.loader import build_train_loader, set_epoch
from losses import build_loss
from models import build_model, primary_output
from utils.checkpoint import (
    FORMAT_NAME,
    FORMAT_VERSION,
    check_state_dict,
    load_checkpoint,
    save_checkpoint,
    unwrap_model,
)
from utils.config import config_to_dict
from utils.distributed import DistInfo, any_true, average_buffers, barrier, broadcast_object
from utils.fast import adam_kernel_kwargs, amp_dtype, autocast, compile_model, to_channels_last
from utils.image_io import tensor_to_uint8
from utils.metrics import psnr_y, tensor_psnr
from utils.padding import forward_padded

log = logging.getLogger("train")
REPO = Path(__file__).resolve().parents[1]


class TrainingError(RuntimeError):
    """Training cannot go on (persistent NaN loss, unwritable save folder, ...)."""


# --------------------------------------------------------------------------- schedules
class ExpDecayFactor:
    """MSPFN's continuous decay as a LambdaLR factor: (lr0 * rate**(step/steps) + lr_min) / lr0."""

    def __init__(self, lr0: float, rate: float, steps: int, lr_min: float):
        self.lr0, self.rate, self.steps, self.lr_min = lr0, rate, steps, lr_min

    def __call__(self, step: int) -> float:
        return (self.lr0 * self.rate ** (step / self.steps) + self.lr_min) / self.lr0


def build_scheduler(optimizer: torch.optim.Optimizer, optim_cfg) -> tuple[torch.optim.lr_scheduler.LRScheduler, bool]:
    """The learning-rate schedule and whether it steps per iteration (True) or per epoch (False).

    ``warmup_cosine`` (DMSR): linear warm-up over WARMUP_EPOCHS (lr0*e/W in epoch e),
    then cosine annealing to LR_MIN over the remaining epochs; for 300 epochs
    this is the release's sequence (``release_lr.json``) to 3e-5 relative.
    """
    if optim_cfg.SCHEDULER == "exp_decay":
        factor = ExpDecayFactor(optim_cfg.LR_INITIAL, optim_cfg.DECAY_RATE, optim_cfg.DECAY_STEPS, optim_cfg.LR_MIN)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor), True
    if optim_cfg.SCHEDULER == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, list(optim_cfg.MILESTONES), optim_cfg.GAMMA), False
    warm = optim_cfg.WARMUP_EPOCHS
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=optim_cfg.NUM_EPOCHS - warm, eta_min=optim_cfg.LR_MIN)
    if warm <= 0:
        return cosine, False
    # LinearLR must be built first: each scheduler sets the optimizer's lr when created.
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"]
    linear = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1.0 / warm, end_factor=1.0,
                                               total_iters=max(warm - 1, 1))
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [linear, cosine], milestones=[warm]), False


def lr_sequence(optim_cfg) -> list[float]:
    """Learning rate in effect during each epoch 1..NUM_EPOCHS (per-epoch schedules)."""
    param = nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([param], lr=optim_cfg.LR_INITIAL)
    sched, per_step = build_scheduler(opt, optim_cfg)
    if per_step:
        raise ValueError("lr_sequence is for per-epoch schedules")
    out = []
    for _ in range(optim_cfg.NUM_EPOCHS):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


# --------------------------------------------------------------------------- the step
def build_training_model(cfg, device: torch.device, sync_bn: bool = False) -> nn.Module:
    """``MODEL.NAME`` with ``MODEL.ARGS`` on ``device``, channels-last with FAST.CHANNELS_LAST."""
    model = build_model(cfg.MODEL.NAME, **config_to_dict(cfg.MODEL.ARGS))
    if sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if cfg.FAST.CHANNELS_LAST:
        model = to_channels_last(model)
    return model


def build_optimizer(model: nn.Module, optim_cfg, device: torch.device) -> torch.optim.Adam:
    """Adam over the trainable parameters, as configured in ``OPTIM`` (fused/foreach with OPTIM.FUSED)."""
    o = optim_cfg
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.Adam(params, lr=o.LR_INITIAL, betas=(o.BETA1, o.BETA2), eps=o.EPS,
                            weight_decay=o.WEIGHT_DECAY, **adam_kernel_kwargs(o.FUSED, device))


def compute_loss(net: nn.Module, loss_fn: nn.Module, inp: torch.Tensor, tgt: torch.Tensor,
                 amp: torch.dtype | None = None, channels_last: bool = False) -> torch.Tensor:
    """The forward pass (under autocast with ``amp``) and the loss (the losses run in float32)."""
    if channels_last:
        inp, tgt = to_channels_last(inp), to_channels_last(tgt)
    with autocast(inp.device, amp):
        out = net(inp)
    return loss_fn(out, tgt)


def apply_gradients(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                    grad_clip: float = 0.0, params=None) -> None:
    """Backward, optional gradient clipping (max norm ``grad_clip`` over ``params``), optimizer step."""
    scaler.scale(loss).backward()
    if grad_clip > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    scaler.step(optimizer)
    scaler.update()


class TrainingStep:
    """The training step of a config on its own: model, optimizer, loss and speed switches, as the Trainer builds them.

    For benchmarks and checks that time or compare steps without data
    loading, checkpoints or schedules; ``step(inp, tgt)`` runs one
    optimisation step and returns the loss (a detached tensor: no sync).
    """

    def __init__(self, cfg, device: torch.device):
        fast = cfg.FAST
        self.device = device
        if fast.CUDNN_BENCHMARK and not cfg.TRAINING.DETERMINISTIC:
            torch.backends.cudnn.benchmark = True
        self.model = build_training_model(cfg, device).train()
        self.net = compile_model(self.model) if fast.COMPILE else self.model
        self.optimizer = build_optimizer(self.model, cfg.OPTIM, device)
        self.loss_fn = build_loss(cfg.LOSS.NAME, **config_to_dict(cfg.LOSS.ARGS)).to(device)
        self.amp = amp_dtype(fast.AMP)
        self.scaler = torch.amp.GradScaler(device.type, enabled=fast.AMP == "fp16")
        self.channels_last = fast.CHANNELS_LAST
        self.grad_clip = cfg.OPTIM.GRAD_CLIP

    def step(self, inp: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        inp = inp.to(self.device, non_blocking=True)
        tgt = tgt.to(self.device, non_blocking=True)
        self.optimizer.zero_grad(set_to_none=True)
        loss = compute_loss(self.net, self.loss_fn, inp, tgt, self.amp, self.channels_last)
        apply_gradients(loss, self.optimizer, self.scaler, self.grad_clip, self.model.parameters())
        return loss.detach()


# --------------------------------------------------------------------------- helpers
def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if out.returncode != 0:
        return "unknown"
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].copy()), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def check_writable(folder: Path) -> None:
    """Fail at start-up, naming the folder, when checkpoints could not be written there."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write_test_{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        raise TrainingError(f"cannot write to the save folder {folder}: {err.strerror or err}") from None


class _StopRequest:
    """SIGTERM/SIGINT handler: ask the loop to save model_latest.pth and stop at the next step."""

    def __init__(self):
        self.signal_name = None
        self._previous = {}

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum, frame):
        if self.signal_name is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        self.signal_name = signal.Signals(signum).name

    @property
    def requested(self) -> bool:
        return self.signal_name is not None


# --------------------------------------------------------------------------- trainer
class Trainer:
    """Train one model per the frozen config ``cfg`` on ``device`` (one process of ``dist``)."""

    def __init__(self, cfg, device: torch.device, dist: DistInfo, argv: list[str] | None = None):
        self.cfg = cfg
        self.device = device
        self.dist = dist
        self.argv = list(argv) if argv is not None else sys.argv[1:]
        t = cfg.TRAINING
        self.save_dir = Path(t.SAVE_DIR) / cfg.MODEL.MODE / cfg.MODEL.SESSION
        self.is_main = dist.is_main
        self.stop = _StopRequest()
        self.writer = None
        seed_everything(t.SEED, t.DETERMINISTIC)
        if cfg.FAST.CUDNN_BENCHMARK and not t.DETERMINISTIC:
            torch.backends.cudnn.benchmark = True
        if self.is_main:
            check_writable(self.save_dir)
            self._setup_logging()
        self._build()

    # ------------------------------------------------------------------ setup
    def _setup_logging(self) -> None:
        handler = logging.FileHandler(self.save_dir / "train.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        handler.set_name("train-file")
        root = logging.getLogger()
        for h in list(root.handlers):
            if h.get_name() == "train-file":
                root.removeHandler(h)
        root.addHandler(handler)
        self._file_handler = handler

    def _build(self) -> None:
        cfg, t, fast = self.cfg, self.cfg.TRAINING, self.cfg.FAST
        self.model_kwargs = config_to_dict(cfg.MODEL.ARGS)
        model = build_training_model(cfg, self.device, sync_bn=self.dist.enabled and fast.SYNC_BN)
        self.model = model  # the plain module: saved, validated, EMA'd
        self.ema = None
        if fast.EMA > 0:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(fast.EMA), use_buffers=True)
        net = model
        if fast.COMPILE:
            net = compile_model(net)
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            net = DistributedDataParallel(net, device_ids=ids)
        self.net = net  # what the training step calls

        o = cfg.OPTIM
        self.optimizer = build_optimizer(model, o, self.device)
        self.scheduler, self.per_step_schedule = build_scheduler(self.optimizer, o)
        self.loss_fn = build_loss(cfg.LOSS.NAME, **config_to_dict(cfg.LOSS.ARGS)).to(self.device)
        self.amp_dtype = amp_dtype(fast.AMP)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=fast.AMP == "fp16")

        store = t.STORE or None
        self.train_set = build_dataset("paired_train", root=t.TRAIN_DIR, patch_size=t.TRAIN_PS, seed=t.SEED,
                                       store=store)
        self.train_loader = build_train_loader(
            self.train_set, o.BATCH_SIZE, seed=t.SEED, num_workers=t.NUM_WORKERS, world_size=self.dist.world_size,
            rank=self.dist.rank, pin_memory=fast.PIN_MEMORY and self.device.type == "cuda",
            persistent_workers=True)
        self.sampler = self.train_loader.sampler
        self.val_set = None
        if self.is_main and t.VAL_DIR and t.VAL_AFTER_EVERY > 0:
            self.val_set = build_dataset("paired_val", root=t.VAL_DIR, patch_size=t.VAL_PS or None)
        self.steps_per_epoch = len(self.train_loader)
        if t.MAX_STEPS_PER_EPOCH > 0:
            self.steps_per_epoch = min(self.steps_per_epoch, t.MAX_STEPS_PER_EPOCH)

        self.epoch = 1  # the epoch to run next
        self.step_in_epoch = 0  # batches of that epoch already done (resuming mid-epoch)
        self.global_step = 0
        self.best_psnr = -math.inf
        self.best_epoch = 0
        self.epochs_since_best = 0
        self.history: list[dict] = []

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "model_name": self.cfg.MODEL.NAME,
            "model_kwargs": self.model_kwargs,
            "model": unwrap_model(self.model).state_dict(),
            "ema": self.ema.module.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch - 1 if self.step_in_epoch == 0 else self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "best_psnr": self.best_psnr,
            "best_epoch": self.best_epoch,
            "epochs_since_best": self.epochs_since_best,
            "history": self.history,
            "rng": rng_state(),
            "config": self.cfg.dump(),
        }

    def save(self, name: str, state: dict | None = None) -> Path:
        path = self.save_dir / name
        try:
            save_checkpoint(state if state is not None else self.state_dict(), path)
        except OSError as err:
            raise TrainingError(f"{err} - the previous {name} (if any) is intact") from None
        return path

    def resume(self) -> bool:
        """Continue from ``model_latest.pth`` of this session; False when there is none."""
        path = self.save_dir / "model_latest.pth"
        if not path.is_file():
            return False
        ckpt = load_checkpoint(path, map_location=self.device)
        if ckpt.get("format") != FORMAT_NAME:
            raise TrainingError(f"{path}: not a checkpoint written by train.py; cannot resume from it")
        if ckpt.get("model_name") != self.cfg.MODEL.NAME:
            raise TrainingError(f"{path}: holds {ckpt.get('model_name')}, but MODEL.NAME is {self.cfg.MODEL.NAME}")
        check_state_dict(self.model, ckpt["model"], path)
        self.model.load_state_dict(ckpt["model"])
        if self.ema is not None and ckpt.get("ema") is not None:
            self.ema.module.load_state_dict(ckpt["ema"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.step_in_epoch = int(ckpt.get("step_in_epoch", 0))
        self.epoch = int(ckpt["epoch"]) + (0 if self.step_in_epoch else 1)
        self.global_step = int(ckpt["global_step"])
        self.best_psnr = float(ckpt["best_psnr"])
        self.best_epoch = int(ckpt["best_epoch"])
        self.epochs_since_best = int(ckpt["epochs_since_best"])
        self.history = list(ckpt.get("history", []))
        set_rng_state(ckpt["rng"])
        log.info("resumed from %s: next epoch %d (step %d), lr %.3g", path, self.epoch, self.step_in_epoch,
                 self.optimizer.param_groups[0]["lr"])
        return True

    def _write_run_info(self) -> None:
        header = (f"# command: {' '.join([Path(sys.argv[0]).name] + self.argv)}\n"
                  f"# git commit: {_git_commit()}\n"
                  f"# written: {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        tmp = self.save_dir / ".config.yaml.tmp"
        tmp.write_text(header + self.cfg.dump())
        os.replace(tmp, self.save_dir / "config.yaml")

    # ------------------------------------------------------------------ validation
    def _score(self, out: torch.Tensor, tgt: torch.Tensor) -> float:
        """TRAINING.VAL_METRIC of one (1, 3, H, W) output in [0, 1] against its target."""
        if self.cfg.TRAINING.VAL_METRIC == "psnr_y":
            return psnr_y(tensor_to_uint8(out[0]), tensor_to_uint8(tgt[0]))
        return float(tensor_psnr(out, tgt, data_range=1.0)[0])

    @torch.no_grad()
    def validate(self, model: nn.Module | None = None) -> float:
        """Mean PSNR over the validation set of the full-resolution output clamped to [0, 1]."""
        model = model if model is not None else (self.ema.module if self.ema is not None else self.model)
        was_training = model.training
        model.eval()
        scores = []
        sample = None
        for inp, tgt, _ in DataLoader(self.val_set, batch_size=1, num_workers=0):
            inp, tgt = inp.to(self.device), tgt.to(self.device)
            with autocast(self.device, self.amp_dtype):
                out = primary_output(forward_padded(model, inp))
            out = out.float().clamp(0, 1)
            scores.append(self._score(out, tgt))
            if sample is None:
                sample = torch.cat([inp[0], out[0], tgt[0]], dim=2).cpu()
        model.train(was_training)
        if self.writer is not None and sample is not None:
            self.writer.add_image("val/input_output_target", sample, self.epoch)
        return float(np.mean(scores))

    @torch.no_grad()
    def input_psnr(self) -> float:
        """The validation score of the rainy input itself (what the model must beat)."""
        return float(np.mean([self._score(inp, tgt) for inp, tgt, _ in DataLoader(self.val_set, batch_size=1)]))

    # ------------------------------------------------------------------ training
    def _step(self, inp: torch.Tensor, tgt: torch.Tensor) -> float | None:
        """One optimisation step; returns the loss, or None when it was not finite (step skipped)."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = compute_loss(self.net, self.loss_fn, inp, tgt, self.amp_dtype, self.cfg.FAST.CHANNELS_LAST)
        if any_true(not bool(torch.isfinite(loss.detach())), self.dist, self.device):
            return None
        apply_gradients(loss, self.optimizer, self.scaler, self.cfg.OPTIM.GRAD_CLIP, self.model.parameters())
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return float(loss.detach())

    def fit(self, resume: bool = False) -> dict:
        """Train to NUM_EPOCHS (or early stop / a stop signal); returns a summary."""
        cfg, t = self.cfg, self.cfg.TRAINING
        if resume or t.RESUME:
            if not self.resume() and self.is_main:
                log.warning("--resume: no model_latest.pth in %s; starting from scratch", self.save_dir)
        if self.is_main:
            self._write_run_info()
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.save_dir / "tensorboard"), purge_step=self.global_step)
        summary = {"save_dir": str(self.save_dir), "stopped_by": None}
        if self.val_set is not None:
            summary["input_psnr"] = self.input_psnr()
            log.info("validation PSNR of the rainy input itself: %.2f dB (%s, %d images)",
                     summary["input_psnr"], t.VAL_METRIC, len(self.val_set))
        log.info("training %s: %d epochs x %d steps, batch %d, %d process(es), device %s, save dir %s",
                 cfg.MODEL.NAME, cfg.OPTIM.NUM_EPOCHS, self.steps_per_epoch, cfg.OPTIM.BATCH_SIZE,
                 self.dist.world_size, self.device, self.save_dir)
        self.stop.install()
        try:
            self._loop(summary)
        finally:
            self.stop.uninstall()
            if self.writer is not None:
                self.writer.close()
        summary.update(best_psnr=self.best_psnr, best_epoch=self.best_epoch, last_epoch=self.epoch - 1,
                       global_step=self.global_step, history=self.history)
        return summary

    def _loop(self, summary: dict) -> None:
        cfg, t = self.cfg, self.cfg.TRAINING
        nan_run = 0
        show_bar = self.is_main and sys.stderr.isatty()
        while self.epoch <= cfg.OPTIM.NUM_EPOCHS:
            epoch = self.epoch
            set_epoch(self.train_loader, epoch)
            self.sampler.skip = self.step_in_epoch * cfg.OPTIM.BATCH_SIZE
            self.net.train()
            losses = []
            started = time.time()
            bar = tqdm(total=self.steps_per_epoch, initial=self.step_in_epoch, disable=not show_bar,
                       desc=f"epoch {epoch}/{cfg.OPTIM.NUM_EPOCHS}", leave=False, dynamic_ncols=True)
            for inp, tgt, _ in self.train_loader:
                if self.step_in_epoch >= self.steps_per_epoch:
                    break
                inp = inp.to(self.device, non_blocking=True)
                tgt = tgt.to(self.device, non_blocking=True)
                loss = self._step(inp, tgt)
                self.step_in_epoch += 1
                self.global_step += 1
                if self.per_step_schedule:
                    self.scheduler.step()
                if loss is None:
                    nan_run += 1
                    log.warning("non-finite loss at epoch %d step %d: step skipped (%d in a row)",
                                epoch, self.step_in_epoch, nan_run)
                    if nan_run >= t.NAN_PATIENCE:
                        raise TrainingError(
                            f"the loss was not finite for {nan_run} steps in a row (epoch {epoch}); stopping. "
                            f"The last good checkpoint is {self.save_dir / 'model_latest.pth'} "
                            "(lower OPTIM.LR_INITIAL, set OPTIM.GRAD_CLIP, or turn off FAST.AMP)")
                else:
                    nan_run = 0
                    losses.append(loss)
                lr = self.optimizer.param_groups[0]["lr"]
                bar.set_postfix(loss=f"{loss if loss is not None else float('nan'):.4f}", lr=f"{lr:.2e}")
                bar.update()
                if self.writer is not None and loss is not None and self.global_step % t.LOG_EVERY == 0:
                    self.writer.add_scalar("train/loss", loss, self.global_step)
                    self.writer.add_scalar("train/lr", lr, self.global_step)
                if any_true(self.stop.requested, self.dist, self.device):
                    break
            bar.close()
            if any_true(self.stop.requested, self.dist, self.device):
                if self.step_in_epoch >= self.steps_per_epoch:
                    self._end_epoch(epoch, losses, started)
                if self.is_main:
                    path = self.save("model_latest.pth")
                    log.warning("received %s: saved %s (epoch %d, step %d); resume with --resume",
                                self.stop.signal_name or "a stop request", path, epoch, self.step_in_epoch)
                barrier(self.dist)
                summary["stopped_by"] = self.stop.signal_name or "signal"
                return
            if self._end_epoch(epoch, losses, started):
                summary["stopped_by"] = "early_stopping"
                return

    def _end_epoch(self, epoch: int, losses: list[float], started: float) -> bool:
        """Schedule, validate, save; True when early stopping ends the run."""
        t = self.cfg.TRAINING
        if not self.per_step_schedule:
            self.scheduler.step()
        average_buffers(self.model, self.dist)
        self.epoch = epoch + 1
        self.step_in_epoch = 0
        record = {"epoch": epoch, "loss": float(np.mean(losses)) if losses else float("nan"),
                  "lr": self.optimizer.param_groups[0]["lr"], "time_s": round(time.time() - started, 2)}
        stop_early = False
        if self.is_main:
            if self.val_set is not None and epoch % t.VAL_AFTER_EVERY == 0:
                score = self.validate()
                record["val_psnr"] = score
                if score > self.best_psnr:
                    self.best_psnr, self.best_epoch, self.epochs_since_best = score, epoch, 0
                else:
                    self.epochs_since_best += t.VAL_AFTER_EVERY
                if self.writer is not None:
                    self.writer.add_scalar("val/psnr", score, epoch)
                log.info("epoch %d: loss %.4f, val PSNR %.2f dB (best %.2f dB at epoch %d), %.1fs",
                         epoch, record["loss"], score, self.best_psnr, self.best_epoch, record["time_s"])
            else:
                log.info("epoch %d: loss %.4f, %.1fs", epoch, record["loss"], record["time_s"])
            if self.writer is not None:
                self.writer.add_scalar("train/epoch_loss", record["loss"], epoch)
            self.history.append(record)
            if not losses:
                log.warning("epoch %d had no finite loss: checkpoints not updated (last good: %s)",
                            epoch, self.save_dir / "model_latest.pth")
                return bool(broadcast_object(False, self.dist))
            bad = [k for k, v in self.model.state_dict().items() if v.is_floating_point() and not v.isfinite().all()]
            if bad:
                raise TrainingError(f"the weights hold NaN/inf after epoch {epoch} (e.g. {bad[0]}); stopping. "
                                    f"The last good checkpoint is {self.save_dir / 'model_latest.pth'}")
            state = self.state_dict()
            if record.get("val_psnr") is not None and self.best_epoch == epoch:
                self.save("model_best.pth", state)
            if t.VAL_SAVE_EVERY > 0 and epoch % t.VAL_SAVE_EVERY == 0:
                self.save(f"model_epoch_{epoch}.pth", state)
            self.save("model_latest.pth", state)
            patience = t.EARLY_STOP_PATIENCE
            if patience > 0 and self.val_set is not None and self.epochs_since_best >= patience:
                log.info("early stopping: no better validation score for %d epochs (best %.2f dB at epoch %d)",
                         self.epochs_since_best, self.best_psnr, self.best_epoch)
                stop_early = True
        return bool(broadcast_object(stop_early, self.dist))
