"""Built-in datasets: scikit-learn's digits and the torchvision classics.

- ``digits``: the UCI optical-recognition handwritten digits (Alpaydin & Kaynak, 1998) as shipped
  with scikit-learn: 1,797 real 8×8 images, values 0..16. Embedded, so it runs on any fresh
  machine. Simplified relative to MNIST: the images are upsampled to 28×28 so that MNIST
  architectures accept them; they carry no more detail than the 8×8 originals.
- ``mnist`` (LeCun et al., 1998), ``svhn`` (Netzer et al., 2011), ``cifar10`` / ``cifar100``
  (Krizhevsky, 2009): the standard train/test splits, unchanged, through ``torchvision.datasets``;
  the files are checked against torchvision's md5 tables first (``robust.datasets.checksums``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from robust.datasets.checksums import verify_torchvision_files
from robust.datasets.core import DATASETS, RawDataset, split_pool
from robust.datasets.idx import MNIST_TEST_MD5
from robust.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_RAW_ROOT = "data/raw"
DIGITS_SIZE = 28
DIGITS_TRAIN_FRACTION = 0.8


@DATASETS.register("digits")
def load_digits(root: str | Path | None = None) -> RawDataset:
    """scikit-learn digits, scaled to 0..255, bilinearly resized to 1×28×28, split 80/20.

    The split is stratified and drawn with the fixed ``SPLIT_SEED`` (not the run seed), so
    every run of every experiment sees the same test images.
    """
    from sklearn.datasets import load_digits as sk_load_digits

    if root is not None:
        log.warning("dataset 'digits' is embedded in scikit-learn; data.root=%s is ignored", root)
    bunch = sk_load_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32)).unsqueeze(1) * (255.0 / 16.0)
    # Resize in float and quantise once, so the 8×8 → 28×28 upsampling adds no extra rounding.
    resized = F.interpolate(images, size=(DIGITS_SIZE, DIGITS_SIZE), mode="bilinear", align_corners=False, antialias=False)
    x = resized.round().clamp(0, 255).to(torch.uint8)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    n_train = round(DIGITS_TRAIN_FRACTION * len(y))
    x_train, y_train, x_test, y_test = split_pool(x, y, n_train, 10)
    return RawDataset(x_train, y_train, x_test, y_test, [str(d) for d in range(10)], "sklearn.datasets.load_digits")


def _nchw_uint8(data, layout: str) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(data)) if not isinstance(data, torch.Tensor) else data
    if layout == "NHW":
        x = x.unsqueeze(1)
    elif layout == "NHWC":
        x = x.permute(0, 3, 1, 2)
    return x.to(torch.uint8).contiguous()


def _labels(data) -> torch.Tensor:
    return torch.as_tensor(np.asarray(data), dtype=torch.int64)


def _open_torchvision(name: str, cls: type, root: Path, split_kwargs: dict, expected: str, known: dict[str, str]):
    """Build a torchvision dataset offline first, then with download; one ConfigError if both fail."""
    try:
        return cls(str(root), download=False, **split_kwargs)
    except (RuntimeError, OSError) as offline_error:
        log.info("%s not found under %s (%s); trying to download", name, root, offline_error)
        try:
            dataset = cls(str(root), download=True, **split_kwargs)
        except (RuntimeError, OSError) as online_error:
            # a download that arrived corrupt is named with its digests rather than as "not found"
            verify_torchvision_files(cls, root, known)
            raise ConfigError(
                "data.root",
                f"dataset '{name}' is not under {root} and could not be downloaded ({online_error}); "
                f"expected {expected} under {root}",
            ) from online_error
        verify_torchvision_files(cls, root, known)
        return dataset


def _torchvision_loader(
    name: str, cls_name: str, layout: str, expected: str, split_kwargs: dict[str, dict],
    known: dict[str, str] | None = None,
):
    """``known``: md5 of decompressed files torchvision's tables do not cover (file name → md5)."""

    def load(root: str | Path | None = None) -> RawDataset:
        import torchvision.datasets as tvd

        cls = getattr(tvd, cls_name)
        root_path = Path(root if root is not None else DEFAULT_RAW_ROOT)
        # before torchvision opens anything: MNIST would read a corrupt file without complaint
        verify_torchvision_files(cls, root_path, known)
        parts = {}
        for split in ("train", "test"):
            ds = _open_torchvision(name, cls, root_path, split_kwargs[split], expected, known or {})
            labels = ds.labels if hasattr(ds, "labels") else ds.targets  # SVHN names them .labels
            parts[split] = (_nchw_uint8(ds.data, layout), _labels(labels))
        # SVHN has no .classes; torchvision maps its digit "10" to label 0, so labels are the digits.
        classes = list(getattr(ds, "classes", None) or [str(d) for d in range(10)])
        return RawDataset(*parts["train"], *parts["test"], classes, f"torchvision.datasets.{cls_name}(root='{root_path}')")

    load.__name__ = f"load_{name}"
    load.__doc__ = (
        f"torchvision.datasets.{cls_name}, standard train/test split, from ``root`` (default {DEFAULT_RAW_ROOT}); "
        "files are checked against torchvision's md5 tables."
    )
    return DATASETS.register(name)(load)


_TRAIN_TEST = {"train": {"train": True}, "test": {"train": False}}
load_mnist = _torchvision_loader(
    "mnist", "MNIST", "NHW",
    "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]", _TRAIN_TEST, known=MNIST_TEST_MD5,
)
load_svhn = _torchvision_loader(
    "svhn", "SVHN", "NCHW",
    "train_32x32.mat and test_32x32.mat", {"train": {"split": "train"}, "test": {"split": "test"}},
)
load_cifar10 = _torchvision_loader(
    "cifar10", "CIFAR10", "NHWC",
    "cifar-10-batches-py/ (data_batch_1..5, test_batch, batches.meta)", _TRAIN_TEST,
)
load_cifar100 = _torchvision_loader(
    "cifar100", "CIFAR100", "NHWC",
    "cifar-100-python/ (train, test, meta)", _TRAIN_TEST,
)
