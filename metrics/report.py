"""Scoring whole test sets and reporting them, shared by ``test.py`` and ``evaluate.py``.

A *report* is the dict both tools write as JSON::

    {"Rain100H": {"psnr": 29.41, "ssim": 0.873, "n": 100}, ...,
     "average": {"psnr": ..., "ssim": ...}}

Scores are Y-channel PSNR/SSIM (:mod:`metrics.psnr_ssim`), averaged per image
over a set; ``average`` is the mean of the set means, the papers' "Average"
column.
"""
from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from data.folders import PairingError
from metrics.psnr_ssim import SSIM_WINDOW, score_y
from utils.files import atomic_open, atomic_write
from utils.image_io import read_image

AVERAGE = "average"


def score_arrays(result: np.ndarray, target: np.ndarray, result_name: str, target_name: str) -> tuple[float, float]:
    """Y-channel ``(psnr, ssim)`` of a result and its target; a size mismatch names the pair."""
    if result.shape != target.shape:
        raise PairingError(
            f"size mismatch: {result_name} is {result.shape[1]}x{result.shape[0]} but "
            f"{target_name} is {target.shape[1]}x{target.shape[0]}"
        )
    if min(result.shape[:2]) < SSIM_WINDOW:
        raise PairingError(f"{result_name} and {target_name} are {result.shape[1]}x{result.shape[0]}: too small "
                           f"to score (SSIM needs at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels)")
    return score_y(result, target)


def score_pair(result_path: Path, target_path: Path) -> tuple[float, float]:
    """Read a result/target pair (errors name the file) and score it."""
    return score_arrays(read_image(result_path), read_image(target_path), str(result_path), str(target_path))


def score_pairs(
    pairs: list[tuple[Path, Path]],
    workers: int = 1,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> list[tuple[float, float]]:
    """``(psnr, ssim)`` of every pair, in order; ``workers`` threads (decoding and numpy release the GIL)."""
    wrap = progress or (lambda it: it)
    if workers <= 1:
        return [score_pair(a, b) for a, b in wrap(pairs)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(wrap(pool.map(lambda ab: score_pair(*ab), pairs)))


def summarize(scores: list[tuple[float, float]]) -> dict:
    """Per-image scores of one set -> ``{"psnr", "ssim", "n"}`` (means over images).

    A result identical to its target has an infinite PSNR, and so has the
    set's mean; the summary then also holds ``identical`` (how many) and
    ``psnr_others`` (the mean PSNR of the other images, when there are any).
    """
    if not scores:
        raise ValueError("no scores to summarize")
    psnrs, ssims = (np.asarray(v, dtype=np.float64) for v in zip(*scores))
    summary = {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)), "n": len(scores)}
    identical = int(np.isinf(psnrs).sum())
    if identical:
        summary["identical"] = identical
        if identical < len(psnrs):
            summary["psnr_others"] = float(np.mean(psnrs[np.isfinite(psnrs)]))
    return summary


def make_report(sets: Mapping[str, dict]) -> dict:
    """Per-set summaries -> report with the ``average`` of the set means."""
    if not sets:
        raise ValueError("no test set was scored")
    report = {name: dict(summary) for name, summary in sets.items()}
    report[AVERAGE] = {
        "psnr": float(np.mean([s["psnr"] for s in sets.values()])),
        "ssim": float(np.mean([s["ssim"] for s in sets.values()])),
    }
    return report


def format_table(report: Mapping[str, dict], title: str | None = None) -> str:
    """The report as a plain-text table (PSNR dB / SSIM per set, then the average) plus the papers' one-liner."""
    lines = [title] if title else []
    lines.append(f"{'dataset':<12} {'images':>6} {'PSNR':>9} {'SSIM':>7}")
    for name, s in report.items():
        n = s.get("n", "")
        label = "Average" if name == AVERAGE else name
        lines.append(f"{label:<12} {n!s:>6} {s['psnr']:>9.4f} {s['ssim']:>7.4f}")
    lines.append("paper style: " + " | ".join(
        f"{'Average' if name == AVERAGE else name} {s['psnr']:.2f}/{s['ssim']:.3f}" for name, s in report.items()
    ))
    for name, s in report.items():
        if s.get("identical"):
            others = f"; mean PSNR of the other images: {s['psnr_others']:.4f} dB" if "psnr_others" in s else ""
            lines.append(f"note: {name}: {s['identical']} of {s['n']} result(s) identical to the target, so the "
                         f"PSNR is infinite (null in the JSON){others}")
    return "\n".join(lines)


def _strict(value):
    """Non-finite floats -> None, so the JSON is strict (``Infinity`` is not JSON)."""
    if isinstance(value, Mapping):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def write_report_json(report: Mapping[str, dict], path: str | os.PathLike) -> None:
    atomic_write(path, json.dumps(_strict(report), indent=2, allow_nan=False) + "\n")


def write_report_csv(report: Mapping[str, dict], path: str | os.PathLike) -> None:
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["dataset", "n", "psnr", "ssim"])
        for name, s in report.items():
            writer.writerow([name, s.get("n", ""), f"{s['psnr']:.6f}", f"{s['ssim']:.6f}"])
