"""Checksums of raw data files: one readable error for a corrupt or different file.

Offline copies (``../shared/data``) are checked against sha256 digests recorded in their
loaders (``idx.py``, ``imagefolder.py``). torchvision downloads are checked against the md5
tables torchvision ships with each dataset class: torchvision verifies an archive's md5 after
downloading it, and CIFAR and SVHN check their files' md5 on every load, but MNIST only checks
that its decompressed files exist. ``verify_torchvision_files`` therefore checks every file
torchvision lists that is present, before torchvision opens it, so a corrupt file is named
with both digests instead of surfacing as "not found or corrupted" and a failed download.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
from collections.abc import Iterable
from pathlib import Path

from robust.errors import ConfigError

log = logging.getLogger(__name__)

FIX = "delete it and download it again, or point data.root at an intact copy"


def digest(data: bytes, algorithm: str) -> str:
    return hashlib.new(algorithm, data).hexdigest()


def file_digest(path: Path, algorithm: str) -> str:
    # streamed (hashlib.file_digest needs Python 3.11): SVHN's train file is 180 MB
    hasher = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            hasher.update(block)
    return hasher.hexdigest()


def require_digest(path: Path | str, actual: str, expected: str, algorithm: str, what: str = "") -> None:
    """ConfigError on ``data.root`` naming the file, both digests and the fix, if they differ."""
    if actual != expected:
        raise ConfigError(
            "data.root", f"{path}: {algorithm} of {what or 'the file'} is {actual}, expected {expected}; {FIX}"
        )


def tree_sha256(files: Iterable[tuple[str, bytes]]) -> str:
    """sha256 of a ``sha256sum`` listing of (relative name, bytes) in sorted name order.

    The same as ``find <names> -type f | LC_ALL=C sort | xargs sha256sum | sha256sum`` in the
    folder the names are relative to, whether the files come from a folder or an archive.
    """
    listing = "".join(f"{hashlib.sha256(blob).hexdigest()}  {name}\n" for name, blob in sorted(files))
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()


def _torchvision_md5s(cls: type, root: Path) -> list[tuple[Path, str]]:
    """(path, md5) of the files torchvision's ``cls`` reads from ``root``, from its own tables."""
    if hasattr(cls, "train_list"):  # CIFAR10, CIFAR100
        files = [*cls.train_list, *cls.test_list, (cls.meta["filename"], cls.meta["md5"])]
        return [(root / cls.base_folder / name, md5) for name, md5 in files]
    if hasattr(cls, "split_list"):  # SVHN
        return [(root / name, md5) for split in ("train", "test") for _, name, md5 in [cls.split_list[split]]]
    if hasattr(cls, "resources"):  # MNIST: the md5 of each downloaded .gz
        return [(root / cls.__name__ / "raw" / name, md5) for name, md5 in cls.resources]
    log.warning("torchvision.datasets.%s has no md5 table known here; its files are not verified", cls.__name__)
    return []


def verify_torchvision_files(cls: type, root: Path, known: dict[str, str] | None = None) -> None:
    """Check every file ``cls`` lists that exists under ``root`` against torchvision's md5.

    MNIST's decompressed files are checked against their verified archive when it is there,
    else against ``known`` (file name → md5 of the decompressed file) when listed.
    """
    known = known or {}
    for path, md5 in _torchvision_md5s(cls, root):
        archive_ok = path.is_file()
        if archive_ok:
            require_digest(path, file_digest(path, "md5"), md5, "md5")
        if path.suffix != ".gz":
            continue
        plain = path.with_suffix("")
        if not plain.is_file():
            continue
        if archive_ok:
            expected = digest(gzip.decompress(path.read_bytes()), "sha256")
            require_digest(plain, file_digest(plain, "sha256"), expected, "sha256", f"the file (unpacked {path.name})")
        elif plain.name in known:
            require_digest(plain, file_digest(plain, "md5"), known[plain.name], "md5")
        else:
            log.warning("%s: no archive beside it and no recorded digest; not verified", plain)
