"""Learning-rate schedules, all PyTorch's own (no vendored ``warmup-scheduler``).

* ``warmup_cosine`` (DMSR): ``LinearLR`` warm-up over ``WARMUP_EPOCHS``
  (lr0·e/W in epoch e), then ``CosineAnnealingLR`` to ``LR_MIN``, joined by
  ``SequentialLR``, stepped per epoch.  For 300 epochs this is the release's
  per-epoch sequence to 3e-5 relative.
* ``exp_decay`` (MSPFN): lr0·rate^(step/steps) + lr_min, stepped per iteration.
* ``multistep`` (PReNet): ×GAMMA at each epoch in ``MILESTONES``.
"""
from __future__ import annotations

import torch
from torch import nn


class ExpDecayFactor:
    """MSPFN's continuous decay as a LambdaLR factor: (lr0 * rate**(step/steps) + lr_min) / lr0."""

    def __init__(self, lr0: float, rate: float, steps: int, lr_min: float):
        self.lr0, self.rate, self.steps, self.lr_min = lr0, rate, steps, lr_min

    def __call__(self, step: int) -> float:
        return (self.lr0 * self.rate ** (step / self.steps) + self.lr_min) / self.lr0


def build_scheduler(optimizer: torch.optim.Optimizer, optim_cfg) -> tuple[torch.optim.lr_scheduler.LRScheduler, bool]:
    """The schedule of ``OPTIM.SCHEDULER`` and whether it steps per iteration (True) or per epoch (False)."""
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
