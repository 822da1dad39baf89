"""Datasets, loaders and rain synthesis.

``build_dataset(name, **kwargs)`` builds a dataset by name:

* ``paired_train`` (:class:`PairedTrainDataset`): random aligned patches with
  a random flip/rotation, items ``(input, target, name)``;
* ``paired_val`` (:class:`PairedValDataset`): centre crops or whole images,
  items ``(input, target, name)``;

Test sets (whole images, optional targets) are found by
:func:`data.testsets.find_test_sets`; dataset folders are paired and
checked by :mod:`data.folders`.  Which known set version a folder holds
(:mod:`data.manifest`, ``data/manifests/``), its duplicate images
(:mod:`data.duplicates`) and the checks built on them (``check_data.py``,
score versions, training start-up warnings: :mod:`data.provenance`) are
described in ``docs/DATA.md``.
"""
from __future__ import annotations

from torch.utils.data import Dataset

from utils.registry import Registry

from .folders import DatasetError, ImagePair
from .loader import build_train_loader, sample_rng, seed_worker, set_epoch
from .paired import PairedTrainDataset, PairedValDataset

DATASETS = Registry("dataset", {
    "paired_train": PairedTrainDataset,
    "paired_val": PairedValDataset,
})


def build_dataset(name: str, **kwargs) -> Dataset:
    """Build the dataset registered as ``name`` with its keyword arguments."""
    return DATASETS.get_class(name)(**kwargs)


__all__ = [
    "DATASETS",
    "DatasetError",
    "ImagePair",
    "PairedTrainDataset",
    "PairedValDataset",
    "build_dataset",
    "build_train_loader",
    "sample_rng",
    "seed_worker",
    "set_epoch",
]
