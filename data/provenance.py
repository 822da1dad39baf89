"""What data a folder holds and whether it can be trusted: known version, problems, duplicates, overlaps.

* :func:`check_folder` / :func:`check_folders` are ``scripts/check_data.py``:
  each folder's files are read and decoded once (on threads) for the folder
  checks of :mod:`data.folders` (pairing, unreadable images, size mismatches,
  reported as findings), the known version (:mod:`data.manifest`) and the
  fingerprints of its clean images (:mod:`data.duplicates`), which give the
  duplicates inside each folder and the overlaps between every two folders.
* :func:`set_version` is the version a test set's score files record
  (``test.py``, ``evaluate.py``, ``scripts/leaderboard.py``): hashes only.
* :func:`warn_about_data` is the trainer's start-up check (rank 0, once): a
  validation folder that is a known test set, training data holding a test
  set, and validation pairs whose clean image is also in the training data.

A folder is a *set* (``input/`` and/or ``target/``) or a plain folder of
images; the clean images are the targets of a set, else its inputs (a set
without targets, real rain) or the plain folder's images.
"""
from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from utils.errors import UserError
from utils.image_io import list_images, read_image

from .duplicates import Fingerprints, find_duplicates, perceptual
from .folders import PairingError, check_pairs, load_checked, pair_files, pair_key
from .manifest import (
    FileFacts,
    Identification,
    Manifest,
    folder_facts,
    identify,
    load_manifests,
    pixel_sha256,
)

log = logging.getLogger(__name__)
SHOWN = 5  # examples named in a start-up warning
SIZE_SLACK = 2  # pixels: the start-up check compares clean images whose sizes differ at most this much
TEST_SET_WARNING = "model selection on a test set: the release's recipe does this; reported scores are then optimistic"


class DataCheckError(UserError, ValueError):
    """A path given to check is not a dataset folder or cannot be read; the message names it."""


@dataclass
class _Examined:
    """One file read and decoded once: what every check needs of it."""

    facts: FileFacts
    size: tuple[int, int] | None  # (height, width); None when it does not decode
    problem: str | None
    perceptual: tuple | None  # (phash, thumbnail) of a clean image


@dataclass
class FolderReport:
    """Everything :func:`check_folder` found in one folder (file names relative to it)."""

    path: Path
    layout: str  # "set" or "images"
    pairs: int  # pairs that pair up (a set with targets), else images
    images: int
    identification: Identification
    problems: list[str]
    clean: Fingerprints
    files: list[Path]  # every image file checked
    duplicates: list[tuple[str, str, str]] = field(default_factory=list)

    def to_json(self) -> dict:
        ident = self.identification
        return {
            "path": str(self.path), "layout": self.layout, "pairs": self.pairs, "images": self.images,
            "set": ident.set, "version": ident.version, "kind": ident.kind, "status": ident.status,
            "matched": len(ident.matched), "of": ident.expected, "modified": ident.modified,
            "reencoded": ident.reencoded, "missing": ident.missing, "extra": ident.extra,
            "renamed": [list(r) for r in ident.renamed], "contains": dict(ident.contains),
            "problems": self.problems, "clean_images": len(self.clean),
            "duplicates": [list(d) for d in self.duplicates],
        }


def folder_files(path: Path) -> tuple[str, dict[str | None, list[Path]]]:
    """``(layout, {role: image paths})`` of a folder to check; a folder that is neither kind is an error."""
    if not path.is_dir():
        raise DataCheckError(f"{path}: not a folder" if path.exists() else f"{path}: no such folder")
    roles = {r: path / r for r in ("input", "target") if (path / r).is_dir()}
    if roles:
        files = {r: list_images(folder) for r, folder in roles.items()}
        if not any(files.values()):
            raise DataCheckError(f"{path}: no images in {' or '.join(str(f) for f in roles.values())}")
        return "set", files
    images = list_images(path)
    if not images:
        raise DataCheckError(f"{path} is not a dataset: no input/ or target/ folder and no images in it")
    return "images", {None: images}


def _examine(facts: FileFacts, clean: bool) -> _Examined:
    """Read a file once: its SHA-256, the folder checks' decode, its pixel hash and (clean images) fingerprint."""
    try:
        data = facts.path.read_bytes()
    except OSError as err:
        raise DataCheckError(f"cannot read {facts.path}: {err.strerror or err}") from None
    facts.sha256 = hashlib.sha256(data).hexdigest()
    img, problem = load_checked(facts.path, data)
    if img is None:
        return _Examined(facts, None, problem, None)
    facts.pixels = pixel_sha256(img)
    return _Examined(facts, img.shape[:2], None, perceptual(img) if clean else None)


def _clean_role(files: dict[str | None, list[Path]]) -> str | None:
    return "target" if files.get("target") else ("input" if "input" in files else None)


def check_folder(path: str | os.PathLike, manifests: tuple[Manifest, ...], pool: ThreadPoolExecutor,
                 progress: tqdm | None = None, listed: tuple[str, dict] | None = None) -> FolderReport:
    """Check one folder (see the module docstring); reads every file once, on ``pool``'s threads.

    ``listed``: what :func:`folder_files` returned for it, when the caller listed it already.
    """
    path = Path(path)
    layout, files = listed or folder_files(path)
    clean_role = _clean_role(files)
    facts = folder_facts(files)

    def examine(f: FileFacts) -> _Examined:
        result = _examine(f, f.role == clean_role)
        if progress is not None:
            progress.update()
        return result

    examined = list(pool.map(examine, facts))
    problems, pairs = _problems(path, files, {e.facts.path: e for e in examined})
    clean = Fingerprints.build([(e.facts.shown, e.facts.sha256, e.facts.pixels, e.size, *e.perceptual)
                                for e in examined if e.perceptual is not None])
    report = FolderReport(path, layout, pairs if files.get("target") and files.get("input") else len(facts),
                          len(facts), identify(facts, manifests), problems, clean, [f.path for f in facts])
    report.duplicates = [(clean.names[i], clean.names[j], kind) for i, j, kind in find_duplicates(clean)]
    return report


def _problems(path: Path, files: dict[str | None, list[Path]], examined: dict[Path, _Examined]
              ) -> tuple[list[str], int]:
    """The folder checks' findings (pairing, unreadable images, size mismatches) and the pairs that pair up."""
    problems: list[str] = []
    pairs: list[tuple[Path, Path]] = []
    if files.get("input") and files.get("target"):
        try:
            pairs = [(Path(a), Path(b)) for a, b in pair_files(path / "input", path / "target")]
        except PairingError as err:
            problems.append(str(err))
            targets = {pair_key(p.name): p for p in files["target"]}
            pairs = [(p, targets[pair_key(p.name)]) for p in files["input"] if pair_key(p.name) in targets]
    elif "target" in files and "input" not in files:
        problems.append(f"{path}: no input/ folder (targets only)")
    elif "input" in files and "target" in files:
        problems.append(f"{path}: {'target' if files['input'] else 'input'}/ holds no images")
    problems += check_pairs(pairs, [((examined[a].size, examined[a].problem), (examined[b].size, examined[b].problem))
                                    for a, b in pairs])[0]
    paired = {p for pair in pairs for p in pair}
    problems += [f"unreadable image {e.facts.path} ({e.problem})" for e in examined.values()
                 if e.problem is not None and e.facts.path not in paired]
    return problems, len(pairs)


def check_folders(paths: list[str | os.PathLike], manifests: tuple[Manifest, ...], workers: int | None = None
                  ) -> tuple[list[FolderReport], list[dict]]:
    """Check every folder, then the overlaps of their clean images: ``(reports, overlaps)``.

    Every path is listed before any file is read, so a path that is not a
    dataset folder fails at once.  An overlap is ``{"a", "b", "exact",
    "near", "pairs": [[file of a, file of b, kind], ...]}`` for every two folders.
    """
    listed = [folder_files(Path(p)) for p in paths]
    total = sum(len(v) for _, files in listed for v in files.values())
    workers = workers or min(8, os.cpu_count() or 1)
    bar = tqdm(total=total, desc="reading images", unit="img", disable=not sys.stderr.isatty())
    with ThreadPoolExecutor(max_workers=workers) as pool, bar:
        reports = [check_folder(p, manifests, pool, bar, listing) for p, listing in zip(paths, listed)]
    overlaps = []
    for k, a in enumerate(reports):
        for b in reports[k + 1:]:
            pairs = [(a.clean.names[i], b.clean.names[j], kind) for i, j, kind in find_duplicates(a.clean, b.clean)]
            overlaps.append({"a": str(a.path), "b": str(b.path),
                             "exact": sum(kind == "exact" for *_, kind in pairs),
                             "near": sum(kind == "near" for *_, kind in pairs), "pairs": [list(p) for p in pairs]})
    return reports, overlaps


# ----------------------------------------------------------------------------- score files

def set_version(inputs: list[Path] | None, targets: list[Path] | None) -> dict:
    """The known version of a test set's files, as score files record it (:meth:`Identification.summary`)."""
    files = {role: paths for role, paths in (("input", inputs), ("target", targets)) if paths}
    return identify(folder_facts(files)).summary()


# ----------------------------------------------------------------------------- training start-up

def warn_about_data(train_set, val_set, val_dir: str | None) -> None:
    """Log, once at start-up, what would make the run's scores untrustworthy (rank 0).

    ``train_set``/``val_set`` are the run's paired datasets (``val_set`` None
    without validation); ``val_dir`` is TRAINING.VAL_DIR when validation runs
    on it, None when it runs on TRAINING.VAL_SPLIT's held-back pairs.  Warns
    when the validation folder is a known test set, when the training data
    holds files of a known test set, and when validation pairs have their
    clean image (exactly or nearly) in the training data.  Cost: a ``stat``
    per file, hashes of files whose size a manifest lists, and a decode of
    the clean images that could be duplicates (every validation target, and
    the training targets of a validation target's size, within 2 pixels).
    """
    started = time.process_time()
    where = f"TRAINING.TRAIN_DIR {train_set.root}"
    folder = _role_files(train_set, val_set if val_set is not None and not val_dir else None)
    train_known = identify(folder_facts(folder))
    if train_known.kind == "test":
        log.warning("%s is %s, a known test set (%s): a model trained on a test set cannot be scored on it",
                    where, train_known.manifest.label, train_known.status)
    for label, n in _test_sets_held(train_known):
        log.warning("%s holds %d file(s) of the test set %s: scores on that set will be optimistic", where, n, label)
    if val_set is not None:
        _warn_about_validation(train_set, val_set, val_dir, where)
    log.info("data checks (known sets, shared scenes) took %.1f s of CPU", time.process_time() - started)


def _warn_about_validation(train_set, val_set, val_dir: str | None, where: str) -> None:
    source = f"TRAINING.VAL_DIR {val_dir}" if val_dir else \
        f"the pairs TRAINING.VAL_SPLIT holds back from {train_set.root}"
    if val_dir:
        val_known = identify(folder_facts(_role_files(val_set)))
        if val_known.kind == "test":
            log.warning("%s is %s, a known test set (%s): %s. Validate on pairs held back from the training "
                        "set instead (TRAINING.VAL_SPLIT 0.05)", source, val_known.manifest.label, val_known.status,
                        TEST_SET_WARNING)
        for label, n in _test_sets_held(val_known):
            log.warning("%s holds %d file(s) of the test set %s: %s", source, n, label, TEST_SET_WARNING)
    shared = _shared_scenes(train_set, val_set)
    if shared:
        exact = sum(kind == "exact" for *_, kind in shared)
        examples = ", ".join(f"{v} {'=' if kind == 'exact' else '~'} {t}" for v, t, kind in shared[:SHOWN])
        log.warning("%d of the %d validation pairs (%s) have their clean image also in the training data of %s "
                    "(%d exact, %d near; validation/training: %s%s): validation scores are then optimistic and "
                    "the best epoch is picked on seen scenes", len({v for v, _, _ in shared}), len(val_set.pairs),
                    source, where, exact, len(shared) - exact, examples, " ..." if len(shared) > SHOWN else "")


def _test_sets_held(found: Identification) -> list[tuple[str, int]]:
    """Known test-set versions a folder holds some files of, when it is not mostly one of them."""
    kinds = {m.label: m.kind for m in load_manifests()}
    return [(label, n) for label, n in found.contains if kinds.get(label) == "test"]


def _pair_paths(dataset) -> list[tuple[Path, Path]]:
    """The (input, target) files of a dataset's pairs (a store lists them relative to its root)."""
    root = dataset.store.root if dataset.store is not None else None
    return [(root / p.input, root / p.target) if root is not None else (p.input, p.target) for p in dataset.pairs]


def _role_files(*datasets) -> dict[str, list[Path]]:
    """``{"input": [...], "target": [...]}``: the files of the datasets' pairs that exist (a store may lack them)."""
    paths = [pair for d in datasets if d is not None for pair in _pair_paths(d)
             if pair[0].is_file() and pair[1].is_file()]
    return {"input": [a for a, _ in paths], "target": [b for _, b in paths]}


def _fingerprint(dataset, i: int, path: Path) -> tuple:
    img = dataset.load(i)[1] if dataset.store is not None else read_image(path)
    return (f"target/{path.name}", None, pixel_sha256(img), img.shape[:2], *perceptual(img))


def _fingerprints(dataset, rows: list[int]) -> Fingerprints:
    paths = _pair_paths(dataset)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return Fingerprints.build(list(pool.map(lambda i: _fingerprint(dataset, i, paths[i][1]), rows)))


def _shared_scenes(train_set, val_set) -> list[tuple[str, str, str]]:
    """``(validation target, training target, kind)`` for clean images found in both (within SIZE_SLACK)."""
    val_sizes = {(p.height, p.width) for p in val_set.pairs}
    near = {(h + dh, w + dw) for h, w in val_sizes
            for dh in range(-SIZE_SLACK, SIZE_SLACK + 1) for dw in range(-SIZE_SLACK, SIZE_SLACK + 1)}
    rows = [i for i, p in enumerate(train_set.pairs) if (p.height, p.width) in near]
    if not rows:
        return []
    val = _fingerprints(val_set, list(range(len(val_set.pairs))))
    train = _fingerprints(train_set, rows)
    return [(val.names[i], train.names[j], kind) for i, j, kind in find_duplicates(val, train)]
