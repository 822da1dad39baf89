"""Training throughput and peak memory: the plain fp32 eager step against the fast path.

    python benchmarks/train_step.py --model DMSR --batch 4 --patch 64 --device cpu
    python benchmarks/train_step.py --device cuda --batch 12 --json results/bench/train_cuda.json

Times the trainer's own step (``training.trainer.compute_loss`` and
``apply_gradients``: forward, DMSR loss, backward, Adam) on random batches
held in host memory and moved to the device each step, as the trainer does.
``plain`` is the default configuration, which computes what the release
computes; ``fast`` adds the switches :func:`training.config.fast_opts` picks for
the device (or ``--fast-opts``).  Each variant runs in its own process
(``--in-process`` to skip that); warm-up steps, which include any
compilation, are not timed.  Prints a table, and the figures as JSON with
``--json``.  Data loading is measured by ``benchmarks/data_loading.py``.
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from benchmarks.common import add_variant_arguments

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_variant_arguments(p)
    p.add_argument("--config", default=None, help="YAML config for the loss and optimizer (default: the built-in DMSR one)")
    p.add_argument("--batch", type=int, default=4, help="batch size (default: %(default)s)")
    p.add_argument("--patch", type=int, default=64, help="patch size (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first, compilation included (default: %(default)s)")
    p.add_argument("--steps", type=int, default=5, help="timed steps (default: %(default)s)")
    return p.parse_args(argv)


def variant_opts(args: argparse.Namespace, variant: str, device) -> tuple[list[str], list[str]]:
    """Config overrides (KEY VALUE ...) common to both variants, and those of ``variant`` itself."""
    from inference.runner import parse_model_opts
    from training.config import fast_opts

    common = ["MODEL.NAME", args.model, "OPTIM.BATCH_SIZE", str(args.batch), "TRAINING.TRAIN_PS", str(args.patch)]
    for key, value in parse_model_opts(args.model_opts).items():
        common += [f"MODEL.ARGS.{key}", repr(value)]
    switches = []
    if variant == "fast":
        switches = list(args.fast_opts) if args.fast_opts else fast_opts(device, args.model)
        if args.compile:
            switches += ["FAST.COMPILE", "True"]
    return common, switches


def measure(args: argparse.Namespace, variant: str) -> dict:
    """Build ``variant`` as the trainer would and time its steps."""
    import torch

    from benchmarks.common import PeakMemory, time_calls
    from inference.runner import resolve_device
    from training.config import load_config
    from training.run_state import seed_everything
    from training.step import TrainingStep

    device = resolve_device(args.device)
    common, switches = variant_opts(args, variant, device)
    cfg = load_config(args.config, common + switches)
    seed_everything(args.seed)
    runner = TrainingStep(cfg, device)

    b, p = cfg.OPTIM.BATCH_SIZE, cfg.TRAINING.TRAIN_PS
    g = torch.Generator().manual_seed(args.seed)
    host = [torch.rand(b, 3, p, p, generator=g), torch.rand(b, 3, p, p, generator=g)]
    if cfg.FAST.PIN_MEMORY and device.type == "cuda":
        host = [t.pin_memory() for t in host]
    losses = []

    def step():
        losses.append(runner.step(*host))

    memory = PeakMemory(device)
    memory.start()  # after building the model: activations, gradients, Adam state, workspaces
    times = time_calls(step, device, args.warmup, args.steps)
    peak = memory.peak_mb()
    mean = statistics.mean(times)
    return {
        "variant": variant,
        "switches": switches,
        "params": sum(q.numel() for q in runner.model.parameters()),
        "step_s_mean": mean,
        "step_s_median": statistics.median(times),
        "step_s_all": times,
        "images_per_s": b / mean,
        "peak_memory_mb": peak,
        "peak_memory_kind": "max_memory_allocated" if device.type == "cuda" else "peak RSS increase",
        "process_peak_rss_mb": PeakMemory.process_peak_rss_mb(),
        "last_loss": float(losses[-1]),
        "finite": bool(all(torch.isfinite(v) for v in losses)),
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.worker:
        print(json.dumps(measure(args, args.worker)))
        return {}
    from benchmarks.common import emit_report, format_table, machine_info, run_isolated
    from inference.runner import resolve_device

    device = resolve_device(args.device)
    child_argv = list(argv if argv is not None else sys.argv[1:])
    results = {}
    for variant in args.variants:
        if args.in_process:
            results[variant] = measure(args, variant)
        else:
            results[variant] = run_isolated(__file__, [*child_argv, "--device", str(device), "--worker", variant])
    report = {
        "benchmark": "train_step",
        "machine": machine_info(device),
        "settings": {"model": args.model, "model_opts": args.model_opts, "batch": args.batch, "patch": args.patch,
                     "warmup": args.warmup, "steps": args.steps, "config": args.config},
        "results": results,
    }
    if "plain" in results and "fast" in results:
        report["speedup"] = results["fast"]["images_per_s"] / results["plain"]["images_per_s"]
    rows = [[v, f"{r['step_s_mean'] * 1000:.0f}", r["images_per_s"], r["peak_memory_mb"], r["last_loss"]]
            for v, r in results.items()]
    print(f"training step: {args.model} {args.model_opts or ''} batch {args.batch}, {args.patch}x{args.patch}, "
          f"{device}, {args.steps} timed steps after {args.warmup}")
    print(format_table(["variant", "ms/step", "images/s", f"peak MB ({results[args.variants[0]]['peak_memory_kind']})",
                        "last loss"], rows))
    if "speedup" in report:
        print(f"fast/plain throughput: {report['speedup']:.2f}x")
    return emit_report(report, args.json)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))  # run as a file: make the project's packages importable
    from utils.errors import run_cli

    run_cli(main)
