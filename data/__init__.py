"""Datasets, loaders and rain synthesis.

``build_dataset(name, **kwargs)`` builds a dataset by name:

* ``paired_train`` (:class:`PairedTrainDataset`): random aligned patches with
  a random flip/rotation, items ``(input, target, name)``;
* ``paired_val`` (:class:`PairedValDataset`): centre crops or whole images,
  items ``(input, target, name)``;
* ``paired_test`` (:class:`PairedTestDataset`): whole images, items
  ``{"input", "name", "path"}`` plus ``"target"`` when the folder has targets.
"""
from __future__ import annotations

from torch.utils.data import Dataset

from .loader import build_train_loader, sample_rng, seed_worker, set_epoch
from .paired import DatasetError, ImagePair, PairedTestDataset, PairedTrainDataset, PairedValDataset

DATASETS = {
    "paired_train": PairedTrainDataset,
    "paired_val": PairedValDataset,
    "paired_test": PairedTestDataset,
}


def build_dataset(name: str, **kwargs) -> Dataset:
    """Build the dataset registered as ``name`` with its keyword arguments."""
    try:
        cls = DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; valid names: {', '.join(sorted(DATASETS))}") from None
    return cls(**kwargs)


__all__ = [
    "DATASETS",
    "DatasetError",
    "ImagePair",
    "PairedTestDataset",
    "PairedTrainDataset",
    "PairedValDataset",
    "build_dataset",
    "build_train_loader",
    "sample_rng",
    "seed_worker",
    "set_epoch",
]
