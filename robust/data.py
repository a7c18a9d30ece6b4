"""Prepare a registered dataset once, on disk, in the one format the rest of the library reads.

``prepare`` loads a dataset through the ``DATASETS`` registry, optionally keeps a stratified
subset, and writes ``train.pt`` / ``test.pt`` (``{"x": uint8 N×C×H×W, "y": int64 N}``) plus
``manifest.json`` (provenance, shapes, class counts, sha256 of every tensor). ``load_split``
turns a split into the library's contract: float32 NCHW in [0, 1], int64 labels.

Datasets and their sources (and what is simplified about each) are documented in the loader
modules under ``robust.datasets``. Two kinds of randomness are kept apart: the train/test split
of single-pool datasets uses a fixed seed (``robust.datasets.SPLIT_SEED``), while the subset
and the stored order of each split follow the run ``seed``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
from pathlib import Path

import torch

from robust.datasets import DATASETS, SPLIT_SEED, RawDataset, load_idx, load_imagefolder, stratified_indices
from robust.errors import ConfigError

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
MANIFEST = "manifest.json"

__all__ = ["DATASETS", "RawDataset", "load_idx", "load_imagefolder", "load_manifest", "load_split", "prepare"]


def _check_count(key: str, value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
        raise ConfigError(key, f"must be a positive integer or null, got {value!r}")


def _sha256(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()


def _serialize(x: torch.Tensor, y: torch.Tensor) -> bytes:
    # Saving to a buffer, not to the file: torch.save names the zip archive's root folder
    # after the target file, so saving to a temporary name would change the bytes.
    buffer = io.BytesIO()
    torch.save({"x": x, "y": y}, buffer)
    return buffer.getvalue()


def _write_all(out_dir: Path, payloads: dict[str, bytes]) -> None:
    """Write every payload to a temporary file first, then rename them all into place."""
    temps: dict[str, str] = {}
    try:
        for name, data in payloads.items():
            fd, temp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=out_dir)
            temps[name] = temp
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
    except BaseException:
        for temp in temps.values():
            Path(temp).unlink(missing_ok=True)
        raise
    # A stale manifest must never describe new tensors, so it goes first and comes back last.
    (out_dir / MANIFEST).unlink(missing_ok=True)
    for name in sorted(payloads, key=lambda n: n == MANIFEST):
        os.replace(temps[name], out_dir / name)


def prepare(
    name: str,
    out_dir: str | Path,
    *,
    root: str | Path | None = None,
    max_train: int | None = None,
    max_test: int | None = None,
    seed: int = 0,
) -> dict:
    """Load dataset ``name``, keep at most ``max_train`` / ``max_test`` images per split, write it.

    Subsets are stratified (class proportions kept, largest-remainder rounding) and drawn with a
    ``torch.Generator`` seeded by ``seed``; every split, subset or not, is stored in that seeded
    random order so any prefix is close to class-balanced. The same inputs give byte-identical
    files. Nothing in ``out_dir`` changes unless every file was written. Returns the manifest.
    """
    loader = DATASETS.get(name)
    _check_count("data.max_train", max_train)
    _check_count("data.max_test", max_test)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError("seed", f"must be an integer, got {seed!r}")
    raw: RawDataset = loader(root)
    generator = torch.Generator().manual_seed(seed)
    num_classes = len(raw.classes)
    limits = {"train": max_train, "test": max_test}
    manifest = {
        "name": name,
        "source": raw.source,
        "shape": list(raw.x_train.shape[1:]),
        "num_classes": num_classes,
        "classes": list(raw.classes),
        "available": {},
        "counts": {},
        "class_counts": {},
        "sha256": {},
        "subset": {"max_train": max_train, "max_test": max_test, "seed": seed, "split_seed": SPLIT_SEED},
        "format": {"x": "uint8 N×C×H×W, pixel/255 gives [0, 1]", "y": "int64 N"},
    }
    payloads: dict[str, bytes] = {}
    for split in SPLITS:
        x, y = getattr(raw, f"x_{split}"), getattr(raw, f"y_{split}")
        n = len(y) if limits[split] is None else min(limits[split], len(y))
        if limits[split] is not None and limits[split] > len(y):
            log.warning("data.max_%s=%d exceeds the %d %s images of %s; keeping all", split, limits[split], len(y), split, name)
        keep = stratified_indices(y, n, num_classes, generator)
        # Indexing copies, so each saved storage holds exactly the kept images.
        x, y = x[keep].contiguous(), y[keep].contiguous()
        manifest["available"][split] = len(raw.y_train if split == "train" else raw.y_test)
        manifest["counts"][split] = len(y)
        manifest["class_counts"][split] = torch.bincount(y, minlength=num_classes).tolist()
        manifest["sha256"][split] = {"x": _sha256(x), "y": _sha256(y)}
        payloads[f"{split}.pt"] = _serialize(x, y)
    payloads[MANIFEST] = (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_all(out_dir, payloads)
    log.info("prepared %s: %s to %s", name, manifest["counts"], out_dir)
    return manifest


def load_manifest(out_dir: str | Path) -> dict:
    """The manifest ``prepare`` wrote to ``out_dir``."""
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; run the prepare stage first")
    return json.loads(path.read_text(encoding="utf-8"))


def load_split(out_dir: str | Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``split`` of a prepared dataset as (float32 N×C×H×W in [0, 1], int64 N).

    The tensors are checked against the manifest's sha256, so a split left over from another
    preparation fails here instead of training on the wrong data.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    manifest = load_manifest(out_dir)
    data = torch.load(Path(out_dir) / f"{split}.pt", weights_only=True)
    x, y = data["x"], data["y"]
    if x.dtype != torch.uint8 or y.dtype != torch.int64:
        raise ValueError(f"{out_dir}/{split}.pt must hold uint8 x and int64 y, got {x.dtype} and {y.dtype}")
    if {"x": _sha256(x), "y": _sha256(y)} != manifest["sha256"][split]:
        raise ValueError(f"{out_dir}/{split}.pt does not match the sha256 in {MANIFEST}; prepare it again")
    return x.to(torch.float32).div_(255.0), y
