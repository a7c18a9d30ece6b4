"""The dataset registry, the raw-dataset record every loader returns, and stratified sampling.

Loaders registered in ``DATASETS`` take one argument, ``root`` (``None`` → the loader's own
default), and return a :class:`RawDataset` of uint8 NCHW images and int64 labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from robust.errors import ConfigError
from robust.registry import Registry

DATASETS: Registry = Registry("dataset", "data.name")

# Fixed seed for the train/test split of datasets that ship as one pool (digits, mnist10k).
# It is deliberately independent of the run seed: changing the run seed must never move an
# image from the test split into the training split.
SPLIT_SEED = 0


@dataclass(frozen=True)
class RawDataset:
    """A dataset as loaded from its source, before any subsetting."""

    x_train: torch.Tensor  # uint8, N×C×H×W
    y_train: torch.Tensor  # int64, N
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]
    source: str  # human-readable provenance

    def __post_init__(self) -> None:
        # A loader bug (channel-last images, float labels, 1-based labels) caught here names
        # the dataset instead of surfacing as a shape error deep inside training.
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.dtype != torch.uint8 or x.dim() != 4:
                raise ValueError(f"{self.source}: x_{split} must be uint8 N×C×H×W, got {x.dtype} {tuple(x.shape)}")
            if y.dtype != torch.int64 or y.shape != (x.shape[0],):
                raise ValueError(f"{self.source}: y_{split} must be int64 of length {x.shape[0]}, got {y.dtype} {tuple(y.shape)}")
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= len(self.classes)):
                raise ValueError(f"{self.source}: y_{split} holds labels outside 0..{len(self.classes) - 1}")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(f"{self.source}: train images {tuple(self.x_train.shape[1:])} and test images {tuple(self.x_test.shape[1:])} differ in shape")


def class_allocation(y: torch.Tensor, n: int, num_classes: int) -> torch.Tensor:
    """How many of ``n`` samples each class gets, proportional to its share of ``y``.

    Largest-remainder rounding, ties to the lower class index, so the counts always sum to ``n``.
    """
    counts = torch.bincount(y, minlength=num_classes)
    total = int(counts.sum())
    if not 0 <= n <= total:
        raise ValueError(f"cannot take {n} of {total} samples")
    quota = counts.to(torch.float64) * n / max(total, 1)
    alloc = quota.floor().to(torch.int64)
    short = n - int(alloc.sum())
    if short:
        # Stable sort of the fractional parts: equal remainders go to the lower class index.
        order = torch.argsort(-(quota - alloc), stable=True)
        alloc[order[:short]] += 1
    return alloc


def stratified_indices(y: torch.Tensor, n: int, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` indices into ``y``, class proportions preserved, returned in a seeded random order.

    The random order means any prefix of the result is itself close to class-balanced.
    """
    alloc = class_allocation(y, n, num_classes)
    perm = torch.randperm(len(y), generator=generator)
    # Stable sort by label keeps the random order within each class; each sample's rank
    # inside its class then decides whether it is kept.
    by_class = perm[torch.argsort(y[perm], stable=True)]
    labels = y[by_class]
    counts = torch.bincount(y, minlength=num_classes)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(y)) - starts[labels]
    chosen = by_class[rank < alloc[labels]]
    return chosen[torch.randperm(len(chosen), generator=generator)]


def split_pool(
    x: torch.Tensor, y: torch.Tensor, n_train: int, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stratified train/test split of one pool with the fixed :data:`SPLIT_SEED`."""
    generator = torch.Generator().manual_seed(SPLIT_SEED)
    train = stratified_indices(y, n_train, num_classes, generator)
    in_train = torch.zeros(len(y), dtype=torch.bool)
    in_train[train] = True
    test = torch.nonzero(~in_train).squeeze(1)
    return x[train], y[train], x[test], y[test]


def require_path(path: Path, expected: str) -> Path:
    """``path`` if it exists, else a ConfigError on ``data.root`` saying what should be there."""
    if not path.exists():
        raise ConfigError("data.root", f"{path} not found; expected {expected}")
    return path
