"""Shared test fixtures: paths to the project and to the read-only ../shared data."""
from __future__ import annotations

import sys
from pathlib import Path

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


@pytest.fixture
def device() -> torch.device:
    """CUDA when present (so GPU paths run under the same tests), else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


from hostile_helpers import small_fs, world  # noqa: E402, F401 - fixtures of the hostile-input suite
