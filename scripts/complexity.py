"""Print the parameter and multiply-accumulate counts of a registered model.

    python scripts/complexity.py --model DMSR --size 256 256

See :mod:`models.complexity` for what the MAC count includes (FFTs are not counted).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> dict:
    from inference.runner import parse_model_opts
    from models import build_model, model_names
    from models.complexity import count_macs, count_parameters

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
    sys.path.insert(0, str(REPO))  # run as a file: make the project's packages importable
    from utils.errors import run_cli

    run_cli(main)
