"""Training patches per second from one loader worker: the release's loader, ours from PNG files, ours from the store.

    python benchmarks/data_loading.py --root ../shared/data/Rain100H
    python benchmarks/data_loading.py --train-json results/bench/train_cpu.json   # against the step rate

Each path produces what a training sample is: a 64x64 input/target pair of
float tensors cut from the same place, in one of the 8 flip/rotation
variants.  The paths:

* ``release``: a re-creation of the DMSR release's loader (MPRNet style):
  PIL open, convert to RGB, ``to_tensor`` of both whole images, reflect pad
  when smaller than the patch, random crop of the float tensors, then
  flips/rotations of the tensors;
* ``files``: :class:`data.PairedTrainDataset` from the PNG files (OpenCV
  decoding, crop and flip of the uint8 arrays, only the patch converted);
* ``store``: the same dataset reading the pre-decoded store
  (``scripts/build_store.py``, ``TRAINING.STORE``); one is built in a
  temporary folder unless ``--store`` names one.

Each path is timed in this process with one thread (what one DataLoader
worker does), after a warm-up pass over the images so the files and the
store are in the page cache, as they are after the first epoch.  With
``--loader`` each path is also timed through a real ``DataLoader`` with
one worker process and batches of ``--batch`` (collation and transfer
between processes included).  The step rate the loader must feed (images/s
of the training step) comes from ``--step-rate`` or from a JSON file
written by ``benchmarks/train_step.py`` (``--train-json``); the table then
gives the workers each path needs to keep up.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=REPO.parent / "shared" / "data" / "Rain100H",
                   help="dataset folder with input/ and target/ (default: %(default)s)")
    p.add_argument("--store", type=Path, default=None, help="an existing store of --root (default: build one)")
    p.add_argument("--patch", type=int, default=64, help="patch size (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=3.0, help="time spent on each path (default: %(default)s)")
    p.add_argument("--paths", nargs="+", default=["release", "files", "store"], choices=["release", "files", "store"])
    p.add_argument("--loader", action="store_true", help="also time a DataLoader with one worker process")
    p.add_argument("--batch", type=int, default=12, help="batch size for --loader (default: %(default)s)")
    p.add_argument("--step-rate", type=float, default=None, help="images/s the training step consumes")
    p.add_argument("--train-json", type=Path, default=None,
                   help="JSON from benchmarks/train_step.py: its step rates are what the loader must feed")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    return p.parse_args(argv)


class ReleaseStyleDataset:
    """The DMSR release's training loader, re-created for comparison (not used for training).

    Decodes with PIL, converts both whole images to float tensors, pads by
    reflection when an image is smaller than the patch, crops at a random
    place and applies one of 8 flips/rotations to the float patches, using
    Python's ``random`` as the release does.
    """

    def __init__(self, root: Path, patch_size: int):
        from utils.image_io import list_images

        self.inputs = list_images(root / "input")
        self.targets = list_images(root / "target")
        if len(self.inputs) != len(self.targets) or not self.inputs:
            raise ValueError(f"{root}: need as many targets as inputs, got {len(self.inputs)} and {len(self.targets)}")
        self.ps = patch_size

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int):
        import torch
        import torchvision.transforms.functional as TF
        from PIL import Image

        ps = self.ps
        inp = Image.open(self.inputs[index]).convert("RGB")
        tgt = Image.open(self.targets[index]).convert("RGB")
        w, h = tgt.size
        pad_w, pad_h = max(ps - w, 0), max(ps - h, 0)
        if pad_w or pad_h:
            inp = TF.pad(inp, [0, 0, pad_w, pad_h], padding_mode="reflect")
            tgt = TF.pad(tgt, [0, 0, pad_w, pad_h], padding_mode="reflect")
        inp, tgt = TF.to_tensor(inp), TF.to_tensor(tgt)
        hh, ww = tgt.shape[1:]
        y, x = random.randint(0, hh - ps), random.randint(0, ww - ps)
        mode = random.randint(0, 7)
        out = []
        for t in (inp[:, y:y + ps, x:x + ps], tgt[:, y:y + ps, x:x + ps]):
            t = torch.rot90(t, mode % 4, dims=(1, 2))
            out.append(t.flip(2) if mode >= 4 else t)
        return out[0], out[1], self.inputs[index].stem


def patches_per_second(dataset, seconds: float) -> float:
    """Samples fetched per second, cycling through the dataset for about ``seconds`` after a warm-up pass."""
    for i in range(len(dataset)):  # warm-up: page cache
        dataset[i]
    n, start = 0, time.perf_counter()
    while True:
        dataset[n % len(dataset)]
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed


def loader_patches_per_second(dataset, batch: int, seconds: float) -> float:
    """Samples per second out of a DataLoader with one worker process (after its first batch)."""
    from torch.utils.data import DataLoader

    from data.loader import seed_worker

    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=1, worker_init_fn=seed_worker,
                        persistent_workers=True, drop_last=True)
    n, start = 0, None
    while True:
        for inp, _, _ in loader:
            if start is None:
                start = time.perf_counter()  # the worker has started and filled its queue once
                continue
            n += inp.shape[0]
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                return n / elapsed


def step_rates(args: argparse.Namespace) -> dict[str, float]:
    """The training step rates (images/s) the loader must feed, by label."""
    rates = {}
    if args.train_json is not None:
        report = json.loads(args.train_json.read_text())
        device = report.get("machine", {}).get("device", "?")
        for variant, r in report["results"].items():
            rates[f"{variant} step ({device}, batch {report['settings']['batch']})"] = r["images_per_s"]
    if args.step_rate is not None:
        rates["--step-rate"] = args.step_rate
    return rates


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import torch

    from benchmarks.common import emit_report, format_table, machine_info
    from data import PairedTrainDataset
    from data.store import build_store

    results = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker
    random.seed(0)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            store = args.store
            if "store" in args.paths and store is None:
                store = Path(tmp) / "bench.store"
                build_store(args.root, store)
            for label in args.paths:
                if label == "release":
                    dataset = ReleaseStyleDataset(args.root, args.patch)
                else:
                    kwargs = {"root": args.root} if label == "files" else {"store": store}
                    dataset = PairedTrainDataset(patch_size=args.patch, **kwargs)
                entry = {"patches_per_s": patches_per_second(dataset, args.seconds), "pairs": len(dataset)}
                if args.loader:
                    entry["loader_patches_per_s"] = loader_patches_per_second(dataset, args.batch, args.seconds)
                results[label] = entry
    finally:
        torch.set_num_threads(threads)
    if "release" in results:
        for entry in results.values():
            entry["vs_release"] = entry["patches_per_s"] / results["release"]["patches_per_s"]
    rates = step_rates(args)
    headers = ["path", "patches/s (1 worker)", "vs release"]
    if args.loader:
        headers.append(f"DataLoader, 1 worker, batch {args.batch}")
    headers += [f"workers for {k} = {v:.3g} img/s" for k, v in rates.items()]
    rows = []
    for label, entry in results.items():
        row = [label, entry["patches_per_s"], entry.get("vs_release")]
        if args.loader:
            row.append(entry["loader_patches_per_s"])
        entry["workers_needed"] = {k: math.ceil(v / entry["patches_per_s"]) for k, v in rates.items()}
        row += list(entry["workers_needed"].values())
        rows.append(row)
    pairs = next(iter(results.values()))["pairs"] if results else 0
    print(f"data loading: {args.root} ({pairs} pairs), {args.patch}x{args.patch} patches, one thread per worker")
    print(format_table(headers, rows))
    report = {"benchmark": "data_loading", "machine": machine_info("cpu"),
              "settings": {"root": str(args.root), "patch": args.patch, "seconds": args.seconds},
              "step_rates": rates, "results": results}
    return emit_report(report, args.json)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))  # run as a file: make the project's packages importable
    from utils.errors import run_cli

    run_cli(main)
