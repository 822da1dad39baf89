"""Shared test fixtures: paths to the project and to the read-only ../shared data."""
from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REFERENCE = SHARED / "reference" / "dmsr"

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def require_shared(*parts: str) -> Path:
    """Path inside ../shared, or skip the test with a reason when it is absent (a user's clone)."""
    _shared_users.note()
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not found: the shared data folder is only present on the team's machines and CI")
    return path


def mspfn_release_variables(variant: str) -> dict[str, np.ndarray]:
    """The TensorFlow variables of an MSPFN golden graph (``m17n1`` or ``m17``), regenerated exactly.

    The rule of ``../shared/reference/mspfn/README.md``: one
    ``RandomState(0)``, variables visited in ``sorted()`` order of their full
    names, each ``std * standard_normal(shape)`` cast to float32.  Names keep
    their ``:0``.  Skips when the reference folder is absent.  Cached; every
    call checks for the folder (so that each caller is known to need it).
    """
    return _mspfn_release_variables(require_shared("reference", "mspfn", f"{variant}_variables.json"))


@functools.lru_cache(maxsize=2)
def _mspfn_release_variables(path: Path) -> dict[str, np.ndarray]:
    spec = json.loads(path.read_text())["variables"]
    rng = np.random.RandomState(0)
    return {name: (spec[name]["std"] * rng.standard_normal(spec[name]["shape"])).astype(np.float32)
            for name in sorted(spec)}


@pytest.fixture
def device() -> torch.device:
    """CUDA when present (so GPU paths run under the same tests), else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ----------------------------------------------------------------------------- which tests use ../shared
# CI runs the suite once with ../shared beside the checkout, and then, in a fresh clone with nothing beside
# it, only the tests that used ../shared (the only ones that can behave differently there: they must skip
# or pass, never fail).  DERAIN_SHARED_USERS=FILE writes the node ids of the tests (or the test files, when
# it happened while collecting them) that called require_shared or opened, listed or passed to a
# subprocess a path inside ../shared (followed through links), directly or through a fixture that did so
# (a module-scoped fixture is set up once, for its first test, but every test using it depends on it);
# DERAIN_ONLY_TESTS=FILE runs only the tests such a file names.  See .ci/run and docs/TESTING.md.

class _SharedUsers:
    WATCHED = frozenset({"open", "os.listdir", "os.scandir", "subprocess.Popen", "tests.nobody_worker"})
    COMMANDS = frozenset({"subprocess.Popen", "tests.nobody_worker"})  # (executable, argv, cwd, ...)

    def __init__(self, log: str | None):
        self.log, self.current, self.users = log, None, set()
        self.fixtures: list[str] = []  # the fixtures being set up now, innermost last
        self.shared_fixtures: set[str] = set()
        self.shared = os.path.realpath(SHARED)

    def note(self) -> None:
        if self.log and self.current:
            self.users.add(self.current)
            self.shared_fixtures.update(self.fixtures)

    def _inside(self, value) -> bool:
        if isinstance(value, (list, tuple)):
            return any(self._inside(v) for v in value)
        if not isinstance(value, (str, bytes, os.PathLike)):
            return False
        text = os.fsdecode(value)
        if "\0" in text:
            return False
        real = os.path.realpath(text)
        if real == self.shared or real.startswith(self.shared + os.sep):
            return True
        return text.startswith("-") and "=" in text and self._inside(text.split("=", 1)[1])  # --opt=PATH

    def audit(self, event: str, args: tuple) -> None:
        if event in self.WATCHED and self.current and (self.current not in self.users or self.fixtures):
            paths = (args[0], args[1], args[2]) if event in self.COMMANDS else args[:1]
            if self._inside(paths):
                self.note()


_shared_users = _SharedUsers(os.environ.get("DERAIN_SHARED_USERS"))


def pytest_configure(config):
    if _shared_users.log:
        sys.addaudithook(_shared_users.audit)


@pytest.hookimpl(hookwrapper=True)
def pytest_collectstart(collector):
    if isinstance(collector, pytest.Module):
        _shared_users.current = collector.nodeid
    yield


def pytest_collection_finish(session):
    _shared_users.current = None


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef, request):
    _shared_users.fixtures.append(fixturedef.argname)
    yield
    _shared_users.fixtures.pop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _shared_users.current = item.nodeid
    yield
    _shared_users.current = None


def pytest_collection_modifyitems(config, items):
    only = os.environ.get("DERAIN_ONLY_TESTS")
    if not only:
        return
    names = set(Path(only).read_text().split("\n")) - {""}
    keep, drop = [], []
    for item in items:
        (keep if item.nodeid in names or item.nodeid.split("::", 1)[0] in names else drop).append(item)
    config.hook.pytest_deselected(items=drop)
    items[:] = keep


def pytest_sessionfinish(session, exitstatus):
    if _shared_users.log:  # added to what earlier sessions wrote there (CI runs the slow tests apart)
        _shared_users.users.update(item.nodeid for item in session.items
                                   if _shared_users.shared_fixtures & set(item.fixturenames))
        log = Path(_shared_users.log)
        earlier = set(log.read_text().split("\n")) - {""} if log.exists() else set()
        log.write_text("".join(f"{name}\n" for name in sorted(earlier | _shared_users.users)))


from hostile_helpers import small_fs, world  # noqa: E402, F401 - fixtures of the hostile-input suite
