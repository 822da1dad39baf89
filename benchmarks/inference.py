"""Inference latency per image: the release's 128-window protocol and whole-image mode, plain vs fast.

    python benchmarks/inference.py --device cpu
    python benchmarks/inference.py --device cuda --image ../shared/data/Rain100H/input/001.png --json out.json

Times ``inference.windows.restore_tensor`` (what ``test.py`` and ``derain.py`` run)
on one image of ``--height`` x ``--width`` (480x320 by default: Rain100H's
size), with ``--tiles 128`` (the release's windows, all in one batch) and
``--tiles 0`` (the whole image, padded to a multiple of 16).  ``plain`` is
the model as released, in float32; ``fast`` adds the switches of
:func:`training.config.fast_opts` for the device (or ``--fast-opts``): the
model's efficient pixel attention and Fourier unit, channels-last, bf16
autocast where the device has fast bf16, cudnn.benchmark and torch.compile
on CUDA.  Each variant and mode runs in its own process; the first call
(and any compilation) is not timed.  The fast output's largest absolute
difference from the plain output is reported per mode (both clamped to
[0, 1], as saved).
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from benchmarks.common import add_variant_arguments

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_variant_arguments(p)
    p.add_argument("--weights", default=None, help="checkpoint to load (default: the seeded random initialisation)")
    p.add_argument("--image", default=None,
                   help="image to derain, resized (area) to the size below (default: seeded random pixels)")
    p.add_argument("--height", type=int, default=320)
    p.add_argument("--width", type=int, default=480)
    p.add_argument("--tiles", type=int, nargs="+", default=[128, 0],
                   help="window sizes to time; 0 = whole image (default: 128 0)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls per mode (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per mode (default: %(default)s)")
    p.add_argument("--outputs", default=None, help=argparse.SUPPRESS)  # internal: where a worker saves its outputs
    return p.parse_args(argv)


def load_input(args: argparse.Namespace):
    """The (1, 3, H, W) test image in [0, 1]."""
    import cv2
    import torch

    from utils.image_io import read_image, uint8_to_tensor

    if args.image is None:
        g = torch.Generator().manual_seed(args.seed)
        return torch.rand(1, 3, args.height, args.width, generator=g)
    img = read_image(args.image)
    if img.shape[:2] != (args.height, args.width):
        img = cv2.resize(img, (args.width, args.height), interpolation=cv2.INTER_AREA)
    return uint8_to_tensor(img).unsqueeze(0)


def measure(args: argparse.Namespace, variant: str, outputs: Path | None = None) -> dict:
    """Build ``variant`` and time each mode; save the outputs to ``outputs/<tile>.pt`` when given."""
    import torch

    from benchmarks.common import PeakMemory, time_calls
    from inference.runner import load_model, parse_model_opts, resolve_device
    from inference.windows import restore_tensor
    from training.config import fast_opts, load_config
    from utils.precision import amp_dtype, autocast, compile_model, to_channels_last

    device = resolve_device(args.device)
    switches = []
    if variant == "fast":
        switches = list(args.fast_opts) if args.fast_opts else fast_opts(device, args.model)
        if args.compile:
            switches += ["FAST.COMPILE", "True"]
    cfg = load_config(None, switches)
    fast = cfg.FAST
    model_opts = parse_model_opts(args.model_opts)
    model_opts.update({k: v for k, v in cfg.MODEL.ARGS.items()})
    torch.manual_seed(args.seed)
    if args.weights is None:
        from models import build_model

        model = build_model(args.model, **model_opts).to(device).eval()
    else:
        model, _ = load_model(args.model, args.weights, model_opts, device)
    if fast.CUDNN_BENCHMARK:
        torch.backends.cudnn.benchmark = True
    if fast.CHANNELS_LAST:
        model = to_channels_last(model)
    net = model
    if fast.COMPILE:
        net = compile_model(model, dynamic=False)  # forwards pad_multiple etc. to the model
    amp = amp_dtype(fast.AMP)
    x = load_input(args).to(device)
    if fast.CHANNELS_LAST:
        x = to_channels_last(x)

    modes = {}
    for tile in args.tiles:
        result = {}

        def run(tile=tile, result=result):
            with torch.inference_mode(), autocast(device, amp):
                result["out"] = restore_tensor(net, x, tile)

        memory = PeakMemory(device)
        memory.start()
        times = time_calls(run, device, args.warmup, args.repeats)
        modes[str(tile)] = {"latency_s_mean": statistics.mean(times), "latency_s_median": statistics.median(times),
                            "latency_s_all": times, "peak_memory_mb": memory.peak_mb(),
                            "process_peak_rss_mb": PeakMemory.process_peak_rss_mb()}
        if outputs is not None:
            torch.save(result["out"].float().clamp(0, 1).cpu(), outputs / f"{tile}.pt")
    return {"variant": variant, "switches": switches, "modes": modes,
            "peak_memory_kind": "max_memory_allocated" if device.type == "cuda" else "peak RSS increase"}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.worker:
        print(json.dumps(measure(args, args.worker, Path(args.outputs) if args.outputs else None)))
        return {}
    import torch

    from benchmarks.common import emit_report, format_table, machine_info, run_isolated
    from inference.runner import resolve_device

    device = resolve_device(args.device)
    child_argv = list(argv if argv is not None else sys.argv[1:])
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants:
            out_dir = Path(tmp) / variant
            out_dir.mkdir()
            if args.in_process:
                results[variant] = measure(args, variant, out_dir)
                continue
            for tile in args.tiles:  # one process per variant and mode: clean peak-memory figures
                r = run_isolated(__file__, [*child_argv, "--device", str(device), "--tiles", str(tile),
                                            "--worker", variant, "--outputs", str(out_dir)])
                results.setdefault(variant, r)["modes"].update(r["modes"])
        if "plain" in results and "fast" in results:
            for tile in args.tiles:
                a = torch.load(Path(tmp) / "plain" / f"{tile}.pt", weights_only=True)
                b = torch.load(Path(tmp) / "fast" / f"{tile}.pt", weights_only=True)
                mode = results["fast"]["modes"][str(tile)]
                mode["max_abs_diff_vs_plain"] = float((a - b).abs().max())
                mode["speedup"] = results["plain"]["modes"][str(tile)]["latency_s_mean"] / mode["latency_s_mean"]
    report = {
        "benchmark": "inference",
        "machine": machine_info(device),
        "settings": {"model": args.model, "weights": args.weights, "model_opts": args.model_opts,
                     "image": args.image, "height": args.height, "width": args.width, "warmup": args.warmup,
                     "repeats": args.repeats},
        "results": results,
    }
    rows = []
    for tile in args.tiles:
        for variant, r in results.items():
            m = r["modes"][str(tile)]
            rows.append([f"tile {tile}" if tile else "whole image", variant, f"{m['latency_s_mean'] * 1000:.0f}",
                         m["peak_memory_mb"], m.get("speedup"), m.get("max_abs_diff_vs_plain")])
    print(f"inference: {args.model} {args.model_opts or ''} {args.width}x{args.height}, {device}, "
          f"{args.repeats} timed calls after {args.warmup}")
    print(format_table(["mode", "variant", "ms/image", f"peak MB ({results[args.variants[0]]['peak_memory_kind']})",
                        "fast/plain", "max |fast - plain|"], rows))
    return emit_report(report, args.json)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))  # run as a file: make the project's packages importable
    from utils.errors import run_cli

    run_cli(main)
