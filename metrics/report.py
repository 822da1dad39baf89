"""Scoring whole test sets and reporting them, shared by ``test.py`` and ``evaluate.py``.

A *report* is the dict both tools write as JSON::

    {"Rain100H": {"psnr": 29.41, "ssim": 0.873, "n": 100}, ...,
     "average": {"psnr": ..., "ssim": ...}}

Scores are Y-channel PSNR/SSIM (:mod:`metrics.psnr_ssim`), averaged per image
over a set; ``average`` is the mean of the set means, the papers' "Average"
column.  Sets without targets are scored with the no-reference NIQE
(:mod:`metrics.niqe`, lower is better): ``{"RealRain147": {"niqe": 4.1, "n": 147}}``
(``test.py`` adds ``"input_niqe"``, the rainy inputs' score).  Each set
carries the metrics it was scored with; ``average`` holds, per metric, the
mean over the sets that have it.  A set scored against targets also records
the known version of its data (``"version": {"set", "version", "status", ...}``,
:func:`data.provenance.set_version`): scores are comparable with published
ones only on the same version.
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
from metrics.niqe import NIQEError, niqe
from metrics.psnr_ssim import SSIM_WINDOW, score_y
from utils.files import atomic_open, atomic_write
from utils.image_io import read_image

AVERAGE = "average"
FULL_REFERENCE = ("psnr", "ssim")  # need a target
NO_REFERENCE = ("niqe",)
METRICS = FULL_REFERENCE + NO_REFERENCE
DEFAULT_METRICS = FULL_REFERENCE
# column label, width, table format, paper format
_COLUMNS = {
    "psnr": ("PSNR", 9, ".4f", ".2f"),
    "ssim": ("SSIM", 7, ".4f", ".3f"),
    "niqe": ("NIQE", 7, ".4f", ".3f"),
    "input_niqe": ("input NIQE", 10, ".4f", ".3f"),
}


def parse_metrics(text: str) -> tuple[str, ...]:
    """``"psnr,ssim,niqe"`` -> ``("psnr", "ssim", "niqe")``; an unknown name is an error listing the valid ones."""
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names:
        raise ValueError(f"unknown metric {', '.join(unknown) or repr(text)}: choose from {', '.join(METRICS)}")
    return tuple(dict.fromkeys(names))


def needs_target(metrics: Iterable[str]) -> bool:
    return any(m in FULL_REFERENCE for m in metrics)


def niqe_of(img: np.ndarray, name: str) -> float:
    """NIQE of one image; an image NIQE is undefined for is an error naming it."""
    try:
        return niqe(img)
    except NIQEError as err:
        raise NIQEError(f"{name}: {err}") from None


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


def score_file(result_path: Path, target_path: Path | None, metrics: tuple[str, ...]) -> tuple[float, ...]:
    """The scores ``metrics`` names (in that order) of one result file; ``target_path`` when PSNR/SSIM are asked."""
    result = read_image(result_path)
    scores = {}
    if needs_target(metrics):
        scores["psnr"], scores["ssim"] = score_arrays(result, read_image(target_path), str(result_path),
                                                      str(target_path))
    if "niqe" in metrics:
        scores["niqe"] = niqe_of(result, str(result_path))
    return tuple(scores[m] for m in metrics)


def score_pairs(
    pairs: list[tuple[Path, Path | None]],
    workers: int = 1,
    progress: Callable[[Iterable], Iterable] | None = None,
    metrics: tuple[str, ...] = DEFAULT_METRICS,
) -> list[tuple[float, ...]]:
    """Scores of every (result, target) pair, in order; ``workers`` threads (decoding and numpy release the GIL).

    The target may be ``None`` when only no-reference metrics are asked.
    """
    wrap = progress or (lambda it: it)
    if workers <= 1:
        return [score_file(a, b, metrics) for a, b in wrap(pairs)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(wrap(pool.map(lambda ab: score_file(*ab, metrics), pairs)))


def summarize(scores: list[tuple[float, ...]], metrics: tuple[str, ...] = DEFAULT_METRICS) -> dict:
    """Per-image scores of one set (tuples aligned with ``metrics``) -> ``{metric: mean, ..., "n"}``.

    A result identical to its target has an infinite PSNR, and so has the
    set's mean; the summary then also holds ``identical`` (how many) and
    ``psnr_others`` (the mean PSNR of the other images, when there are any).
    """
    if not scores:
        raise ValueError("no scores to summarize")
    table = np.asarray(scores, dtype=np.float64).reshape(len(scores), len(metrics))
    summary = {m: float(table[:, i].mean()) for i, m in enumerate(metrics)}
    summary["n"] = len(scores)
    if "psnr" in metrics:
        psnrs = table[:, metrics.index("psnr")]
        identical = int(np.isinf(psnrs).sum())
        if identical:
            summary["identical"] = identical
            if identical < len(psnrs):
                summary["psnr_others"] = float(np.mean(psnrs[np.isfinite(psnrs)]))
    return summary


_NOT_METRICS = ("n", "identical", "psnr_others", "version")


def _metric_keys(report: Mapping[str, dict]) -> list[str]:
    """The metrics of a report, in order of first appearance."""
    return list(dict.fromkeys(k for s in report.values() for k in s if k not in _NOT_METRICS))


def make_report(sets: Mapping[str, dict]) -> dict:
    """Per-set summaries -> report with the ``average`` of the set means (per metric, over the sets that have it)."""
    if not sets:
        raise ValueError("no test set was scored")
    report = {name: dict(summary) for name, summary in sets.items()}
    report[AVERAGE] = {
        key: float(np.mean([s[key] for s in sets.values() if key in s])) for key in _metric_keys(sets)
    }
    return report


def describe(report: Mapping[str, dict]) -> str:
    """What a report's numbers are, for table titles."""
    keys = _metric_keys(report)
    parts = []
    if "psnr" in keys or "ssim" in keys:
        parts.append("Y-channel PSNR (dB) / SSIM")
    if "niqe" in keys:
        parts.append("NIQE (lower is better)")
    return "; ".join(parts)


def format_table(report: Mapping[str, dict], title: str | None = None) -> str:
    """The report as a plain-text table (one column per metric, per set, then the average) plus the papers' one-liner."""
    keys = _metric_keys(report)
    lines = [title] if title else []
    lines.append(f"{'dataset':<12} {'images':>6} " + " ".join(f"{_COLUMNS[k][0]:>{_COLUMNS[k][1]}}" for k in keys))
    for name, s in report.items():
        n = s.get("n", "")
        label = "Average" if name == AVERAGE else name
        cells = [f"{s[k]:>{_COLUMNS[k][1]}{_COLUMNS[k][2]}}" if k in s else " " * _COLUMNS[k][1] for k in keys]
        lines.append(f"{label:<12} {n!s:>6} " + " ".join(cells))
    lines.append("paper style: " + " | ".join(
        f"{'Average' if name == AVERAGE else name} " + "/".join(f"{s[k]:{_COLUMNS[k][3]}}" for k in keys if k in s)
        for name, s in report.items()
    ))
    for name, s in report.items():
        if "version" in s:
            lines.append(f"data: {name}: {describe_version(s['version'])}")
    for name, s in report.items():
        if s.get("identical"):
            others = f"; mean PSNR of the other images: {s['psnr_others']:.4f} dB" if "psnr_others" in s else ""
            lines.append(f"note: {name}: {s['identical']} of {s['n']} result(s) identical to the target, so the "
                         f"PSNR is infinite (null in the JSON){others}")
    return "\n".join(lines)


def describe_version(version: Mapping) -> str:
    """One line for the known set version a report records (see ``data.provenance.set_version``)."""
    if version.get("status") not in ("exact", "partial"):
        return "not a known version of a set (scores comparable with no published figure)"
    text = f"{version['set']} {version['version']}, {version['status']}"
    if version["status"] == "partial":
        counts = ", ".join(f"{version[k]} {k}" for k in ("modified", "missing", "extra") if version.get(k))
        same = "; the same pixels" if version.get("same_pixels") else ""
        text += f" ({version['matched']} of {version['of']} files match; {counts}{same})"
    return text


def format_method_table(set_name: str, n: int, niqe_by_method: Mapping[str, float]) -> str:
    """The papers' real-rain table: one row per method (the rainy input first), its NIQE (lower is better)."""
    width = max(12, *(len(m) for m in niqe_by_method))
    lines = [f"{set_name} ({n} images without ground truth): NIQE, lower is better",
             f"{'method':<{width}} {'NIQE':>7}"]
    lines += [f"{method:<{width}} {value:>7.3f}" for method, value in niqe_by_method.items()]
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
    keys = _metric_keys(report)
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["dataset", "n", *keys])
        for name, s in report.items():
            writer.writerow([name, s.get("n", ""), *(f"{s[k]:.6f}" if k in s else "" for k in keys)])
