"""The identity "model": returns its input unchanged.

Scoring the rainy input itself (``test.py --model Identity``) gives the
"Input" row of the papers' tables, and tests use it to check that the test
pipeline (windows, padding, writing, scoring) changes nothing.
"""
from __future__ import annotations

import torch
from torch import nn

from .spec import ModelSpec


class Identity(nn.Module):
    """Returns the input image as the derained output; it has no weights."""

    spec = ModelSpec()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x
