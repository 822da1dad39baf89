"""Derain the test sets with a trained model, save the results, and score them.

    python test.py --model DMSR --weights checkpoints/DMSR/model_best.pth \\
        --input_dir Datasets/Synthetic_Rain_Datasets/test --result_dir results

writes ``results/DMSR/<dataset>/<input stem>.png`` for every set found
(Test100 Rain100H Rain100L Test2800 Test1200 by default) and, for the sets
that have a ``target`` folder, prints and saves the Y-channel PSNR/SSIM
table (``results/DMSR/scores.json`` and ``.csv``; the JSON also records which
known version of each set was scored, see ``docs/DATA.md``).  Sets without targets
(real rainy photos) are scored with NIQE, of the outputs and of the rainy
inputs, and printed as the papers' real-rain table (method, NIQE; lower is
better); the same files hold ``{"<set>": {"niqe", "input_niqe", "n"}}``.
Images NIQE is undefined for (smaller than 192 pixels both ways, or with a
flat 96x96 block) are derained and left out of the mean with a warning.
``--weights`` also takes the name of an authors' released file
(``--weights BRN/Rain100H``: fetched, verified and cached, and it fixes
``--model``; see ``docs/MODEL_ZOO.md``).
``--input_dir`` may also be a plain folder of images.  ``--tile`` picks the protocol: the model's
default (128-pixel windows for DMSR, as the authors' release) or 0 for the
whole image padded to the model's multiple.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tqdm import tqdm

from data.provenance import set_version
from data.testsets import STANDARD_DATASETS, check_result_paths, find_test_sets, result_path
from inference.runner import (
    add_model_arguments,
    derain_image,
    load_model,
    parse_model_opts,
    resolve_device,
)
from inference.windows import check_tile
from metrics.niqe import NIQEError
from metrics.report import (
    describe,
    describe_version,
    format_method_table,
    format_table,
    make_report,
    niqe_of,
    score_arrays,
    summarize,
    write_report_csv,
    write_report_json,
)
from models import spec_of
from utils.image_io import read_image, write_image

log = logging.getLogger("test")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(p)
    p.add_argument("--input_dir", "--input-dir", default="Datasets/Synthetic_Rain_Datasets/test",
                   help="root holding <dataset>/input (and <dataset>/target), or a plain folder of images")
    p.add_argument("--datasets", nargs="+", default=None,
                   help=f"sets under --input_dir (default: {' '.join(STANDARD_DATASETS)}; missing ones are skipped)")
    p.add_argument("--result_dir", "--result-dir", default="results", help="outputs go to RESULT_DIR/<model>/<dataset>/")
    p.add_argument("--no-score", "--no_score", action="store_true", help="only write the derained images")
    p.add_argument("--json", help="score table as JSON (default: RESULT_DIR/<model>/scores.json)")
    p.add_argument("--csv", "--save-csv", dest="csv", help="score table as CSV (default: RESULT_DIR/<model>/scores.csv)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    device = resolve_device(args.device)
    sets = find_test_sets(Path(args.input_dir), args.datasets, score=not args.no_score)
    model, name = load_model(args.model, args.weights, parse_model_opts(args.model_opts), device, args.ema,
                             fast=args.fast)
    out_root = Path(args.result_dir) / name
    json_path = Path(args.json) if args.json else out_root / "scores.json"
    csv_path = Path(args.csv) if args.csv else out_root / "scores.csv"
    check_result_paths(sets, out_root, [] if args.no_score else [json_path, csv_path])
    versions = {s.name: set_version(s.inputs, s.targets) for s in sets if s.targets and not args.no_score}
    for set_name, version in versions.items():
        log.info("%s: %s", set_name, describe_version(version))
    tile = args.tile if args.tile is not None else spec_of(model).default_tile
    check_tile(model, tile)
    log.info("%s on %s, %s", name, device, f"{tile}x{tile} windows" if tile else "whole images")

    summaries = {}
    for test_set in sets:
        out_dir = out_root / test_set.name
        scores = []
        targets = test_set.targets or [None] * len(test_set.inputs)
        jobs = list(zip(test_set.inputs, targets))
        no_reference = test_set.targets is None and not args.no_score
        for src, tgt in tqdm(jobs, desc=test_set.name, unit="img", disable=not sys.stderr.isatty()):
            rainy = read_image(src)
            result = derain_image(model, rainy, device, tile, args.max_batch, args.quantize, amp=args.amp)
            out_path = result_path(out_root, test_set, src)
            write_image(out_path, result)
            if tgt is not None:
                scores.append(score_arrays(result, read_image(tgt), str(src), str(tgt)))
            elif no_reference:
                try:
                    scores.append((niqe_of(result, str(out_path)), niqe_of(rainy, str(src))))
                except NIQEError as err:  # e.g. a photo under 192 pixels: derained, left out of the NIQE mean
                    log.warning("not scored: %s", err)
        log.info("%s: %d images written to %s", test_set.name, len(test_set.inputs), out_dir)
        if scores:
            summaries[test_set.name] = summarize(scores, ("niqe", "input_niqe") if no_reference else ("psnr", "ssim"))
            if test_set.name in versions:
                summaries[test_set.name]["version"] = versions[test_set.name]

    if summaries:
        report = make_report(summaries)
        paired = {k: {m: v for m, v in s.items() if m in ("psnr", "ssim", "n", "identical", "psnr_others", "version")}
                  for k, s in report.items() if "psnr" in s}
        if paired:
            print(format_table(paired, title=f"{name}: {describe(paired)}"))
        for set_name, s in summaries.items():
            if "niqe" in s:
                print(format_method_table(set_name, s["n"], {"Rainy input": s["input_niqe"], name: s["niqe"]}))
        write_report_json(report, json_path)
        write_report_csv(report, csv_path)
        log.info("scores written to %s and %s", json_path, csv_path)
    return 0


if __name__ == "__main__":
    from utils.errors import run_cli

    run_cli(main)
