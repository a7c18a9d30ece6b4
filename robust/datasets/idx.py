"""IDX files (the MNIST file format) and ``mnist10k``, the real MNIST test set split for offline work.

``mnist10k`` is the 10,000-image MNIST test set (LeCun et al., 1998) split 8,000 train / 2,000
test, stratified, with the fixed ``SPLIT_SEED``. It is not MNIST: the training set is a fifth
of MNIST's 60,000 images, so accuracies are not comparable with published MNIST numbers.
"""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np
import torch

from robust.datasets.checksums import digest, require_digest
from robust.datasets.core import DATASETS, RawDataset, require_path, split_pool
from robust.errors import ConfigError

log = logging.getLogger(__name__)

IDX_UBYTE = 0x08
# md5 of the decompressed files of LeCun's distribution; the image digest is the one
# published with the offline data copy, the label digest was computed from the same copy.
MNIST_TEST_MD5 = {
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
# sha256 of the same decompressed files, computed from the offline copy in ../shared/data/mnist
# (`zcat t10k-…-ubyte.gz | sha256sum`); decompressed, so a plain or re-gzipped copy passes too.
# The .gz files there: images 167310007f03058885c7e95e6c0b19c20de5c7fd3031f4cbdadc9014a523d80b,
# labels fc607395669ec21321ea83e4b82c0544b7e8e63ff5b34337c06bc0a17cc0da3c.
MNIST_TEST_SHA256 = {
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
DEFAULT_MNIST10K_ROOT = "../shared/data/mnist"
MNIST10K_TRAIN = 8000


def _read_idx(path: Path, ndim: int, digests: dict[str, str]) -> np.ndarray:
    """The array in ``path``; ``digests`` maps hashlib names to hex digests of the decompressed bytes."""
    raw = require_path(Path(path), "an IDX file (plain or .gz)").read_bytes()
    if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the file is called
        raw = gzip.decompress(raw)
    for algorithm, expected in digests.items():
        require_digest(path, digest(raw, algorithm), expected, algorithm, "the decompressed file")
    header = 4 + 4 * ndim
    if len(raw) < header or raw[0:2] != b"\x00\x00":
        raise ConfigError("data.root", f"{path} is not an IDX file (bad magic number)")
    if raw[2] != IDX_UBYTE or raw[3] != ndim:
        raise ConfigError("data.root", f"{path}: expected an unsigned-byte IDX file of {ndim} dimensions, got type 0x{raw[2]:02x} with {raw[3]} dimensions")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    payload = np.frombuffer(raw, dtype=np.uint8, offset=header)
    if payload.size != int(np.prod(dims)):
        raise ConfigError("data.root", f"{path}: header promises {dims} = {int(np.prod(dims))} bytes, file holds {payload.size}")
    return payload.reshape(dims)


def load_idx(
    images_path: str | Path,
    labels_path: str | Path,
    *,
    md5: dict[str, str] | None = None,
    sha256: dict[str, str] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read an IDX image file (N×H×W ubyte) and its label file (N ubyte), gzipped or plain.

    Returns (uint8 N×1×H×W, int64 N). ``md5`` and ``sha256`` map a file name without ``.gz``
    to the digest of its decompressed bytes; listed files are verified before parsing.
    """
    images_path, labels_path = Path(images_path), Path(labels_path)

    def digests(path: Path) -> dict[str, str]:
        name = path.name.removesuffix(".gz")
        tables = {"md5": md5 or {}, "sha256": sha256 or {}}
        return {algorithm: table[name] for algorithm, table in tables.items() if name in table}

    images = _read_idx(images_path, 3, digests(images_path))
    labels = _read_idx(labels_path, 1, digests(labels_path))
    if len(images) != len(labels):
        raise ConfigError("data.root", f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels")
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


@DATASETS.register("mnist10k")
def load_mnist10k(root: str | Path | None = None) -> RawDataset:
    """The MNIST test set from ``root`` (default ``../shared/data/mnist``), split 8,000 / 2,000."""
    root_path = Path(root if root is not None else DEFAULT_MNIST10K_ROOT)
    expected = "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (or the same without .gz)"
    require_path(root_path, f"a folder holding {expected}")
    paths = []
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        candidates = [root_path / f"{stem}.gz", root_path / stem]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise ConfigError("data.root", f"{root_path} lacks {stem}.gz; expected {expected}")
        paths.append(found)
    x, y = load_idx(*paths, md5=MNIST_TEST_MD5, sha256=MNIST_TEST_SHA256)
    x_train, y_train, x_test, y_test = split_pool(x, y, MNIST10K_TRAIN, 10)
    source = f"{paths[0]} + {paths[1]} (MNIST test set, stratified {MNIST10K_TRAIN}/{len(y) - MNIST10K_TRAIN} split)"
    return RawDataset(x_train, y_train, x_test, y_test, [str(d) for d in range(10)], source)
