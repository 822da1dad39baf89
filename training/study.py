"""Ablation studies as files: one base config, shared overrides and named variants.

A study file (YAML) says what every variant of an ablation trains and how
the variants are compared (``scripts/ablate.py`` runs it)::

    name: dmsr_components          # the study's folder: <out>/<name>
    about: DMSR's components at the paper's scale
    base: training.yml             # any train.py config (relative to the current folder)
    out: checkpoints/ablations     # where study folders go (default: checkpoints/ablations)
    reference: full                # the variant the deltas are taken against (default: the first)
    overrides:                     # shared by every variant: config keys, dotted or nested
      OPTIM.NUM_EPOCHS: 100
    variants:                      # in table order
      full:
        about: as released
      no_fdsm:
        about: without FDSM (MPSRM only)
        overrides: {MODEL.ARGS.use_fdsm: false}
    test:                          # optional: score each variant's best checkpoint (test.py)
      input_dir: Datasets/Synthetic_Rain_Datasets/test
      datasets: [Rain100H, Rain100L]

Every variant's config is built and validated (:func:`training.config.load_config`)
before anything runs; a bad key or value is one :class:`StudyError` naming
the variant and the key.  Each variant is an ordinary ``train.py`` run in its
own session folder ``<study folder>/<MODEL.MODE>/<variant>``, so resume,
progress, TensorBoard and checkpoints work per variant.  The study folder
records the study's definition (:data:`DEFINITION_FILE`) and each variant's
resolved config (``configs/<variant>.yml``); a folder holding another study,
or a variant whose config changed after its run started, is refused.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from utils.errors import UserError
from utils.files import atomic_write

from .config import ConfigError, load_config, read_yaml_config

DEFINITION_FILE = "definition.json"
DONE_FILE = "study_done.json"  # in a variant's session folder once its train.py run has finished
DEFAULT_OUT = "checkpoints/ablations"
STUDY_KEYS = ("name", "about", "base", "out", "reference", "overrides", "variants", "test")
VARIANT_KEYS = ("about", "overrides")
TEST_KEYS = ("input_dir", "datasets", "tile")
SET_BY_RUNNER = ("MODEL.SESSION", "TRAINING.SAVE_DIR", "TRAINING.RESUME")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")


class StudyError(UserError, ValueError):
    """A study file, its variants or its folder are unusable; the message names the culprit."""


@dataclass
class Variant:
    name: str
    about: str
    changes: dict  # its own overrides (dotted key -> value): what it changes against the shared setting
    cfg: object  # the resolved, frozen config (yacs CfgNode)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.cfg.dump().encode()).hexdigest()


@dataclass
class Study:
    source: Path
    name: str
    about: str
    base: Path
    folder: Path
    reference: str
    shared: dict
    variants: list[Variant]
    test: dict | None = None
    by_name: dict = field(default_factory=dict)

    def run_dir(self, v: Variant) -> Path:
        return self.folder / v.cfg.MODEL.MODE / v.name

    def config_path(self, v: Variant) -> Path:
        return self.folder / "configs" / f"{v.name}.yml"

    def results_dir(self, v: Variant) -> Path:
        return self.folder / "results" / v.name

    def scores_path(self, v: Variant) -> Path:
        return self.results_dir(v) / "scores.json"

    def select(self, only: str | None) -> list[Variant]:
        """The variants named in ``only`` ("A,B"), in study order; all of them for None."""
        if not only:
            return list(self.variants)
        names = [n.strip() for n in only.split(",") if n.strip()]
        unknown = [n for n in names if n not in self.by_name]
        if unknown or not names:
            raise StudyError(f"--only {only!r}: no variant {', '.join(map(repr, unknown)) or 'named'} in "
                             f"{self.source} (its variants: {', '.join(self.by_name)})")
        return [v for v in self.variants if v.name in names]


def _flatten(node, where: str, prefix: str = "") -> dict:
    """``{"A": {"B": 1}, "C.D": 2}`` -> ``{"A.B": 1, "C.D": 2}``; values must be what a config holds."""
    if node is None:
        return {}
    if not isinstance(node, dict):
        raise StudyError(f"{where}: overrides must be a mapping of config keys to values, got {type(node).__name__}")
    flat = {}
    for key, value in node.items():
        if not isinstance(key, str) or not key:
            raise StudyError(f"{where}: config keys must be text, got {key!r}")
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, where, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def _mapping(value, where: str, allowed: tuple[str, ...]) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise StudyError(f"{where} must be a mapping, got {type(value).__name__}")
    unknown = [k for k in value if k not in allowed]
    if unknown:
        raise StudyError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(allowed)})")
    return value


def _text(value, where: str, default: str = "") -> str:
    if value is None:
        return default
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise StudyError(f"{where} must be text, got {type(value).__name__}")
    return str(value)


def load_study(path: str | Path, out: str | Path | None = None) -> Study:
    """Read, resolve and validate every variant of the study file ``path`` (nothing is written)."""
    path = Path(path)
    try:
        raw = read_yaml_config(path)
    except ConfigError as err:
        text = str(err).replace("YAML config", "YAML study file").replace("config file", "study file")
        raise StudyError(text.replace("a config", "a study file")) from None
    top = _mapping(raw, str(path), STUDY_KEYS)
    name = _text(top.get("name"), f"{path}: name", path.stem)
    if not _NAME.match(name):
        raise StudyError(f"{path}: name {name!r} must be a plain folder name (letters, digits, '_', '-', '.')")
    if "base" not in top:
        raise StudyError(f"{path}: no 'base' config (e.g. base: training.yml)")
    base = Path(_text(top["base"], f"{path}: base"))
    if not base.is_file():
        raise StudyError(f"{path}: base config {base} not found" + ("" if base.exists() else
                         " (paths in a study file are relative to the folder you run from)"))
    folder = Path(out if out is not None else _text(top.get("out"), f"{path}: out", DEFAULT_OUT)) / name
    shared = _flatten(top.get("overrides"), f"{path}: overrides")
    variants_raw = top.get("variants")
    if not isinstance(variants_raw, dict) or not variants_raw:
        raise StudyError(f"{path}: 'variants' must map variant names to their overrides (at least one)")
    variants = []
    for vname, body in variants_raw.items():
        vname = str(vname)
        where = f"{path}: variant {vname}"
        if not _NAME.match(vname):
            raise StudyError(f"{where}: a variant name must be a plain folder name (letters, digits, '_', '-', '.')")
        body = _mapping(body, where, VARIANT_KEYS)
        changes = _flatten(body.get("overrides"), where)
        variants.append(_resolve(path, base, folder, vname, _text(body.get("about"), f"{where}: about"),
                                 shared, changes))
    by_name = {v.name: v for v in variants}
    reference = _text(top.get("reference"), f"{path}: reference", variants[0].name)
    if reference not in by_name:
        raise StudyError(f"{path}: reference {reference!r} is not one of the variants ({', '.join(by_name)})")
    test = _test_section(top.get("test"), path)
    study = Study(path, name, _text(top.get("about"), f"{path}: about"), base, folder, reference, shared, variants,
                  test, by_name)
    for v in variants:
        _check_data_folders(study, v)
    return study


def _resolve(path: Path, base: Path, folder: Path, name: str, about: str, shared: dict, changes: dict) -> Variant:
    where = f"{path}: variant {name}"
    overrides = {**shared, **changes}
    for key in SET_BY_RUNNER:
        if key in overrides:
            raise StudyError(f"{where}: {key} is set by the study runner (each variant trains in "
                             f"<study folder>/<MODEL.MODE>/<variant>); remove it")
    opts = [x for key, value in overrides.items() for x in (key, value)]
    opts += ["MODEL.SESSION", name, "TRAINING.SAVE_DIR", str(folder)]
    try:
        cfg = load_config(str(base), opts)
    except ConfigError as err:
        raise StudyError(f"{where}: {err}") from None
    return Variant(name, about, changes, cfg)


def _test_section(raw, path: Path) -> dict | None:
    if raw is None:
        return None
    test = _mapping(raw, f"{path}: test", TEST_KEYS)
    if "input_dir" not in test:
        raise StudyError(f"{path}: test needs input_dir (a folder of test sets, or one set)")
    sets = test.get("datasets")
    if sets is not None and (not isinstance(sets, list) or not all(isinstance(s, str) and s for s in sets)):
        raise StudyError(f"{path}: test.datasets must be a list of set names, got {sets!r}")
    tile = test.get("tile")
    if tile is not None and (isinstance(tile, bool) or not isinstance(tile, int) or tile < 0):
        raise StudyError(f"{path}: test.tile must be a window size >= 0 (0 = whole images), got {tile!r}")
    input_dir = Path(_text(test["input_dir"], f"{path}: test.input_dir"))
    if not input_dir.is_dir():
        raise StudyError(f"{path}: test.input_dir {input_dir} is not a folder")
    return {"input_dir": input_dir, "datasets": sets, "tile": tile}


def _check_data_folders(study: Study, v: Variant) -> None:
    """The folders a variant reads exist (checked before any variant trains; their images when it starts)."""
    t = v.cfg.TRAINING
    folders = [("TRAINING.TRAIN_DIR", t.TRAIN_DIR)]
    if t.VAL_SPLIT <= 0 and t.VAL_DIR:
        folders.append(("TRAINING.VAL_DIR", t.VAL_DIR))
    for key, folder in folders:
        if not Path(folder).is_dir():
            raise StudyError(f"{study.source}: variant {v.name}: {key} {folder} is not a folder")


# ----------------------------------------------------------------------------- the study folder

def started(study: Study, v: Variant) -> bool:
    """Whether the variant's run has written anything that a changed config would invalidate."""
    run = study.run_dir(v)
    return any((run / n).exists() for n in ("model_latest.pth", "history.json", DONE_FILE))


def finished(study: Study, v: Variant) -> bool:
    """Whether the variant's ``train.py`` run ended (all epochs, or early stopping) with this config."""
    marker = study.run_dir(v) / DONE_FILE
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()).get("digest") == v.digest
    except (OSError, ValueError, AttributeError):
        return False


def check_folder(study: Study) -> None:
    """Refuse a study folder that holds another study, or a variant whose config changed after it started."""
    folder = study.folder
    if folder.exists() and not folder.is_dir():
        raise StudyError(f"the study folder {folder} is a file")
    definition = folder / DEFINITION_FILE
    if not definition.is_file():
        if folder.is_dir() and any(folder.iterdir()):
            raise StudyError(f"{folder} is not empty and holds no study ({DEFINITION_FILE} missing); refusing to "
                             "write into it - give the study another name or 'out' (or --out)")
        return
    try:
        recorded = json.loads(definition.read_text(encoding="utf-8"))
        other, other_source = recorded["name"], recorded.get("source", "?")
        digests = {k: v["digest"] for k, v in recorded["variants"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise StudyError(f"{definition}: not a study definition ({err}); move the folder away") from None
    if other != study.name:
        raise StudyError(f"{folder} already holds the study {other!r} (from {other_source}); give this study "
                         "another name or 'out' (or --out)")
    for v in study.variants:
        if v.name in digests and digests[v.name] != v.digest and started(study, v):
            changed = _changed_keys(study.config_path(v), v.cfg)
            raise StudyError(f"variant {v.name} of {folder} was started with another config "
                             f"({changed or 'see ' + str(study.config_path(v))}); its run would mix the two. Move "
                             f"{study.run_dir(v)} away to restart it, or give the study another name")


def _changed_keys(recorded: Path, cfg) -> str:
    try:
        before = _flatten(yaml.safe_load(recorded.read_text(encoding="utf-8")), str(recorded))
    except (OSError, yaml.YAMLError, StudyError):
        return ""
    now = _flatten(yaml.safe_load(cfg.dump()), "config")
    keys = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
    return ", ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in keys[:4])


def record(study: Study) -> None:
    """Write the study's definition and each variant's resolved config into the study folder."""
    previous = {}
    definition = study.folder / DEFINITION_FILE
    if definition.is_file():
        previous = json.loads(definition.read_text(encoding="utf-8")).get("variants", {})
    variants = {**previous, **{v.name: {"about": v.about, "changes": v.changes, "digest": v.digest}
                               for v in study.variants}}
    for v in study.variants:
        atomic_write(study.config_path(v), v.cfg.dump())
    atomic_write(definition, json.dumps({"name": study.name, "source": str(study.source), "base": str(study.base),
                                         "variants": variants}, indent=1) + "\n")
