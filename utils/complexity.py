"""Parameter and multiply-accumulate counts of a registered model.

    python -m utils.complexity --model DMSR --size 256 256

MACs come from PyTorch's own ``torch.utils.flop_counter.FlopCounterMode``
(MACs = FLOPs / 2).  It counts convolutions, transposed convolutions and
matrix products; it does not count FFTs (``rfft2``/``irfft2``), pooling,
interpolation, normalisation, activations or element-wise arithmetic, so the
figure is the convolutional cost, as papers usually report it.
"""
from __future__ import annotations

import argparse
import json

import torch
from torch.utils.flop_counter import FlopCounterMode

from models import build_model, model_names
from utils.inference import parse_model_opts


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: torch.nn.Module, size: tuple[int, int], batch: int = 1) -> int:
    """Multiply-accumulates of one forward pass on a (batch, 3, H, W) input."""
    model.eval()
    x = torch.zeros(batch, 3, *size)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    return counter.get_total_flops() // 2


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="DMSR", help=f"one of: {', '.join(model_names())}")
    parser.add_argument("--size", type=int, nargs=2, default=[256, 256], metavar=("H", "W"))
    parser.add_argument("--model-opts", nargs="*", default=None, metavar="KEY=VALUE",
                        help="constructor options, e.g. base_channels=32")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args(argv)
    model = build_model(args.model, **parse_model_opts(args.model_opts))
    result = {"model": args.model, "size": list(args.size), "params": count_parameters(model),
              "macs": count_macs(model, tuple(args.size))}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.model} @ {args.size[0]}x{args.size[1]}: {result['params']:,} parameters "
              f"({result['params'] / 1e6:.2f} M), {result['macs'] / 1e9:.2f} G MACs (FFTs not counted)")
    return result


if __name__ == "__main__":
    main()
