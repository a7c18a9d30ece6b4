"""Dataset loaders; importing this package fills the ``DATASETS`` registry.

See ``robust.data`` for the prepared-on-disk format the rest of the library reads.
"""

from robust.datasets import builtin, idx, imagefolder  # noqa: F401  (registration side effects)
from robust.datasets.core import DATASETS, SPLIT_SEED, RawDataset, class_allocation, stratified_indices
from robust.datasets.idx import load_idx
from robust.datasets.imagefolder import load_imagefolder

__all__ = [
    "DATASETS",
    "SPLIT_SEED",
    "RawDataset",
    "class_allocation",
    "load_idx",
    "load_imagefolder",
    "stratified_indices",
]
