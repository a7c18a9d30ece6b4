"""Checksums of raw data: the recorded digests match the offline copies, corrupt copies are
rejected with one line naming the file and both digests, and torchvision's files are checked
against its own md5 tables (network functions monkeypatched, nothing is downloaded)."""

from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torchvision
import torchvision.datasets.utils as tv_utils
from PIL import Image

from robust import data
from robust.datasets import idx, imagefolder
from robust.datasets.checksums import tree_sha256
from robust.errors import ConfigError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MNIST_DIR = SHARED / "mnist"
CIFAR_JPEG = SHARED / "cifar10-jpeg.tar.gz"
needs_mnist = pytest.mark.skipif(not MNIST_DIR.is_dir(), reason="offline MNIST test set not present")


def _md5(blob: bytes) -> str:
    return hashlib.md5(blob).hexdigest()


def _one_line_naming(err: pytest.ExceptionInfo, *parts: str) -> None:
    message = str(err.value)
    assert err.value.key == "data.root" and "\n" not in message
    assert "delete it and download it again" in message
    for part in parts:
        assert part in message, (part, message)


# --- offline copies ----------------------------------------------------------------------------


@needs_mnist
def test_recorded_mnist_digests_are_those_of_the_offline_files():
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        raw = gzip.decompress((MNIST_DIR / f"{stem}.gz").read_bytes())
        assert hashlib.sha256(raw).hexdigest() == idx.MNIST_TEST_SHA256[stem]
        assert _md5(raw) == idx.MNIST_TEST_MD5[stem]
    assert len(data.DATASETS.get("mnist10k")(MNIST_DIR).y_train) == 8000


@pytest.mark.skipif(not CIFAR_JPEG.is_file(), reason="offline CIFAR-10 JPEG archive not present")
def test_recorded_cifar10_jpeg_digest_is_that_of_the_offline_images():
    # the digest alone (decoding 60,000 JPEGs would take half a minute)
    members = imagefolder._read_members(CIFAR_JPEG)
    assert len(members) == 60_000
    files = (("/".join(name.split("/")[-3:]), blob) for name, (_, _, blob) in members.items())
    assert tree_sha256(files) == imagefolder.CIFAR10_JPEG_SHA256


@needs_mnist
def test_corrupted_copy_of_an_offline_idx_file_is_rejected(tmp_path):
    labels = bytearray(gzip.decompress((MNIST_DIR / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    labels[100] = (labels[100] + 1) % 10  # still a valid label file: only the digest can tell
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(bytes(labels))
    shutil.copy(MNIST_DIR / "t10k-images-idx3-ubyte.gz", tmp_path)
    with pytest.raises(ConfigError) as err:
        data.DATASETS.get("mnist10k")(tmp_path)
    expected = idx.MNIST_TEST_MD5["t10k-labels-idx1-ubyte"]
    _one_line_naming(err, str(tmp_path / "t10k-labels-idx1-ubyte"), expected, _md5(bytes(labels)))
    # the sha256 table alone catches it too
    with pytest.raises(ConfigError, match=f"sha256 of the decompressed file is {hashlib.sha256(labels).hexdigest()}"):
        idx.load_idx(tmp_path / "t10k-images-idx3-ubyte.gz", tmp_path / "t10k-labels-idx1-ubyte",
                     sha256=idx.MNIST_TEST_SHA256)


@needs_mnist
def test_recompressed_intact_copy_passes(tmp_path):
    # digests are of the decompressed bytes: another gzip level changes the .gz, not the data
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        raw = gzip.decompress((MNIST_DIR / f"{stem}.gz").read_bytes())
        (tmp_path / f"{stem}.gz").write_bytes(gzip.compress(raw, compresslevel=1, mtime=0))
    assert (tmp_path / "t10k-images-idx3-ubyte.gz").read_bytes() != (MNIST_DIR / "t10k-images-idx3-ubyte.gz").read_bytes()
    assert len(data.DATASETS.get("mnist10k")(tmp_path).y_test) == 2000


def _image_tree(root: Path) -> Path:
    folder = root / "pics"
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label in ("ant", "bee"):
            (folder / split / label).mkdir(parents=True)
            for i in range(2):
                pixels = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / split / label / f"{i}.png")
    return folder


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="sha256sum not installed")
def test_tree_digest_is_the_documented_shell_listing(tmp_path):
    folder = _image_tree(tmp_path)
    listing = "find train test -type f | LC_ALL=C sort | xargs sha256sum | sha256sum"
    shell = subprocess.run(listing, shell=True, cwd=folder, capture_output=True, text=True, check=True).stdout.split()[0]
    files = [(p.relative_to(folder).as_posix(), p.read_bytes()) for p in folder.rglob("*.png")]
    assert tree_sha256(files) == shell


def test_image_folder_and_archive_are_checked_against_one_digest(tmp_path):
    folder = _image_tree(tmp_path)
    expected = tree_sha256((p.relative_to(folder).as_posix(), p.read_bytes()) for p in folder.rglob("*.png"))
    archive = tmp_path / "pics.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="pics")
    for source in (folder, archive, tmp_path):  # unpacked, packed, and a parent folder
        assert len(imagefolder.load_imagefolder(source, sha256=expected).y_train) == 4
    image = folder / "test" / "bee" / "1.png"
    blob = bytearray(image.read_bytes())
    blob[-20] ^= 0xFF
    image.write_bytes(bytes(blob))
    with pytest.raises(ConfigError) as err:
        imagefolder.load_imagefolder(folder, sha256=expected)
    _one_line_naming(err, str(folder), expected, "sha256 of its images")


# --- torchvision -------------------------------------------------------------------------------


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def _tiny_mnist(raw_dir: Path) -> dict[str, str]:
    """Valid idx files, plain and gzipped, in torchvision's MNIST layout; their .gz md5s."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    md5s = {}
    for prefix, n in (("train", 6), ("t10k", 4)):
        for kind, array in (("images-idx3", rng.integers(0, 256, (n, 28, 28))), ("labels-idx1", np.arange(n) % 10)):
            name = f"{prefix}-{kind}-ubyte"
            (raw_dir / name).write_bytes(_idx(array))
            packed = gzip.compress(_idx(array), mtime=0)
            (raw_dir / f"{name}.gz").write_bytes(packed)
            md5s[f"{name}.gz"] = _md5(packed)
    return md5s


def test_corrupt_download_is_named_with_both_digests(tmp_path, monkeypatch):
    # only the network is faked: torchvision's own md5 check after download runs for real
    junk = b"<html>rate limited</html>"
    monkeypatch.setattr(tv_utils, "_is_remote_location_available", lambda: False)
    monkeypatch.setattr(tv_utils, "_get_redirect_url", lambda url, max_hops=3: url)
    monkeypatch.setattr(tv_utils, "_urlretrieve", lambda url, path, *args, **kwargs: Path(path).write_bytes(junk))
    with pytest.raises(ConfigError) as err:
        data.prepare("mnist", tmp_path / "out", root=tmp_path)
    archive = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    _one_line_naming(err, str(archive), dict(torchvision.datasets.MNIST.resources)[archive.name], _md5(junk))
    assert not (tmp_path / "out").exists()


def test_torchvision_download_passes_its_md5_table(tmp_path, monkeypatch):
    calls = []

    def fake_download(url, download_root, filename=None, md5=None, **kwargs):
        calls.append((filename, md5))
        if len(calls) == 1:  # every file arrives with the first archive; the rest are only recorded
            _tiny_mnist(Path(download_root))

    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", fake_download)
    # the archives "downloaded" are not LeCun's, so our check after the download rejects them
    with pytest.raises(ConfigError, match="md5 of the file is"):
        data.DATASETS.get("mnist")(tmp_path)
    assert [name for name, _ in calls] == [name for name, _ in torchvision.datasets.MNIST.resources]
    assert all(md5 == dict(torchvision.datasets.MNIST.resources)[name] for name, md5 in calls)


def test_unpacked_mnist_file_is_checked_against_its_archive(tmp_path, monkeypatch):
    raw_dir = tmp_path / "MNIST" / "raw"
    md5s = _tiny_mnist(raw_dir)
    monkeypatch.setattr(torchvision.datasets.MNIST, "resources", sorted(md5s.items()))
    assert len(data.DATASETS.get("mnist")(tmp_path).y_train) == 6
    plain = raw_dir / "train-images-idx3-ubyte"
    blob = bytearray(plain.read_bytes())
    blob[-1] ^= 0xFF  # a valid idx file still: torchvision alone would load it
    plain.write_bytes(bytes(blob))
    with pytest.raises(ConfigError) as err:
        data.DATASETS.get("mnist")(tmp_path)
    unpacked = hashlib.sha256(gzip.decompress((raw_dir / "train-images-idx3-ubyte.gz").read_bytes())).hexdigest()
    _one_line_naming(err, str(plain), unpacked, hashlib.sha256(blob).hexdigest(), "unpacked")


def test_present_corrupt_cifar_file_is_named_before_torchvision_opens_it(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(b"truncated")
    # torchvision itself still refuses it, but without naming the file or the digests
    with pytest.raises(RuntimeError, match="corrupted"):
        torchvision.datasets.CIFAR10(str(tmp_path), download=False)
    with pytest.raises(ConfigError) as err:
        data.prepare("cifar10", tmp_path / "out", root=tmp_path)
    expected = dict(torchvision.datasets.CIFAR10.train_list)["data_batch_1"]
    _one_line_naming(err, str(folder / "data_batch_1"), expected, _md5(b"truncated"))
