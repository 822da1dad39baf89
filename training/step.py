"""The training step and everything it is built from.

This is the one place where the model, optimizer, loss, mixed precision,
EMA, ``torch.compile`` and DistributedDataParallel are set up from a config;
the :class:`~training.trainer.Trainer` and the benchmarks both use
:class:`TrainingStep`, so what is timed is what trains.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from losses import build_loss
from models import build_model, spec_of
from utils.precision import amp_dtype, autocast, compile_model, to_channels_last

from .config import config_to_dict


def adam_kernel_kwargs(fused: bool, device: torch.device | str) -> dict:
    """Adam's multi-tensor switch for ``OPTIM.FUSED``: ``fused`` on CUDA, ``foreach`` elsewhere."""
    if not fused:
        return {}
    return {"fused": True} if torch.device(device).type == "cuda" else {"foreach": True}


def build_training_model(cfg, device: torch.device, sync_bn: bool = False) -> nn.Module:
    """``MODEL.NAME`` with ``MODEL.ARGS`` on ``device``, channels-last with FAST.CHANNELS_LAST."""
    model = build_model(cfg.MODEL.NAME, **config_to_dict(cfg.MODEL.ARGS))
    if not spec_of(model).is_plain:
        raise ValueError(f"{cfg.MODEL.NAME} with these options takes {spec_of(model).channel_order} input in "
                         f"{spec_of(model).input_range}; training uses RGB in [0, 1] - drop the release-convention "
                         "options from MODEL.ARGS")
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


class TrainingStep:
    """Model, optimizer, loss and speed switches of a config, and one optimisation step.

    ``distributed`` wraps the network in DistributedDataParallel (and
    converts BatchNorm to SyncBatchNorm with ``FAST.SYNC_BN``).
    Attributes: ``model`` (the plain module: saved, validated, averaged),
    ``net`` (what the step calls: compiled and/or DDP-wrapped), ``ema``,
    ``optimizer``, ``loss_fn``, ``amp``, ``scaler``.
    """

    def __init__(self, cfg, device: torch.device, distributed: bool = False):
        fast = cfg.FAST
        self.device = device
        if fast.CUDNN_BENCHMARK and not cfg.TRAINING.DETERMINISTIC:
            torch.backends.cudnn.benchmark = True
        self.model = build_training_model(cfg, device, sync_bn=distributed and fast.SYNC_BN).train()
        self.ema = None
        if fast.EMA > 0:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(fast.EMA), use_buffers=True)
        net = compile_model(self.model) if fast.COMPILE else self.model
        if distributed:
            net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
        self.net = net
        self.optimizer = build_optimizer(self.model, cfg.OPTIM, device)
        self.loss_fn = build_loss(cfg.LOSS.NAME, **config_to_dict(cfg.LOSS.ARGS)).to(device)
        self.amp = amp_dtype(fast.AMP)
        self.scaler = torch.amp.GradScaler(device.type, enabled=fast.AMP == "fp16")
        self.channels_last = fast.CHANNELS_LAST
        self.grad_clip = cfg.OPTIM.GRAD_CLIP

    def loss(self, inp: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """Zero the gradients, run the forward pass (under autocast) and the loss (in float32)."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.channels_last:
            inp, tgt = to_channels_last(inp), to_channels_last(tgt)
        with autocast(inp.device, self.amp):
            out = self.net(inp)
        return self.loss_fn(out, tgt)

    def apply(self, loss: torch.Tensor) -> None:
        """Backward, optional gradient clipping, optimizer step, EMA update."""
        self.scaler.scale(loss).backward()
        if self.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema is not None:
            self.ema.update_parameters(self.model)

    def step(self, inp: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        """One optimisation step on a batch; returns the loss (a detached tensor: no sync)."""
        inp = inp.to(self.device, non_blocking=True)
        tgt = tgt.to(self.device, non_blocking=True)
        loss = self.loss(inp, tgt)
        self.apply(loss)
        return loss.detach()
