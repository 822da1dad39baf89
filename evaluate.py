"""Score saved results against the ground truth: Y-channel PSNR/SSIM per set and their average.

    python evaluate.py --result_dir results/DMSR --gt_dir Datasets/Synthetic_Rain_Datasets/test

pairs ``results/DMSR/<dataset>/*`` with ``<gt_dir>/<dataset>/target/*`` by
file name (``rain-001``/``norain-001`` style names pair too), and prints the
table of the papers.  The numbers equal those of ``evaluate_PSNR_SSIM.m``
(MATLAB or GNU Octave).  A result or target without a partner is an error
listing them; so is a pair of different sizes.  The JSON records which known
version of each set the targets are (``"version"``, see ``docs/DATA.md``).

Results of real rainy photos have no targets; score them with the
no-reference NIQE (lower is better), which needs no ``--gt_dir``:

    python evaluate.py --result_dir results/DMSR --datasets RealRain147 --metrics niqe --json niqe.json

``--metrics psnr,ssim,niqe`` scores all three against the targets.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from functools import partial
from pathlib import Path

from tqdm import tqdm

from data.folders import pair_files
from data.provenance import set_version
from data.testsets import STANDARD_DATASETS
from metrics.report import (
    DEFAULT_METRICS,
    METRICS,
    describe,
    format_table,
    make_report,
    needs_target,
    parse_metrics,
    score_pairs,
    summarize,
    write_report_csv,
    write_report_json,
)
from utils.errors import UsageError, positive_int
from utils.image_io import list_images

log = logging.getLogger("evaluate")


def _metrics_arg(text: str) -> tuple[str, ...]:
    try:
        return parse_metrics(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--result_dir", "--result-dir", required=True, help="results of one model: <dir>/<dataset>/*.png")
    p.add_argument("--gt_dir", "--gt-dir", default="Datasets/Synthetic_Rain_Datasets/test",
                   help="root holding <dataset>/target (not needed for --metrics niqe)")
    p.add_argument("--metrics", type=_metrics_arg, default=DEFAULT_METRICS,
                   help=f"comma-separated, from {', '.join(METRICS)} (default: psnr,ssim)")
    p.add_argument("--datasets", nargs="+", default=None,
                   help=f"sets to score (default: those of {' '.join(STANDARD_DATASETS)} found in --result_dir)")
    p.add_argument("--json", help="write the scores as JSON to this file")
    p.add_argument("--csv", help="write the scores as CSV to this file")
    p.add_argument("--workers", type=positive_int, default=min(8, os.cpu_count() or 1), help="scoring threads")
    return p


def select_datasets(result_dir: Path, datasets: list[str] | None) -> list[str]:
    """Named sets must all exist; by default the standard sets present are used (the rest skipped)."""
    if not result_dir.is_dir():
        raise FileNotFoundError(f"--result_dir {result_dir} is not a folder")
    if datasets:
        missing = [d for d in datasets if not (result_dir / d).is_dir()]
        if missing:
            raise FileNotFoundError(f"no results for {', '.join(missing)} in {result_dir}")
        return list(datasets)
    found = [d for d in STANDARD_DATASETS if (result_dir / d).is_dir()]
    for d in STANDARD_DATASETS:
        if d not in found:
            log.warning("skipping %s: %s not found", d, result_dir / d)
    if not found:
        raise FileNotFoundError(
            f"none of {', '.join(STANDARD_DATASETS)} in {result_dir}; name the sets with --datasets"
        )
    return found


def check_report_paths(images: list[Path], reports: list[Path]) -> None:
    """The score files must not overwrite an image being scored, nor each other."""
    scored = {p.resolve() for p in images}
    for path in reports:
        if path.resolve() in scored:
            raise UsageError(f"--json/--csv {path} would overwrite an image being scored")
    if len(reports) == 2 and reports[0].resolve() == reports[1].resolve():
        raise UsageError(f"--json and --csv are the same file {reports[0]}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result_dir, gt_dir = Path(args.result_dir), Path(args.gt_dir)
    datasets = select_datasets(result_dir, args.datasets)
    # Pair every set first, so a mismatch anywhere is reported before any scoring time is spent.
    pairs = {}
    for name in datasets:
        if needs_target(args.metrics):
            target_dir = gt_dir / name / "target"
            if not target_dir.is_dir():
                raise FileNotFoundError(f"{name}: target folder {target_dir} not found")
            pairs[name] = pair_files(result_dir / name, target_dir)
        else:
            results = list_images(result_dir / name)
            if not results:
                raise FileNotFoundError(f"{name}: no images in {result_dir / name}")
            pairs[name] = [(path, None) for path in results]
    check_report_paths([p for set_pairs in pairs.values() for pair in set_pairs for p in pair if p is not None],
                       [Path(f) for f in (args.json, args.csv) if f])

    summaries = {}
    for name, set_pairs in pairs.items():
        progress = partial(tqdm, total=len(set_pairs), desc=name, unit="img", disable=not sys.stderr.isatty())
        summaries[name] = summarize(score_pairs(set_pairs, args.workers, progress, args.metrics), args.metrics)
        if needs_target(args.metrics):
            summaries[name]["version"] = set_version(None, [target for _, target in set_pairs])
    report = make_report(summaries)
    print(format_table(report, title=f"{result_dir}: {describe(report)}"))
    if args.json:
        write_report_json(report, args.json)
    if args.csv:
        write_report_csv(report, args.csv)
    return 0


if __name__ == "__main__":
    from utils.errors import run_cli

    run_cli(main)
