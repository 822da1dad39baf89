"""Decode a training folder once into a memory-mapped store, for training without PNG decoding.

    python scripts/build_store.py --root Datasets/Synthetic_Rain_Datasets/train --out Datasets/train.store

then train with the store (``TRAINING.STORE`` in the config, ``store=`` of the
datasets).  The store takes 6 bytes a pixel pair (0.92 MB per 480x320 pair,
about 13 GB for Rain13K) and must be rebuilt when the folder changes (the
datasets check the file names and sizes).  See ``data/store.py``.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from utils.errors import positive_int

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, required=True, help="dataset folder holding input/ and target/")
    p.add_argument("--out", type=Path, required=True, help="store file to write")
    p.add_argument("--workers", type=positive_int, default=None, help="decoding threads (default: up to 8)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from data.store import build_store

    build_store(args.root, args.out, workers=args.workers)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))  # run as a file: make the project's packages importable
    from utils.errors import run_cli

    run_cli(main)
