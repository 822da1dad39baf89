"""The training loop behind ``train.py``: fit, epoch loop, validation, checkpoints, resume.

One :class:`Trainer` runs the :class:`~training.step.TrainingStep` built
from the config over the training loader, steps the schedule
(:mod:`training.schedules`), validates, saves atomic checkpoints and
resumes exactly (mid-epoch included; RNG, sampler position, optimizer,
scheduler, AMP scaler and EMA are restored).  Defaults reproduce the DMSR
release; every speed option is a config switch that is off by default.
"""
from __future__ import annotations

import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from data import build_dataset
from data.folders import DatasetError, ImagePair, scan_pairs
from data.loader import build_train_loader, set_epoch, shutdown_workers
from data.provenance import warn_about_data
from data.split import SPLIT_FILE, check_same_split, split_listing, split_pairs
from data.store import ImageStore
from inference.padding import forward_padded
from inference.windows import forward_tiled
from metrics.psnr_ssim import psnr_y, ssim_y, tensor_psnr
from models import primary_output
from utils.checkpoint import (
    FORMAT_NAME,
    FORMAT_VERSION,
    check_state_dict,
    load_checkpoint,
    save_checkpoint,
    unwrap_model,
)
from utils.distributed import DistInfo, any_true, average_buffers, barrier, broadcast_object
from utils.errors import UserError
from utils.files import atomic_write
from utils.image_io import ImageReadError, tensor_to_uint8
from utils.precision import autocast

from .batchnorm import has_batchnorm, precise_bn_batches, recompute_bn
from .config import config_to_dict
from .progress import EpochProgress
from .run_state import (
    SessionLock,
    StopRequest,
    TrainingError,
    check_optimizer_state,
    check_resume_state,
    check_writable,
    earlier_run,
    loader_error_message,
    rng_state,
    seed_everything,
    set_rng_state,
    write_run_info,
)
from .schedules import build_scheduler
from .step import TrainingStep

log = logging.getLogger("train")
HISTORY_FILE = "history.json"  # per-epoch loss, learning rate, validation scores, time and images (for plots)


def _json_history(history: list[dict], input_record: dict | None) -> str:
    """``history.json``: ``{"input": scores of the rainy input, "epochs": [per-epoch records]}``.

    Strict JSON: a non-finite number (an epoch without a finite loss) becomes null.
    """
    epochs = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
              for r in history]
    return json.dumps({"input": input_record, "epochs": epochs}, indent=1, allow_nan=False) + "\n"

__all__ = ["Trainer", "TrainingError"]


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
        self.stop = StopRequest()
        self.writer = None
        self._file_handler = None
        self.lock = SessionLock(self.save_dir)
        seed_everything(t.SEED, t.DETERMINISTIC)
        if cfg.FAST.CUDNN_BENCHMARK and not t.DETERMINISTIC:
            torch.backends.cudnn.benchmark = True
        try:
            self._build()  # reads and checks the model, the data and the options; writes nothing
            if self.is_main:
                check_writable(self.save_dir)
                self.lock.acquire()  # before anything is written: one run per session folder
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the session folder (lock, log file); the trainer is not used afterwards."""
        if self._file_handler is not None:
            logging.getLogger().removeHandler(self._file_handler)
            self._file_handler.close()
            self._file_handler = None
        self.lock.release()

    # ------------------------------------------------------------------ setup
    def _setup_logging(self) -> None:
        try:
            handler = logging.FileHandler(self.save_dir / "train.log")
        except OSError as err:
            raise TrainingError(f"cannot write {self.save_dir / 'train.log'}: {err.strerror or err}") from None
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
        self.runner = TrainingStep(cfg, self.device, distributed=self.dist.enabled)
        self.model = self.runner.model  # the plain module: saved, validated, EMA'd
        self.ema = self.runner.ema
        self.net = self.runner.net  # what the training step calls
        self.optimizer = self.runner.optimizer
        self.scaler = self.runner.scaler
        self.amp_dtype = self.runner.amp
        o = cfg.OPTIM
        self.scheduler, self.per_step_schedule = build_scheduler(self.optimizer, o)

        store = t.STORE or None
        train_pairs, self.val_pairs = self._split(store)
        self.train_set = build_dataset("paired_train", root=t.TRAIN_DIR, patch_size=t.TRAIN_PS, seed=t.SEED,
                                       store=store, pairs=train_pairs)
        self.train_loader = build_train_loader(
            self.train_set, o.BATCH_SIZE, seed=t.SEED, num_workers=t.NUM_WORKERS, world_size=self.dist.world_size,
            rank=self.dist.rank, pin_memory=fast.PIN_MEMORY and self.device.type == "cuda",
            persistent_workers=True)
        self.sampler = self.train_loader.sampler
        self.val_set = None
        if self.is_main and self.val_pairs and t.VAL_AFTER_EVERY > 0:
            self.val_set = build_dataset("paired_val", root=t.TRAIN_DIR, patch_size=t.VAL_PS or None, store=store,
                                         pairs=self.val_pairs)
        elif self.is_main and t.VAL_DIR and t.VAL_AFTER_EVERY > 0:
            self.val_set = build_dataset("paired_val", root=t.VAL_DIR, patch_size=t.VAL_PS or None)
        self.steps_per_epoch = len(self.train_loader)
        if t.MAX_STEPS_PER_EPOCH > 0:
            self.steps_per_epoch = min(self.steps_per_epoch, t.MAX_STEPS_PER_EPOCH)

        self.epoch = 1  # the epoch to run next
        self.step_in_epoch = 0  # batches of that epoch already done (resuming mid-epoch)
        self.epoch_losses: list[float] = []  # their losses: the epoch's mean loss counts every sitting
        self.global_step = 0
        self.best_psnr = -math.inf
        self.best_epoch = 0
        self.epochs_since_best = 0
        self.history: list[dict] = []
        self.input_record: dict | None = None  # validation scores of the rainy input
        self.precise_bn: list[torch.Tensor] | None = None  # TRAINING.PRECISE_BN's patches

    def _split(self, store: str | None) -> tuple[list[ImagePair] | None, list[ImagePair]]:
        """``(training pairs, held-back validation pairs)`` per TRAINING.VAL_SPLIT; ``(None, [])`` when it is off."""
        t = self.cfg.TRAINING
        if t.VAL_SPLIT <= 0:
            return None, []
        everything = ImageStore(store).pairs if store else scan_pairs(t.TRAIN_DIR)
        return split_pairs(everything, t.VAL_SPLIT, t.VAL_SPLIT_SEED, source=f"TRAINING.TRAIN_DIR {t.TRAIN_DIR}")

    def _record_split(self, resume: bool) -> str | None:
        """Rank 0: write the held-back file list to the run folder, or check it against the one recorded."""
        t = self.cfg.TRAINING
        path = self.save_dir / SPLIT_FILE
        log.info("validation split: %d of the %d pairs of %s held back (TRAINING.VAL_SPLIT %g, listed in %s), "
                 "training on the other %d", len(self.val_pairs), len(self.val_pairs) + len(self.train_set.pairs),
                 t.TRAIN_DIR, t.VAL_SPLIT, path, len(self.train_set.pairs))
        if t.VAL_DIR:
            log.warning("TRAINING.VAL_DIR %s is not used: validation runs on the pairs TRAINING.VAL_SPLIT holds "
                        "back", t.VAL_DIR)
        try:
            if resume and path.is_file():
                check_same_split(self.val_pairs, path)
                return None
            total = len(self.train_set.pairs) + len(self.val_pairs)
            atomic_write(path, split_listing(self.val_pairs, total, t.VAL_SPLIT, t.VAL_SPLIT_SEED, t.TRAIN_DIR))
        except UserError as err:
            return str(err)
        return None

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
            "epoch_losses": list(self.epoch_losses) if self.step_in_epoch else [],
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
        check_resume_state(ckpt, path)
        check_state_dict(self.model, ckpt["model"], path)
        check_optimizer_state(self.optimizer, self.scheduler, ckpt, path, self.cfg.OPTIM.SCHEDULER)
        if self.ema is not None and isinstance(ckpt.get("ema"), dict):
            check_state_dict(self.ema.module, ckpt["ema"], f"{path} (EMA weights)")
        self.model.load_state_dict(ckpt["model"])
        if self.ema is not None and isinstance(ckpt.get("ema"), dict):
            self.ema.module.load_state_dict(ckpt["ema"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt["scaler"] or not self.scaler.is_enabled():  # a run that starts fp16 scaling begins afresh
            self.scaler.load_state_dict(ckpt["scaler"])
        self.step_in_epoch = int(ckpt.get("step_in_epoch", 0))
        self.epoch_losses = [float(v) for v in ckpt.get("epoch_losses", [])] if self.step_in_epoch else []
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

    # ------------------------------------------------------------------ validation
    def _score(self, out: torch.Tensor, tgt: torch.Tensor) -> float:
        """TRAINING.VAL_METRIC of one (1, 3, H, W) output in [0, 1] against its target."""
        if self.cfg.TRAINING.VAL_METRIC == "psnr_y":
            return psnr_y(tensor_to_uint8(out[0]), tensor_to_uint8(tgt[0]))
        return float(tensor_psnr(out, tgt, data_range=1.0)[0])

    @torch.no_grad()
    def validate(self, model: nn.Module | None = None) -> float:
        """Mean PSNR over the validation set of the full-resolution output clamped to [0, 1]."""
        return self.validate_scores(model)[0]

    @torch.no_grad()
    def validate_scores(self, model: nn.Module | None = None) -> tuple[float, float]:
        """``(PSNR, SSIM)``: means over the validation set of the output clamped to [0, 1].

        PSNR is TRAINING.VAL_METRIC; SSIM is the paper metric's (Y channel, 8-bit output).
        """
        model = model if model is not None else (self.ema.module if self.ema is not None else self.model)
        was_training = model.training
        model.eval()
        psnrs, ssims = [], []
        sample = None
        for inp, tgt, _ in DataLoader(self.val_set, batch_size=1, num_workers=0):
            inp, tgt = inp.to(self.device), tgt.to(self.device)
            with autocast(self.device, self.amp_dtype):
                tile = self.cfg.TRAINING.VAL_TILE
                out = forward_tiled(model, inp, tile) if tile else primary_output(forward_padded(model, inp))
            out = out.float().clamp(0, 1)
            psnrs.append(self._score(out, tgt))
            ssims.append(ssim_y(tensor_to_uint8(out[0]), tensor_to_uint8(tgt[0])))
            if sample is None:
                sample = torch.cat([inp[0], out[0], tgt[0]], dim=2).cpu()
        model.train(was_training)
        if self.writer is not None and sample is not None:
            self.writer.add_image("val/input_output_target", sample, self.epoch)
        return float(np.mean(psnrs)), float(np.mean(ssims))

    @torch.no_grad()
    def input_psnr(self) -> float:
        """The validation score of the rainy input itself (what the model must beat)."""
        return self.input_scores()[0]

    @torch.no_grad()
    def input_scores(self) -> tuple[float, float]:
        """``(PSNR, SSIM)`` of the rainy input itself on the validation set, as :meth:`validate_scores` scores."""
        psnrs, ssims = [], []
        for inp, tgt, _ in DataLoader(self.val_set, batch_size=1):
            psnrs.append(self._score(inp, tgt))
            ssims.append(ssim_y(tensor_to_uint8(inp[0]), tensor_to_uint8(tgt[0])))
        return float(np.mean(psnrs)), float(np.mean(ssims))

    # ------------------------------------------------------------------ training
    def _step(self, inp: torch.Tensor, tgt: torch.Tensor) -> float | None:
        """One optimisation step; returns the loss, or None when it was not finite (step skipped)."""
        loss = self.runner.loss(inp, tgt)
        if any_true(not bool(torch.isfinite(loss.detach())), self.dist, self.device):
            return None
        self.runner.apply(loss)
        return float(loss.detach())

    def fit(self, resume: bool = False) -> dict:
        """Train to NUM_EPOCHS (or early stop / a stop signal); returns a summary.

        A stop signal from the start of fit on saves model_latest.pth (after the next step), so a run
        stopped while it sets up (data checks, the rainy input's scores) still saves and exits 143.
        """
        self.stop.install()
        try:
            summary = self._fit(resume or self.cfg.TRAINING.RESUME)
        finally:
            shutdown_workers(self.train_loader)  # now, whatever ended the run: see shutdown_workers
            self.stop.uninstall()
            if self.writer is not None:
                self.writer.close()
        summary.update(best_psnr=self.best_psnr, best_epoch=self.best_epoch, last_epoch=self.epoch - 1,
                       global_step=self.global_step, history=self.history)
        return summary

    def _fit(self, resume: bool) -> dict:
        cfg, t = self.cfg, self.cfg.TRAINING
        refusal = broadcast_object(earlier_run(self.save_dir, resume) if self.is_main else None, self.dist)
        if refusal:
            raise TrainingError(refusal)
        if self.is_main:  # train.log of this run only: a refused run leaves an earlier run's log alone
            self._setup_logging()
            warn_about_data(self.train_set, self.val_set, None if self.val_pairs else t.VAL_DIR)
        if self.val_pairs:
            problem = broadcast_object(self._record_split(resume) if self.is_main else None, self.dist)
            if problem:
                raise TrainingError(problem)
        if resume:
            if not self.resume() and self.is_main:
                log.warning("--resume: no model_latest.pth in %s; starting from scratch", self.save_dir)
        summary = {"save_dir": str(self.save_dir), "stopped_by": None}
        if self.is_main:
            write_run_info(self.save_dir / "config.yaml", self.cfg.dump(), self.argv)
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.save_dir / "tensorboard"), purge_step=self.global_step)
        if self.val_set is not None:
            summary["input_psnr"], summary["input_ssim"] = self.input_scores()
            self.input_record = {"val_psnr": summary["input_psnr"], "val_ssim": summary["input_ssim"]}
            log.info("validation PSNR of the rainy input itself: %.2f dB (%s, %d images), SSIM %.4f",
                     summary["input_psnr"], t.VAL_METRIC, len(self.val_set), summary["input_ssim"])
        if t.PRECISE_BN > 0 and not has_batchnorm(self.model):
            log.warning("TRAINING.PRECISE_BN: %s has no BatchNorm layer; nothing to recompute", cfg.MODEL.NAME)
        elif t.PRECISE_BN > 0 and t.VAL_AFTER_EVERY > 0:  # (never used without validation epochs)
            self.precise_bn = precise_bn_batches(self.train_set, t.PRECISE_BN, t.TRAIN_PS)
            log.info("BatchNorm statistics are recomputed on %d training patches before each validation "
                     "(TRAINING.PRECISE_BN)", sum(len(b) for b in self.precise_bn))
        log.info("training %s: %d epochs x %d steps, batch %d, %d process(es), device %s, save dir %s",
                 cfg.MODEL.NAME, cfg.OPTIM.NUM_EPOCHS, self.steps_per_epoch, cfg.OPTIM.BATCH_SIZE,
                 self.dist.world_size, self.device, self.save_dir)
        self._loop(summary)
        return summary

    def _batches(self):
        """The training loader's batches; an image that fails to load (in a worker too) is a named error."""
        try:
            yield from self.train_loader
        except (ImageReadError, DatasetError) as err:
            raise TrainingError(
                f"a training image could not be loaded: {loader_error_message(err)} (it passed the start-up "
                f"check: was it changed since?). The last good checkpoint is {self.save_dir / 'model_latest.pth'}"
            ) from None

    def _loop(self, summary: dict) -> None:
        cfg, t = self.cfg, self.cfg.TRAINING
        nan_run = 0
        while self.epoch <= cfg.OPTIM.NUM_EPOCHS:
            epoch = self.epoch
            set_epoch(self.train_loader, epoch)
            self.sampler.skip = self.step_in_epoch * cfg.OPTIM.BATCH_SIZE
            self.net.train()
            if not self.step_in_epoch:  # a resumed epoch keeps the losses of its earlier sitting
                self.epoch_losses = []
            losses = self.epoch_losses
            started, first_step = time.time(), self.step_in_epoch
            bar = EpochProgress(epoch, cfg.OPTIM.NUM_EPOCHS, self.steps_per_epoch, self.step_in_epoch,
                                cfg.OPTIM.BATCH_SIZE * self.dist.world_size, cfg.OPTIM.NUM_EPOCHS - epoch,
                                enabled=self.is_main, every=t.LOG_EVERY)
            for inp, tgt, _ in self._batches():
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
                bar.update(loss, lr)
                if self.writer is not None and loss is not None and self.global_step % t.LOG_EVERY == 0:
                    self.writer.add_scalar("train/loss", loss, self.global_step)
                    self.writer.add_scalar("train/lr", lr, self.global_step)
                if any_true(self.stop.requested, self.dist, self.device):
                    break
            bar.close()
            if any_true(self.stop.requested, self.dist, self.device):
                if self.step_in_epoch >= self.steps_per_epoch:
                    self._end_epoch(epoch, losses, started, self._images(first_step))
                elif self.dist.enabled and any(b.is_floating_point() for b in self.model.buffers()):
                    average_buffers(self.model, self.dist)  # every rank and the checkpoint hold the same statistics
                    if self.is_main:
                        log.warning("stopped mid-epoch: BatchNorm statistics averaged over the %d ranks before "
                                    "saving, so the resumed run can differ slightly from an uninterrupted one",
                                    self.dist.world_size)
                if self.is_main:
                    path = self.save("model_latest.pth")
                    log.warning("received %s: saved %s (epoch %d, step %d); resume with --resume",
                                self.stop.signal_name or "a stop request", path, epoch, self.step_in_epoch)
                barrier(self.dist)
                summary["stopped_by"] = self.stop.signal_name or "signal"
                return
            if self._end_epoch(epoch, losses, started, self._images(first_step)):
                summary["stopped_by"] = "early_stopping"
                return

    def _images(self, first_step: int) -> int:
        """Training images processed by all ranks in the steps since ``first_step`` of this epoch."""
        return (self.step_in_epoch - first_step) * self.cfg.OPTIM.BATCH_SIZE * self.dist.world_size

    def _validation_epoch(self, epoch: int) -> bool:
        """Whether ``epoch`` ends with a validation (TRAINING.VAL_AFTER_EVERY; 0 = never)."""
        every = self.cfg.TRAINING.VAL_AFTER_EVERY
        return every > 0 and epoch % every == 0

    def _end_epoch(self, epoch: int, losses: list[float], started: float, images: int) -> bool:
        """Schedule, validate, save; True when early stopping ends the run.

        ``images``: training images (patches) this process group saw in the epoch's steps run since
        ``started`` (after a mid-epoch resume, only the steps of this sitting).
        """
        if not self.per_step_schedule:
            self.scheduler.step()
        average_buffers(self.model, self.dist)
        if self.precise_bn and self._validation_epoch(epoch):  # on every rank: the same patches, the same result
            for model in [self.model] + ([self.ema.module] if self.ema is not None else []):
                recompute_bn(model, self.precise_bn, self.device, self.cfg.FAST.CHANNELS_LAST)
        self.epoch = epoch + 1
        self.step_in_epoch = 0
        record = {"epoch": epoch, "loss": float(np.mean(losses)) if losses else float("nan"),
                  "lr": self.optimizer.param_groups[0]["lr"], "time_s": round(time.time() - started, 2),
                  "images": images}
        failure = None
        try:
            stop_early = self._finish_epoch(epoch, losses, record) if self.is_main else False
        except UserError as err:  # a failed save, NaN weights, an unreadable validation image
            failure, stop_early = err, False
        # Every rank learns rank 0's decision, so an error there stops all ranks instead of leaving them waiting.
        stop_early, message = broadcast_object((stop_early, str(failure) if failure else None), self.dist)
        if failure is not None:
            raise failure
        if message is not None:
            raise TrainingError(f"rank 0 stopped the run: {message}")
        return bool(stop_early)

    def _finish_epoch(self, epoch: int, losses: list[float], record: dict) -> bool:
        """Rank 0's end of an epoch: validate, log, save; True when early stopping ends the run."""
        t = self.cfg.TRAINING
        stop_early = False
        if self.val_set is not None and self._validation_epoch(epoch):
            score, record["val_ssim"] = self.validate_scores()
            record["val_psnr"] = score
            if score > self.best_psnr:
                self.best_psnr, self.best_epoch, self.epochs_since_best = score, epoch, 0
            else:
                self.epochs_since_best += t.VAL_AFTER_EVERY
            if self.writer is not None:
                self.writer.add_scalar("val/psnr", score, epoch)
                self.writer.add_scalar("val/ssim", record["val_ssim"], epoch)
            log.info("epoch %d: loss %.4f, val PSNR %.2f dB, SSIM %.4f (best %.2f dB at epoch %d), %.1fs",
                     epoch, record["loss"], score, record["val_ssim"], self.best_psnr, self.best_epoch,
                     record["time_s"])
        else:
            log.info("epoch %d: loss %.4f, %.1fs", epoch, record["loss"], record["time_s"])
        if self.writer is not None:
            self.writer.add_scalar("train/epoch_loss", record["loss"], epoch)
        self.history.append(record)
        if not losses:
            log.warning("epoch %d had no finite loss: checkpoints not updated (last good: %s)",
                        epoch, self.save_dir / "model_latest.pth")
            return False
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
        atomic_write(self.save_dir / HISTORY_FILE, _json_history(self.history, self.input_record))
        patience = t.EARLY_STOP_PATIENCE
        if patience > 0 and self.val_set is not None and self.epochs_since_best >= patience:
            log.info("early stopping: no better validation score for %d epochs (best %.2f dB at epoch %d)",
                     self.epochs_since_best, self.best_psnr, self.best_epoch)
            stop_early = True
        return stop_early

