"""Test-set discovery: which folders ``test.py`` derains and scores.

The standard layout is ``<root>/<set>/input`` with an optional
``<root>/<set>/target`` (``Test100 Rain100H Rain100L Test2800 Test1200`` by
default; missing sets are skipped with a warning).  A plain folder of
images is a set of its own, without targets; a folder named ``input``
takes the ``target`` beside it.  Inputs and targets pair by name
(:func:`data.folders.pair_files`); two inputs that would be saved under one
name are an error.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple

from utils.errors import UsageError
from utils.files import real_path
from utils.image_io import list_images

from .folders import pair_files

log = logging.getLogger("test")

STANDARD_DATASETS = ("Test100", "Rain100H", "Rain100L", "Test2800", "Test1200")


class SetFiles(NamedTuple):
    name: str
    inputs: list[Path]
    targets: list[Path] | None  # aligned with inputs; None when the set has no targets


def _check_output_names(name: str, inputs: list[Path]) -> None:
    seen: dict[str, Path] = {}
    for path in inputs:
        if path.stem in seen:
            raise UsageError(
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
    for name in datasets or ():
        if name in ("", ".", "..") or any(c in name for c in "/\\"):
            raise UsageError(f"--datasets {name!r}: a set is a folder name under --input_dir, not a path")
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


def result_path(out_root: Path, test_set: SetFiles, src: Path) -> Path:
    """Where ``test.py`` saves the result of input ``src`` of ``test_set``."""
    return out_root / test_set.name / f"{src.stem}.png"


def check_result_paths(sets: list[SetFiles], out_root: Path, reports: list[Path]) -> None:
    """Refuse, before anything is written, results or score files that would overwrite an input or target."""
    sources = {real_path(p) for s in sets for p in s.inputs + (s.targets or [])}
    folders = {real_path(p.parent) for s in sets for p in s.inputs[:1] + (s.targets or [])[:1]}
    for test_set in sets:
        if real_path(out_root / test_set.name) in folders:
            raise UsageError(f"the results of {test_set.name} would be written into the test images' folder "
                             f"{out_root / test_set.name}; choose another --result_dir")
    planned = [(result_path(out_root, s, src), src) for s in sets for src in s.inputs]
    planned += [(path, None) for path in reports]
    for path, src in planned:
        if real_path(path) in sources:
            what = f"the result of {src}" if src is not None else "the scores"
            raise UsageError(f"{what} would overwrite the test image {path}; choose another --result_dir"
                             + ("" if src is not None else " / --json / --csv"))
    if len(reports) == 2 and real_path(reports[0]) == real_path(reports[1]):
        raise UsageError(f"--json and --csv are the same file {reports[0]}")
