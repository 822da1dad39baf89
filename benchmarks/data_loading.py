"""Training patches per second: decoding the image files vs reading the pre-decoded store.

    python benchmarks/data_loading.py --root ../shared/data/Rain100H

Times ``PairedTrainDataset[i]`` (64x64 crop, flip/rotation, both tensors) in
one process, which is what one DataLoader worker does, over the images of
``--root`` (a store of them is built in a temporary folder unless ``--store``
names one).  Each path is timed after one warm-up pass over the images, so
the files and the store are in the page cache, as they are after the first
epoch.  Prints one line per path.
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=REPO.parent / "shared" / "data" / "Rain100H",
                   help="dataset folder with input/ and target/ (default: %(default)s)")
    p.add_argument("--store", type=Path, default=None, help="an existing store of --root (default: build one)")
    p.add_argument("--patch", type=int, default=64, help="patch size (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=3.0, help="time spent on each path (default: %(default)s)")
    return p.parse_args(argv)


def patches_per_second(dataset, seconds: float) -> float:
    """Samples fetched per second, cycling through the dataset for about ``seconds``."""
    for i in range(len(dataset)):  # warm-up: page cache
        dataset[i]
    n, start = 0, time.perf_counter()
    while True:
        dataset[n % len(dataset)]
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from data import PairedTrainDataset
    from data.store import build_store

    results = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker
    try:
        with tempfile.TemporaryDirectory() as tmp:
            store = args.store
            if store is None:
                store = Path(tmp) / "bench.store"
                build_store(args.root, store)
            for label, kwargs in (("files", {"root": args.root}), ("store", {"store": store})):
                dataset = PairedTrainDataset(patch_size=args.patch, **kwargs)
                results[label] = patches_per_second(dataset, args.seconds)
                print(f"{label:6s} {results[label]:9.1f} patches/s  "
                      f"({len(dataset.pairs)} pairs, {args.patch}x{args.patch}, one process)")
    finally:
        torch.set_num_threads(threads)
    return results


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))  # run as a file: make the project's packages importable
    main()
