"""A fair leaderboard: derain test sets with several models and weights, score them one way, compare with papers.

    python scripts/leaderboard.py --models PReNet:W1 BRN:W2 RESCAN:W3 \\
        --input_dir Datasets/Synthetic_Rain_Datasets/test --datasets Rain100H --out results/leaderboard

Every model runs through ``inference.runner`` (``load_model`` and
``derain_image``), so each follows its own release's protocol (channel
order, value range, whole image or windows, 8-bit conversion) as its
:class:`~models.spec.ModelSpec` declares, and every result is scored by the
same Y-channel PSNR/SSIM (:mod:`metrics.psnr_ssim`).  Writes
``leaderboard.md``, ``.csv`` and ``.json`` to ``--out``: method, weights
(training set), parameters, MACs, seconds per image on this machine,
PSNR/SSIM measured here, and the published figure with its source.

Published figures live in ``models/published.json``.  A weights file is
recognised by its SHA-256 (the registry ``models/weights.json``); a
published figure is *comparable* only when the model, the training set of
the weights and the test set (version included) are the same - otherwise the closest figure is shown and marked with why it
is not comparable.  Sets without targets are not scored by PSNR/SSIM; the
no-reference metrics in :data:`NO_REFERENCE_METRICS` (NIQE) are computed
for them instead.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = REPO / "models" / "published.json"

log = logging.getLogger("leaderboard")

def _niqe(img) -> float:
    from metrics.niqe import niqe

    return niqe(img)


# name -> function(uint8 RGB (H, W, 3)) -> float, computed on sets without targets (lower NIQE is better).
NO_REFERENCE_METRICS: dict[str, Callable] = {"NIQE": _niqe}


def parse_entry(text: str) -> tuple[str, str | None]:
    """``"BRN:path/to/net_latest.pth"`` or ``"BRN:BRN/Rain100H"`` -> ``("BRN", "...")``.

    A bare released name (``BRN/Rain100H``) brings its model; a bare model
    name means no weights (Identity).  Released names are fetched later, by
    :func:`models.weights.resolve`.
    """
    from models import get_model_class
    from models import weights as released
    from utils.errors import UsageError

    name, sep, weights = text.partition(":")
    if not sep and text in released.registry():
        name, weights = released.get(text).model, text
    elif not name or (sep and not weights):
        raise UsageError(f"--models entry {text!r} is not MODEL:WEIGHTS")
    get_model_class(name)  # unknown names list the known ones
    if not weights:
        return name, None
    entry = released.registry().get(weights)
    if entry is not None and entry.model != name:
        raise UsageError(f"--models entry {text!r}: {weights} is a {entry.model} file, not {name}")
    if entry is None and not Path(weights).is_file():
        raise FileNotFoundError(f"weights of {name} not found: {weights} is neither a file nor a released "
                                f"name{released.did_you_mean(weights)}")
    return name, weights


def load_published(path: Path = PUBLISHED) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def identify_weights(model: str, path: Path | None) -> dict:
    """What the leaderboard says about a weights file: its registry entry (by SHA-256), or a stand-in."""
    from models import weights as released

    if path is None:
        return {"model": model, "label": "none", "trained_on": None, "file": None}
    entry = released.identify(path)
    if entry is None:
        return {"sha256": released.digests(path)[0], "model": model, "label": f"{path.parent.name}/{path.name}",
                "trained_on": None, "path": str(path), "file": None}
    if entry.model != model:
        log.warning("%s is %s's released file %s, but runs as %s", path, entry.model, entry.name, model)
    return {"name": entry.name, "sha256": entry.sha256, "md5": entry.md5, "model": entry.model,
            "label": entry.label, "trained_on": entry.trained_on, "path": str(path),
            "file": f"{entry.source.repository} {entry.source.path}"}


def _version_of(data: dict, test_set: str) -> str:
    about = data["test_sets"].get(test_set)
    return about.get("version_of", test_set) if isinstance(about, dict) else test_set


def published_figure(data: dict, model: str, trained_on: str | None, dataset: str,
                     version: dict | None = None) -> dict | None:
    """The published figure to show beside a measured row, with ``comparable`` and, if not, ``why``.

    Candidates are the model's figures on ``dataset`` or on another version
    of it.  An exact match (same training set and test set) wins; otherwise
    a figure for the same training set on another version of the test set,
    then one on the same test set for other training data.  ``version`` is
    the known version of the measured files (``data.provenance.set_version``):
    for a set with manifests, the figure is comparable only on a complete copy
    of the version it was measured on (``note`` says when the source does not
    name its version).
    """
    candidates = [p for p in data["published"]
                  if p["model"] == model and dataset in (p["test_set"], _version_of(data, p["test_set"]))]

    def rank(p: dict) -> tuple[int, int]:
        same_set, same_train = p["test_set"] == dataset, trained_on is not None and p["trained_on"] == trained_on
        return (0 if same_set and same_train else 1 if same_train else 2), candidates.index(p)

    if not candidates:
        return None
    best = dict(min(candidates, key=rank))
    why = []
    if best["test_set"] != dataset:
        why.append(f"published on {best['test_set']}, another version of {dataset}")
    if trained_on is None:
        why.append("training set of these weights unknown")
    elif best["trained_on"] != trained_on:
        why.append(f"published model trained on {best['trained_on']}, these weights on {trained_on}")
    best["note"] = ""
    if version is not None and best["test_set"] == dataset:
        reason, best["note"] = _version_check(dataset, best.get("test_version", "unknown"), version)
        why += reason
    best["comparable"] = not why
    best["why"] = "; ".join(why)
    return best


def _version_check(dataset: str, published: str, version: dict) -> tuple[list[str], str]:
    """``(reasons not comparable, note)`` from the published figure's test-set version and the measured one's."""
    from data.manifest import load_manifests

    if dataset not in {m.set for m in load_manifests()}:
        return [], ""  # no manifest of this set: its version cannot be checked
    if version["status"] == "unknown":
        return [f"the {dataset} files measured are not a known version of {dataset}"], ""
    if version["set"] != dataset:
        return [f"the files measured as {dataset} are {version['set']} {version['version']}"], ""
    if version["status"] != "exact" and not version.get("same_pixels"):
        return [f"measured on a partial copy of {dataset} {version['version']} "
                f"({version['matched']} of {version['of']} files match)"], ""
    if published == "unknown":
        return [], f"the source does not say which version of {dataset} it used; measured on {version['version']}"
    if published != version["version"]:
        return [f"published on {dataset} {published}, measured on {version['version']}"], ""
    return [], ""


def machine_description(device) -> str:
    import torch

    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return f"CPU {cpu}, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}"


def run_row(model, test_set, device, progress: str, save_dir: Path | None) -> dict:
    """Derain one set with one model; per-image seconds and scores."""
    from inference.runner import derain_image
    from metrics.niqe import NIQEError
    from metrics.report import score_arrays, summarize
    from utils.image_io import read_image, write_image

    n = len(test_set.inputs)
    targets = test_set.targets or [None] * n
    every = max(1, n // 10)
    seconds, scores, no_ref = [], [], {name: [] for name in NO_REFERENCE_METRICS}
    for i, (src, tgt) in enumerate(zip(test_set.inputs, targets), 1):
        img = read_image(src)
        start = time.perf_counter()
        result = derain_image(model, img, device)
        seconds.append(time.perf_counter() - start)
        if save_dir is not None:
            write_image(save_dir / f"{src.stem}.png", result)
        if tgt is not None:
            scores.append(score_arrays(result, read_image(tgt), str(src), str(tgt)))
        else:
            for name, fn in NO_REFERENCE_METRICS.items():
                try:
                    no_ref[name].append(float(fn(result)))
                except NIQEError as err:  # e.g. an image under 192 pixels: left out of the mean
                    log.warning("%s: %s not scored: %s", progress, src.name, err)
        if i == 1 or i % every == 0 or i == n:
            mean = sum(seconds) / len(seconds)
            log.info("%s: %d/%d images, %.2f s/image, about %.0f s left", progress, i, n, mean, mean * (n - i))
    row = {"dataset": test_set.name, "n": n, "seconds_per_image": sum(seconds) / n}
    if scores:
        row.update(summarize(scores))
        row["per_image"] = {p.name: [round(a, 6), round(b, 6)] for p, (a, b) in zip(test_set.inputs, scores)}
    row["no_reference"] = {name: sum(v) / len(v) for name, v in no_ref.items() if v}
    return row


def _fmt(value, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def table_rows(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the leaderboard (one table for all sets; ranked by PSNR within a set)."""
    no_ref = sorted({k for r in rows for k in r["no_reference"]})
    header = ["set", "rank", "method", "weights (training set)", "params", "GMACs", "s/image", "PSNR", "SSIM",
              *no_ref, "published PSNR/SSIM", "source", "comparable"]
    cells = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        group = [r for r in rows if r["dataset"] == dataset]
        group.sort(key=lambda r: -r["psnr"] if r.get("psnr") is not None else float("inf"))
        for rank, r in enumerate(group, 1):
            pub = r["published"]
            trained = r["weights"]["trained_on"] or "unknown"
            cells.append([
                dataset, str(rank) if r.get("psnr") is not None else "—", r["model"],
                f"{r['weights']['label']} ({trained})", f"{r['params']:,}", f"{r['macs'] / 1e9:.1f}",
                f"{r['seconds_per_image']:.2f}", _fmt(r.get("psnr"), 4), _fmt(r.get("ssim"), 4),
                *[_fmt(r["no_reference"].get(k), 4) for k in no_ref],
                f"{pub['psnr']:.2f}/{pub['ssim']:.3f}" if pub else "—", pub["source"] if pub else "—",
                (("yes" + (f" ({pub['note']})" if pub.get("note") else "")) if pub["comparable"]
                 else f"no: {pub['why']}") if pub else "—",
            ])
    return header, cells


def write_outputs(out: Path, meta: dict, rows: list[dict]) -> dict[str, Path]:
    import csv

    from utils.files import atomic_open, atomic_write

    header, cells = table_rows(rows)
    lines = [f"Y-channel PSNR (dB) / SSIM; MACs at {meta['macs_size'][0]}x{meta['macs_size'][1]}; "
             f"seconds per image on {meta['machine']}.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in cells]
    paths = {ext: out / f"leaderboard.{ext}" for ext in ("md", "csv", "json")}
    atomic_write(paths["md"], "\n".join(lines) + "\n")
    with atomic_open(paths["csv"], "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(cells)
    atomic_write(paths["json"], json.dumps({"meta": meta, "rows": rows}, indent=1, allow_nan=False) + "\n")
    return paths


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", required=True, metavar="MODEL:WEIGHTS",
                   help="registered model and its weights file, e.g. BRN:weights/BRN/Rain100H/net_latest.pth, "
                        "or a released name, alone or after the model: BRN/Rain100H, BRN:BRN/Rain100H")
    p.add_argument("--input_dir", "--input-dir", required=True,
                   help="root holding <dataset>/input (and <dataset>/target), or a plain folder of images")
    p.add_argument("--datasets", nargs="+", default=None, help="sets under --input_dir (each must exist)")
    p.add_argument("--out", required=True, help="folder for leaderboard.md, .csv and .json")
    p.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda when available)")
    p.add_argument("--macs-size", "--macs_size", type=int, nargs=2, default=[256, 256], metavar=("H", "W"),
                   help="input size of the MAC count (default 256 256)")
    p.add_argument("--save-images", "--save_images", action="store_true",
                   help="also write the derained images to OUT/images/<model>_<weights>/<set>/")
    return p


def find_sets(input_dir: Path, datasets: list[str] | None):
    """The test sets; every named set must exist (a missing one is an error, not a skip)."""
    from data.testsets import find_test_sets

    if datasets:
        for name in datasets:
            if not (input_dir / name / "input").is_dir():
                raise FileNotFoundError(f"dataset {name} not found: {input_dir / name / 'input'} is not a folder")
    return find_test_sets(input_dir, datasets, score=True)


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from data.provenance import set_version
    from inference.runner import load_model, resolve_device
    from models.complexity import count_macs, count_parameters
    from models.weights import resolve
    from utils.files import git_commit

    started, commit = time.perf_counter(), git_commit()  # the code that ran, not what changed meanwhile
    entries = [parse_entry(text) for text in args.models]
    sets = find_sets(Path(args.input_dir), args.datasets)
    device = resolve_device(args.device)
    data = load_published()
    loaded = []  # load everything first: a bad file fails before hours of work
    for name, weights in entries:
        path = resolve(weights)[0] if weights is not None else None  # a released name: fetched, verified
        model, _ = load_model(name, path, device=device)
        loaded.append((name, model, identify_weights(name, path)))
    versions = {s.name: set_version(s.inputs, s.targets) for s in sets if s.targets}
    rows = []
    for k, (name, model, weights) in enumerate(loaded, 1):
        params, macs = count_parameters(model), count_macs(model, tuple(args.macs_size))
        for test_set in sets:
            tag = f"[{k}/{len(loaded)}] {name} ({weights['label']}) on {test_set.name}"
            save = Path(args.out) / "images" / f"{name}_{weights['label'].replace('/', '_')}" / test_set.name
            row = run_row(model, test_set, device, tag, save if args.save_images else None)
            if "psnr" in row:
                log.info("%s: PSNR %.4f dB, SSIM %.4f", tag, row["psnr"], row["ssim"])
            elif not NO_REFERENCE_METRICS:
                log.info("%s: no targets, not scored (no no-reference metric registered)", tag)
            row.update(model=name, weights=weights, params=params, macs=macs, version=versions.get(test_set.name),
                       published=published_figure(data, name, weights["trained_on"], test_set.name,
                                                  versions.get(test_set.name)))
            rows.append(row)
    meta = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": commit,
        "machine": machine_description(device),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "macs_size": list(args.macs_size),
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    paths = write_outputs(Path(args.out), meta, rows)
    print(paths["md"].read_text(encoding="utf-8"))
    log.info("done in %.0f s; tables in %s", meta["total_seconds"], ", ".join(map(str, paths.values())))
    return {"meta": meta, "rows": rows}


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))  # run as a file: make the project's packages importable
    from utils.errors import run_cli

    run_cli(main)
