"""Shared test fixtures: paths to the project and to the read-only ../shared data."""
from __future__ import annotations

import functools
import json
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
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not found: the shared data folder is only present on the team's machines and CI")
    return path


@functools.lru_cache(maxsize=2)
def mspfn_release_variables(variant: str) -> dict[str, np.ndarray]:
    """The TensorFlow variables of an MSPFN golden graph (``m17n1`` or ``m17``), regenerated exactly.

    The rule of ``../shared/reference/mspfn/README.md``: one
    ``RandomState(0)``, variables visited in ``sorted()`` order of their full
    names, each ``std * standard_normal(shape)`` cast to float32.  Names keep
    their ``:0``.  Skips when the reference folder is absent.
    """
    spec = json.loads(require_shared("reference", "mspfn", f"{variant}_variables.json").read_text())["variables"]
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


from hostile_helpers import small_fs, world  # noqa: E402, F401 - fixtures of the hostile-input suite
