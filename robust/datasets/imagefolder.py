"""Class-per-folder image datasets, from a folder or straight from a .tar.gz, and ``cifar10-jpeg``.

``cifar10-jpeg`` is CIFAR-10 (Krizhevsky, 2009), all 50,000 train / 10,000 test images, in a
public JPEG re-encoding (lossy, about quality 75). Faithful in content and split; simplified in
that the pixels carry JPEG artefacts, so clean and robust accuracies differ slightly from those
on the original PNG-exact CIFAR-10.
"""

from __future__ import annotations

import bz2
import gzip
import io
import logging
import lzma
import os
import tarfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from robust.datasets.checksums import require_digest, tree_sha256
from robust.datasets.core import DATASETS, RawDataset, require_path
from robust.errors import ConfigError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
SPLITS = ("train", "test")
LAYOUT = "<split>/<class>/<image>.jpg|png with split in {train, test}"
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
DEFAULT_CIFAR10_JPEG_ROOT = "../shared/data/cifar10-jpeg.tar.gz"
# ``tree_sha256`` of the 60,000 JPEG files, computed from the offline copy in ../shared/data:
#   tar xzf cifar10-jpeg.tar.gz && cd cifar10-jpeg
#   find train test -type f | LC_ALL=C sort | xargs sha256sum | sha256sum
# Over the images, not the archive, so an unpacked folder or a re-packed archive passes too.
# (The archive itself: sha256 a6ef8cef6162174d500d0d4f10dddf731fae2ef805fb204fef0679d54d046eaa.)
CIFAR10_JPEG_SHA256 = "f10d4c9e536a564f17fa5e8d68ba087d1235e60cd1f21700e11ff43f0647bbb0"


def _image_key(parts: tuple[str, ...]) -> tuple[str, str] | None:
    """(split, class) for a path ending in <split>/<class>/<image>, else None (skipped)."""
    if len(parts) < 3 or os.path.splitext(parts[-1])[1].lower() not in IMAGE_SUFFIXES:
        return None
    if parts[-3] not in SPLITS or parts[-1].startswith("."):
        return None
    return parts[-3], parts[-2]


def _decompress(raw: bytes) -> bytes:
    for magic, module in ((b"\x1f\x8b", gzip), (b"BZh", bz2), (b"\xfd7zXZ", lzma)):
        if raw.startswith(magic):
            return module.decompress(raw)
    return raw


def _read_members(path: Path) -> dict[str, tuple[str, str, bytes]]:
    """Path inside the archive/folder → (split, class, encoded bytes)."""
    found: dict[str, tuple[str, str, bytes]] = {}
    if path.is_dir():
        for file in path.rglob("*"):
            rel = file.relative_to(path)
            key = _image_key(rel.parts)
            if key is not None and file.is_file():
                found[rel.as_posix()] = (*key, file.read_bytes())
        return found
    # The whole (decompressed) archive is held in memory and members are sliced out of it by
    # offset: several times faster than extractfile() for tens of thousands of small images.
    raw = _decompress(path.read_bytes())
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as archive:
        for member in archive:
            key = _image_key(tuple(member.name.split("/")))
            if key is not None and member.isfile():
                found[member.name] = (*key, raw[member.offset_data : member.offset_data + member.size])
    return found


def _decode(names: list[str], blobs: list[bytes], mode: str, size: tuple[int, int]) -> torch.Tensor:
    channels = 1 if mode == "L" else 3
    out = np.empty((len(blobs), size[1], size[0], channels), dtype=np.uint8)
    for i, blob in enumerate(blobs):
        with Image.open(io.BytesIO(blob)) as image:
            if image.size != size:
                raise ConfigError("data.root", f"{names[i]} is {image.size[0]}×{image.size[1]}, the others are {size[0]}×{size[1]}")
            # convert() copies even when the mode already matches; skipping it halves decode time.
            pixels = image if image.mode == mode else image.convert(mode)
            out[i] = np.asarray(pixels).reshape(size[1], size[0], channels)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def load_imagefolder(path: str | Path, *, sha256: str | None = None) -> RawDataset:
    """Images laid out as ``[prefix/]<split>/<class>/<image>`` in a folder or a tar(.gz) archive.

    Classes are the class folder names sorted alphabetically (label = position); images are
    taken in sorted path order. Grayscale images give 1 channel, anything else RGB; all images
    must share one size. ``sha256``: the expected ``tree_sha256`` of the image files named
    ``<split>/<class>/<image>``, checked before decoding.
    """
    path = require_path(Path(path), f"a folder or .tar.gz holding {LAYOUT}")
    if not path.is_dir() and not tarfile.is_tarfile(path):
        raise ConfigError("data.root", f"{path} is neither a folder nor a tar archive; expected {LAYOUT}")
    members = _read_members(path)
    if sha256 is not None:
        actual = tree_sha256(("/".join(name.split("/")[-3:]), blob) for name, (_, _, blob) in members.items())
        require_digest(path, actual, sha256, "sha256", "its images (sha256sum listing of <split>/<class>/<image>)")
    names = sorted(members)
    missing = [s for s in SPLITS if not any(members[n][0] == s for n in names)]
    if missing:
        raise ConfigError("data.root", f"{path} has no images for split(s) {', '.join(missing)}; expected {LAYOUT}")
    classes = sorted({members[n][1] for n in names})
    label_of = {c: i for i, c in enumerate(classes)}
    with Image.open(io.BytesIO(members[names[0]][2])) as first:
        mode = "L" if first.mode in ("1", "L", "I", "I;16") else "RGB"
        size = first.size
    parts = {}
    for split in SPLITS:
        split_names = [n for n in names if members[n][0] == split]
        x = _decode(split_names, [members[n][2] for n in split_names], mode, size)
        y = torch.tensor([label_of[members[n][1]] for n in split_names], dtype=torch.int64)
        parts[split] = (x, y)
    log.info("read %d images of %d classes from %s", len(names), len(classes), path)
    return RawDataset(*parts["train"], *parts["test"], classes, str(path))


@DATASETS.register("imagefolder")
def load_imagefolder_dataset(root: str | Path | None = None) -> RawDataset:
    """Any class-per-folder dataset; ``root`` is required."""
    if root is None:
        raise ConfigError("data.root", "dataset 'imagefolder' needs data.root", f"a folder or .tar.gz holding {LAYOUT}")
    return load_imagefolder(root)


@DATASETS.register("cifar10-jpeg")
def load_cifar10_jpeg(root: str | Path | None = None) -> RawDataset:
    """CIFAR-10 as JPEGs from ``root`` (default ``../shared/data/cifar10-jpeg.tar.gz``)."""
    data = load_imagefolder(root if root is not None else DEFAULT_CIFAR10_JPEG_ROOT, sha256=CIFAR10_JPEG_SHA256)
    if data.classes != CIFAR10_CLASSES:
        raise ConfigError("data.root", f"{data.source} holds classes {data.classes}, not CIFAR-10's", CIFAR10_CLASSES)
    return data
