"""Derain the test sets with a trained model, save the results, and score them.

    python test.py --model DMSR --weights checkpoints/DMSR/model_best.pth \\
        --input_dir Datasets/Synthetic_Rain_Datasets/test --result_dir results

writes ``results/DMSR/<dataset>/<input stem>.png`` for every set found
(Test100 Rain100H Rain100L Test2800 Test1200 by default) and, for the sets
that have a ``target`` folder, prints and saves the Y-channel PSNR/SSIM
table (``results/DMSR/scores.json`` and ``.csv``).  ``--input_dir`` may also
be a plain folder of images.  ``--tile`` picks the protocol: the model's
default (128-pixel windows for DMSR, as the authors' release) or 0 for the
whole image padded to the model's multiple.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import NamedTuple

from tqdm import tqdm

from utils.image_io import list_images, read_image, write_image
from utils.inference import (
    add_model_arguments,
    derain_image,
    load_model,
    parse_model_opts,
    resolve_device,
)
from utils.pairing import PairingError, pair_files
from utils.scoring import (
    STANDARD_DATASETS,
    format_table,
    make_report,
    score_arrays,
    summarize,
    write_report_csv,
    write_report_json,
)
from utils.tiling import check_tile

log = logging.getLogger("test")


class SetFiles(NamedTuple):
    name: str
    inputs: list[Path]
    targets: list[Path] | None  # aligned with inputs; None when the set has no targets


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(p)
    p.add_argument("--input_dir", "--input-dir", default="Datasets/Synthetic_Rain_Datasets/test",
                   help="root holding <dataset>/input (and <dataset>/target), or a plain folder of images")
    p.add_argument("--datasets", nargs="+", default=None,
                   help=f"sets under --input_dir (default: {' '.join(STANDARD_DATASETS)}; missing ones are skipped)")
    p.add_argument("--result_dir", "--result-dir", default="results", help="outputs go to RESULT_DIR/<model>/<dataset>/")
    p.add_argument("--quantize", choices=("round", "truncate"), default="round",
                   help="8-bit conversion of the outputs: round (DMSR protocol, default) or truncate "
                        "(PReNet's release, np.uint8(255 * x))")
    p.add_argument("--no-score", "--no_score", action="store_true", help="only write the derained images")
    p.add_argument("--json", help="score table as JSON (default: RESULT_DIR/<model>/scores.json)")
    p.add_argument("--csv", "--save-csv", dest="csv", help="score table as CSV (default: RESULT_DIR/<model>/scores.csv)")
    return p


def _check_output_names(name: str, inputs: list[Path]) -> None:
    seen: dict[str, Path] = {}
    for path in inputs:
        if path.stem in seen:
            raise ValueError(
                f"{name}: {seen[path.stem].name} and {path.name} would both be saved as {path.stem}.png"
            )
        seen[path.stem] = path


def _make_set(name: str, input_dir: Path, target_dir: Path | None, score: bool) -> SetFiles:
    inputs = list_images(input_dir)
    if not inputs:
        raise FileNotFoundError(f"no images in {input_dir}")
    _check_output_names(name, inputs)
    if not score or target_dir is None or not target_dir.is_dir():
        if score:
            log.info("%s: no target folder, results will not be scored", name)
        return SetFiles(name, inputs, None)
    pairs = pair_files(input_dir, target_dir)
    return SetFiles(name, [a for a, _ in pairs], [b for _, b in pairs])


def find_test_sets(input_dir: Path, datasets: list[str] | None, score: bool) -> list[SetFiles]:
    """The test sets to run: ``<input_dir>/<name>/input`` for each name, or ``input_dir`` itself."""
    if not input_dir.is_dir():
        raise FileNotFoundError(f"--input_dir {input_dir} is not a folder")
    if list_images(input_dir):  # a plain folder of images
        if datasets:
            log.warning("%s is a folder of images; --datasets %s ignored", input_dir, " ".join(datasets))
        if input_dir.name == "input":
            return [_make_set(input_dir.parent.name, input_dir, input_dir.parent / "target", score)]
        return [_make_set(input_dir.name, input_dir, None, score)]
    sets = []
    for name in datasets or STANDARD_DATASETS:
        folder = input_dir / name / "input"
        if not folder.is_dir():
            log.warning("skipping %s: %s not found", name, folder)
            continue
        sets.append(_make_set(name, folder, input_dir / name / "target", score))
    if not sets:
        looked = ", ".join(str(input_dir / n / "input") for n in datasets or STANDARD_DATASETS)
        raise FileNotFoundError(f"no test set found under {input_dir} (looked for {looked})")
    return sets


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    device = resolve_device(args.device)
    sets = find_test_sets(Path(args.input_dir), args.datasets, score=not args.no_score)
    model, name = load_model(args.model, args.weights, parse_model_opts(args.model_opts), device, args.ema,
                             fast=args.fast)
    out_root = Path(args.result_dir) / name
    tile = args.tile if args.tile is not None else model.default_tile
    check_tile(model, tile)
    log.info("%s on %s, %s", name, device, f"{tile}x{tile} windows" if tile else "whole images")

    summaries = {}
    for test_set in sets:
        out_dir = out_root / test_set.name
        scores = []
        targets = test_set.targets or [None] * len(test_set.inputs)
        jobs = list(zip(test_set.inputs, targets))
        for src, tgt in tqdm(jobs, desc=test_set.name, unit="img", disable=not sys.stderr.isatty()):
            result = derain_image(model, read_image(src), device, tile, args.max_batch, args.quantize, amp=args.amp)
            write_image(out_dir / f"{src.stem}.png", result)
            if tgt is not None:
                scores.append(score_arrays(result, read_image(tgt), str(src), str(tgt)))
        log.info("%s: %d images written to %s", test_set.name, len(test_set.inputs), out_dir)
        if scores:
            summaries[test_set.name] = summarize(scores)

    if summaries:
        report = make_report(summaries)
        print(format_table(report, title=f"{name}: Y-channel PSNR (dB) / SSIM"))
        json_path = Path(args.json) if args.json else out_root / "scores.json"
        csv_path = Path(args.csv) if args.csv else out_root / "scores.csv"
        write_report_json(report, json_path)
        write_report_csv(report, csv_path)
        log.info("scores written to %s and %s", json_path, csv_path)
    return 0


if __name__ == "__main__":
    from utils.checkpoint import CheckpointError
    from utils.image_io import ImageReadError

    try:
        sys.exit(main())
    except (CheckpointError, ImageReadError, PairingError, FileNotFoundError, ValueError, KeyError) as err:
        sys.exit(f"error: {err}")
