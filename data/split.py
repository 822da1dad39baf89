"""A validation split held back from the training folder (``TRAINING.VAL_SPLIT``).

The DMSR release validates every epoch on a *test* set and keeps the best
epoch, so its figure on that set is selected on the data it reports.  With
``TRAINING.VAL_SPLIT`` the trainer instead holds back some training pairs:

* ``VAL_SPLIT`` is a count (``20``: 20 pairs) or a fraction (``0.1``: 10 %,
  rounded, at least one pair); ``0`` turns it off (the release's behaviour).
* Which pairs are held back depends only on the list of pairs (in natural
  order) and ``TRAINING.VAL_SPLIT_SEED`` - not on the training seed, the
  number of workers or ranks - so every process of a run, a resumed run and
  runs with other training seeds validate on the same pairs.
* The held-back pairs are excluded from training and listed in the run's
  folder (:data:`SPLIT_FILE`); a resumed run checks that the folder still
  gives the same list.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from utils.errors import UserError

from .folders import ImagePair

SPLIT_FILE = "val_split.txt"
_SPLIT_STREAM = 0x5A11D  # keeps the split's random stream apart from every other use of the seed


class SplitError(UserError, ValueError):
    """The validation split cannot be made (too large, or the training folder changed since the run began)."""


def split_size(val_split: float, total: int) -> int:
    """How many of ``total`` pairs ``VAL_SPLIT`` holds back (a count >= 1, or a fraction in (0, 1))."""
    if val_split <= 0:
        return 0
    if val_split < 1:
        return max(1, round(val_split * total))
    if val_split != math.floor(val_split):
        raise SplitError(f"TRAINING.VAL_SPLIT {val_split:g}: a count of pairs must be a whole number "
                         "(or give a fraction below 1)")
    return int(val_split)


def split_pairs(pairs: list[ImagePair], val_split: float, seed: int = 0,
                source: str = "TRAINING.TRAIN_DIR") -> tuple[list[ImagePair], list[ImagePair]]:
    """``(train, val)``: the pairs to train on and those held back, each in the order of ``pairs``."""
    k = split_size(val_split, len(pairs))
    if k == 0:
        return list(pairs), []
    if k >= len(pairs):
        raise SplitError(f"TRAINING.VAL_SPLIT {val_split:g} holds back {k} of the {len(pairs)} pairs of {source}, "
                         "leaving nothing to train on; lower it")
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence((_SPLIT_STREAM, int(seed)))))
    held = set(rng.permutation(len(pairs))[:k].tolist())
    return ([p for i, p in enumerate(pairs) if i not in held], [p for i, p in enumerate(pairs) if i in held])


def split_listing(val: list[ImagePair], total: int, val_split: float, seed: int, train_dir: str) -> str:
    """The text of :data:`SPLIT_FILE`: a commented header, then one input file name per line."""
    header = [f"# validation split: {len(val)} of the {total} pairs of {train_dir}, held back from training",
              f"# (TRAINING.VAL_SPLIT {val_split:g}, TRAINING.VAL_SPLIT_SEED {seed}); input file names, one a line"]
    return "\n".join(header + [p.input.name for p in val]) + "\n"


def read_listing(path: Path) -> list[str]:
    """The file names :func:`split_listing` wrote to ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SplitError(f"cannot read the recorded validation split {path}: {err}") from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def check_same_split(val: list[ImagePair], recorded: Path) -> None:
    """Refuse to resume when the held-back pairs differ from those the run started with."""
    before, now = read_listing(recorded), [p.input.name for p in val]
    if before == now:
        return
    gone = sorted(set(before) - set(now))
    new = sorted(set(now) - set(before))
    detail = "; ".join(part for part in (
        f"recorded but not held back now: {', '.join(gone[:5])}" if gone else "",
        f"held back now but not recorded: {', '.join(new[:5])}" if new else "") if part) or "another order"
    raise SplitError(f"the validation split differs from the one this run started with ({recorded}): {detail}. "
                     "The training folder or TRAINING.VAL_SPLIT(_SEED) changed; restore them, or start a new "
                     "MODEL.SESSION")
