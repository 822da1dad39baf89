"""Accuracy of the speed switches: output difference and loss-curve agreement with the plain fp32 path.

    python benchmarks/loss_agreement.py                      # plain vs fast, 200 steps on Datasets/demo
    python benchmarks/loss_agreement.py --variants plain bf16 channels_last efficient_fft --steps 200

Every variant starts from the same seeded weights and trains on the same
batches (the demo dataset of ``scripts/make_demo_data.py``, built when
missing; 64x64 patches) with Adam at a constant learning rate
(``OPTIM.LR_INITIAL``, no warm-up), through the trainer's own step
(:class:`training.trainer.TrainingStep`).  Reported per variant:

* the largest absolute difference of its initial full-resolution output
  from the plain one, on a fixed batch (eval mode): what the switch changes
  in the arithmetic;
* the final loss (mean of the last ``--window`` steps) and its relative
  difference from the plain run's;
* the largest relative gap between the two runs' ``--window``-step moving
  averages over the whole curve.

Variants: ``plain`` (the release's arithmetic), ``fast``
(:func:`training.config.fast_opts` for the device) or one switch on its own
(``efficient_attention``, ``efficient_fft``, ``channels_last``, ``bf16``,
``fp16``, ``foreach_adam``, ``compile``).  Full-size DMSR is slow on a
CPU, so the default model is a reduced DMSR (``--model-opts``).
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SWITCHES = {
    "efficient_attention": ["MODEL.ARGS.efficient_attention", "True"],
    "efficient_fft": ["MODEL.ARGS.efficient_fft", "True"],
    "channels_last": ["FAST.CHANNELS_LAST", "True"],
    "bf16": ["FAST.AMP", "bf16"],
    "fp16": ["FAST.AMP", "fp16"],
    "foreach_adam": ["OPTIM.FUSED", "True"],
    "compile": ["FAST.COMPILE", "True"],
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=REPO / "Datasets" / "demo" / "train",
                   help="training folder (default: %(default)s, built with scripts/make_demo_data.py when missing)")
    p.add_argument("--model", default="DMSR")
    p.add_argument("--model-opts", "--model_opts", nargs="*", default=["base_channels=16", "num_res=16"],
                   metavar="KEY=VALUE", help="model options for every variant (default: %(default)s)")
    p.add_argument("--variants", nargs="+", default=["plain", "fast"],
                   help=f"plain, fast or one of {', '.join(SWITCHES)} (default: plain fast)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--patch", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--window", type=int, default=20, help="steps averaged for the final loss (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
    p.add_argument("--json", default=None, help="also write the figures (and every step's loss) to this JSON file")
    args = p.parse_args(argv)
    unknown = [v for v in args.variants if v not in ("plain", "fast", *SWITCHES)]
    if unknown:
        p.error(f"unknown variant(s) {unknown}; valid: plain, fast, {', '.join(SWITCHES)}")
    if "plain" not in args.variants:
        args.variants.insert(0, "plain")
    if args.steps < args.window:
        p.error("--steps must be at least --window")
    return args


def moving_average(values: list[float], window: int) -> list[float]:
    """Means of ``values[i - window + 1 : i + 1]`` for every full window."""
    return [statistics.fmean(values[i - window + 1:i + 1]) for i in range(window - 1, len(values))]


def run_variant(args: argparse.Namespace, name: str, device) -> dict:
    """Train ``name`` for ``args.steps`` steps; its per-step losses and initial probe output."""
    import torch

    from data import build_dataset, build_train_loader, set_epoch
    from inference.runner import parse_model_opts
    from training.config import fast_opts, load_config
    from training.run_state import seed_everything
    from training.step import TrainingStep
    from utils.precision import autocast, to_channels_last

    switches = [] if name == "plain" else fast_opts(device, args.model) if name == "fast" else SWITCHES[name]
    opts = ["MODEL.NAME", args.model, "OPTIM.BATCH_SIZE", str(args.batch), "OPTIM.LR_INITIAL", str(args.lr),
            "TRAINING.TRAIN_PS", str(args.patch), "TRAINING.SEED", str(args.seed)]
    for key, value in parse_model_opts(args.model_opts).items():
        opts += [f"MODEL.ARGS.{key}", repr(value)]
    cfg = load_config(None, opts + switches)
    seed_everything(args.seed)
    runner = TrainingStep(cfg, device)
    dataset = build_dataset("paired_train", root=args.root, patch_size=args.patch, seed=args.seed)
    loader = build_train_loader(dataset, args.batch, seed=args.seed)

    set_epoch(loader, 0)
    probe = next(iter(loader))[0].to(device)
    runner.net.eval()
    with torch.no_grad(), autocast(device, runner.amp):
        x = to_channels_last(probe) if cfg.FAST.CHANNELS_LAST else probe
        out = runner.net(x)
        probe_out = (out[0] if isinstance(out, (list, tuple)) else out).float().cpu()
    runner.net.train()

    losses, epoch, start = [], 1, time.perf_counter()
    while len(losses) < args.steps:
        set_epoch(loader, epoch)
        for inp, tgt, _ in loader:
            losses.append(runner.step(inp, tgt))
            if len(losses) == args.steps:
                break
        epoch += 1
    losses = [float(v) for v in losses]  # one sync at the end
    return {"switches": switches, "losses": losses, "probe_out": probe_out,
            "seconds_per_step": (time.perf_counter() - start) / args.steps}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from benchmarks.common import format_table, machine_info, write_json
    from inference.runner import resolve_device

    device = resolve_device(args.device)
    if not args.root.is_dir() and args.root == REPO / "Datasets" / "demo" / "train":
        from data.demo import build_demo_dataset

        build_demo_dataset(args.root.parent)
    runs = {name: run_variant(args, name, device) for name in args.variants}
    plain = runs["plain"]
    plain_final = statistics.fmean(plain["losses"][-args.window:])
    plain_ma = moving_average(plain["losses"], args.window)
    results, rows = {}, []
    for name, run in runs.items():
        final = statistics.fmean(run["losses"][-args.window:])
        ma = moving_average(run["losses"], args.window)
        entry = {
            "switches": run["switches"],
            "max_abs_output_diff": float((run["probe_out"] - plain["probe_out"]).abs().max()),
            "final_loss": final,
            "final_loss_rel_diff": abs(final - plain_final) / plain_final,
            "max_moving_average_rel_gap": max(abs(a - b) / b for a, b in zip(ma, plain_ma)),
            "seconds_per_step": run["seconds_per_step"],
            "losses": run["losses"],
        }
        results[name] = entry
        rows.append([name, entry["max_abs_output_diff"], f"{final:.5f}", f"{100 * entry['final_loss_rel_diff']:.2f}%",
                     f"{100 * entry['max_moving_average_rel_gap']:.2f}%", entry["seconds_per_step"]])
    print(f"loss agreement: {args.model} {' '.join(args.model_opts)}, {args.steps} steps, batch {args.batch}, "
          f"{args.patch}x{args.patch}, lr {args.lr:g}, {args.root}, {device}")
    print(format_table(["variant", "max |out - plain| (initial)", f"final loss (mean of last {args.window})",
                        "vs plain", f"max gap of {args.window}-step averages", "s/step"], rows))
    report = {"benchmark": "loss_agreement", "machine": machine_info(device),
              "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "json"},
              "results": results}
    print(json.dumps({**report, "results": {k: {kk: vv for kk, vv in v.items() if kk != "losses"}
                                            for k, v in results.items()}}))
    write_json(args.json, report)
    return report


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))  # run as a file: make the project's packages importable
    from utils.errors import run_cli

    run_cli(main)
