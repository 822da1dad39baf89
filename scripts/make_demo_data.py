"""Build the demo dataset (synthetic rain over scikit-image's photos) for a quick end-to-end run.

    python scripts/make_demo_data.py                 # -> Datasets/demo/{train,test}/{input,target}
    python scripts/make_demo_data.py --num-train 64 --out /tmp/demo --force

Deterministic for a given seed, a few seconds on one CPU core, and a no-op
when the folder already holds the same build.  See ``data/demo.py``.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "Datasets" / "demo", help="output folder (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="everything random derives from it (default: %(default)s)")
    p.add_argument("--num-train", type=int, default=320, help="training pairs (default: %(default)s)")
    p.add_argument("--patch", type=int, default=128, help="side of the training crops (default: %(default)s)")
    p.add_argument("--preset", default="medium", choices=("light", "medium", "heavy"),
                   help="rain preset (default: %(default)s)")
    p.add_argument("--force", action="store_true",
                   help="rebuild over another demo build (deletes only the files that build wrote)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from data.demo import DemoExistsError, build_demo_dataset

    try:
        build_demo_dataset(args.out, seed=args.seed, num_train=args.num_train, patch=args.patch,
                           preset=args.preset, force=args.force)
    except DemoExistsError as err:
        logging.getLogger("make_demo_data").error("%s", err)
        return 1
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))  # run as a file: make the project's packages importable
    from utils.errors import run_cli

    run_cli(main)
