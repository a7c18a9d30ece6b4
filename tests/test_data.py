"""Tests for the dataset registry, loaders and the prepared-on-disk format (robust.data)."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets
from PIL import Image

from robust import data
from robust.datasets import class_allocation, stratified_indices
from robust.datasets.imagefolder import CIFAR10_CLASSES, _image_key
from robust.errors import ConfigError
from robust.params import load_params
from robust.pipeline import prepare_dataset

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MNIST_DIR = SHARED / "mnist"
CIFAR_JPEG = SHARED / "cifar10-jpeg.tar.gz"
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
FILES = ("train.pt", "test.pt", "manifest.json")


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits")
    data.prepare("digits", out)
    return out


def _rows(x: torch.Tensor) -> torch.Tensor:
    """The images as a sorted set of rows, to compare splits regardless of order."""
    return torch.unique(x.reshape(len(x), -1), dim=0)


# --- stratified sampling ---------------------------------------------------------------------


def test_class_allocation_largest_remainder():
    y = torch.tensor([0] * 5 + [1] * 3 + [2] * 2)
    # quotas 2.5, 1.5, 1.0: the one leftover sample goes to the lower class of the tie
    assert class_allocation(y, 5, 3).tolist() == [3, 1, 1]
    assert class_allocation(y, 10, 4).tolist() == [5, 3, 2, 0]
    with pytest.raises(ValueError, match="cannot take 11"):
        class_allocation(y, 11, 3)


def test_stratified_indices_are_unique_proportional_and_seeded():
    y = torch.arange(1000) % 7
    picked = stratified_indices(y, 100, 7, torch.Generator().manual_seed(5))
    assert len(torch.unique(picked)) == 100
    assert torch.equal(torch.bincount(y[picked], minlength=7), class_allocation(y, 100, 7))
    again = stratified_indices(y, 100, 7, torch.Generator().manual_seed(5))
    other = stratified_indices(y, 100, 7, torch.Generator().manual_seed(6))
    assert torch.equal(picked, again)
    assert not torch.equal(picked, other)


# --- digits and prepare ------------------------------------------------------------------------


def test_digits_shapes_range_and_counts(digits_dir):
    x_train, y_train = data.load_split(digits_dir, "train")
    x_test, y_test = data.load_split(digits_dir, "test")
    assert x_train.shape[1:] == (1, 28, 28) and x_test.shape[1:] == (1, 28, 28)
    assert x_train.dtype == torch.float32 and y_train.dtype == torch.int64
    assert len(x_train) + len(x_test) == 1797
    assert (len(x_train), len(x_test)) == (1438, 359)
    assert float(x_train.min()) == 0.0 and float(x_train.max()) == 1.0
    manifest = data.load_manifest(digits_dir)
    assert manifest["name"] == "digits" and manifest["source"] == "sklearn.datasets.load_digits"
    assert manifest["shape"] == [1, 28, 28] and manifest["num_classes"] == 10
    assert manifest["counts"] == {"train": 1438, "test": 359}
    assert manifest["class_counts"]["train"] == torch.bincount(y_train, minlength=10).tolist()


def test_digits_upsampling_keeps_the_picture():
    from sklearn.datasets import load_digits

    raw = data.DATASETS.get("digits")(None)
    images = torch.cat([raw.x_train, raw.x_test]).float()
    originals = torch.from_numpy(load_digits().images).float() * 255 / 16
    # bilinear upsampling preserves overall brightness; a scrambled resize would not
    assert abs(images.mean() - originals.mean()) < 2.0
    back = torch.nn.functional.interpolate(images, size=(8, 8), mode="area")
    assert abs(back.mean() - originals.mean()) < 2.0


def test_digits_split_is_stratified_and_independent_of_run_seed(digits_dir, tmp_path):
    _, y_train = data.load_split(digits_dir, "train")
    _, y_test = data.load_split(digits_dir, "test")
    total = torch.bincount(torch.cat([y_train, y_test]), minlength=10)
    share = torch.bincount(y_train, minlength=10).float() / total
    assert torch.all((share - 0.8).abs() < 0.01)
    data.prepare("digits", tmp_path, seed=1)
    for split in ("train", "test"):
        x0, _ = data.load_split(digits_dir, split)
        x1, _ = data.load_split(tmp_path, split)
        assert not torch.equal(x0, x1)  # the stored order follows the run seed ...
        assert torch.equal(_rows(x0), _rows(x1))  # ... the split itself does not


def test_prepare_is_byte_identical(digits_dir, tmp_path):
    data.prepare("digits", tmp_path / "again")
    for name in FILES:
        assert (tmp_path / "again" / name).read_bytes() == (digits_dir / name).read_bytes()
    data.prepare("digits", tmp_path / "other", seed=1)
    assert (tmp_path / "other" / "train.pt").read_bytes() != (digits_dir / "train.pt").read_bytes()


def test_subset_is_stratified_and_seeded(tmp_path):
    manifest = data.prepare("digits", tmp_path / "a", max_train=100, max_test=50, seed=3)
    assert manifest["counts"] == {"train": 100, "test": 50}
    assert manifest["subset"] == {"max_train": 100, "max_test": 50, "seed": 3, "split_seed": 0}
    raw = data.DATASETS.get("digits")(None)
    _, y = data.load_split(tmp_path / "a", "train")
    assert torch.equal(torch.bincount(y, minlength=10), class_allocation(raw.y_train, 100, 10))
    other = data.prepare("digits", tmp_path / "b", max_train=100, max_test=50, seed=4)
    assert other["sha256"]["train"] != manifest["sha256"]["train"]


def test_max_larger_than_split_keeps_everything(tmp_path):
    manifest = data.prepare("digits", tmp_path, max_train=10**6, max_test=10)
    assert manifest["counts"] == {"train": 1438, "test": 10}


def _study_params(profile: str) -> dict:
    """A study's own dataset beside the profiles, as in params.yaml's ``cifar10``."""
    return {"profile": profile, "seed": 0,
            "profiles": {"smoke": {"max_train": None, "max_test": None}, "cpu": {"max_train": None, "max_test": 40}},
            "cifar10": {"name": "cifar10-jpeg", "root": "nowhere",
                        "profiles": {"smoke": {"name": "digits", "root": None}, "cpu": {"max_train": 60}}}}


def test_a_dataset_may_replace_its_name_and_sizes_for_one_profile(tmp_path):
    manifest = prepare_dataset(_study_params("smoke"), "cifar10", tmp_path / "smoke")
    assert manifest["name"] == "digits" and manifest["counts"] == {"train": 1438, "test": 359}
    params = _study_params("cpu")
    params["cifar10"] = {"name": "digits", "profiles": params["cifar10"]["profiles"]}
    # its own max_train, the profile's max_test
    assert prepare_dataset(params, "cifar10", tmp_path / "cpu")["counts"] == {"train": 60, "test": 40}


@pytest.mark.parametrize("profile, name", [("smoke", "digits"), ("cpu", "mnist10k"), ("paper", "mnist")])
def test_the_main_run_reads_each_profiles_dataset(monkeypatch, tmp_path, profile, name):
    # `dvc exp run -S profile=cpu` needs no other setting to read real MNIST offline
    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    read = {}
    monkeypatch.setattr(data, "prepare", lambda dataset, *args, **kwargs: read.setdefault("name", dataset))
    prepare_dataset({**params, "profile": profile}, "data", tmp_path)
    assert read["name"] == name


@pytest.mark.parametrize("change, key", [
    ({"profiles": {"smoke": {"epochs": 3}}}, "cifar10.profiles.smoke.epochs"),
    ({"profiles": {"smoke": {"name": "digits", "max_train": 0}}}, "cifar10.profiles.smoke.max_train"),
    ({"size": 3}, "cifar10.size"),
])
def test_bad_dataset_profile_settings_name_their_key(tmp_path, change, key):
    params = _study_params("smoke")
    params["cifar10"] = {**params["cifar10"], **change}
    with pytest.raises(ConfigError) as err:
        prepare_dataset(params, "cifar10", tmp_path)
    assert err.value.key == key


@pytest.mark.parametrize("bad", [0, -3, 1.5, "10", True])
def test_bad_max_train_is_a_config_error(tmp_path, bad):
    with pytest.raises(ConfigError, match="data.max_train") as err:
        data.prepare("digits", tmp_path, max_train=bad)
    assert err.value.key == "data.max_train"
    assert not tmp_path.joinpath("train.pt").exists()


def test_bad_max_test_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="data.max_test"):
        data.prepare("digits", tmp_path, max_test=0)


def test_unknown_dataset_lists_the_valid_names(tmp_path):
    with pytest.raises(ConfigError) as err:
        data.prepare("imagenet", tmp_path)
    message = str(err.value)
    assert err.value.key == "data.name"
    assert "'imagenet'" in message
    for name in ("digits", "mnist10k", "cifar10-jpeg", "cifar10", "mnist", "svhn", "cifar100"):
        assert name in message


def _failing_save_on(call: int, monkeypatch):
    real_save = torch.save
    calls = []

    def save(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            raise OSError("disk full")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)


def test_failed_prepare_writes_nothing(tmp_path, monkeypatch):
    _failing_save_on(2, monkeypatch)
    with pytest.raises(OSError, match="disk full"):
        data.prepare("digits", tmp_path / "out")
    out = tmp_path / "out"
    assert not out.exists() or os.listdir(out) == []


def test_failed_prepare_leaves_previous_files_intact(digits_dir, tmp_path, monkeypatch):
    out = tmp_path / "out"
    data.prepare("digits", out)
    before = {name: (out / name).read_bytes() for name in FILES}
    _failing_save_on(2, monkeypatch)
    with pytest.raises(OSError, match="disk full"):
        data.prepare("digits", out, seed=7)
    assert sorted(os.listdir(out)) == sorted(FILES)  # no temporary file left behind
    assert {name: (out / name).read_bytes() for name in FILES} == before


def test_load_split_rejects_files_that_do_not_match_the_manifest(tmp_path):
    data.prepare("digits", tmp_path, max_train=20, max_test=20)
    (tmp_path / "test.pt").write_bytes((tmp_path / "train.pt").read_bytes())
    with pytest.raises(ValueError, match="sha256"):
        data.load_split(tmp_path, "test")
    with pytest.raises(ValueError, match="split must be one of"):
        data.load_split(tmp_path, "val")


# --- idx ---------------------------------------------------------------------------------------


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def test_idx_round_trip_gz_and_plain(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(7, 5, 4), dtype=np.uint8)  # H ≠ W catches a transposition
    labels = np.array([3, 1, 4, 1, 5, 9, 2], dtype=np.uint8)
    (tmp_path / "img.gz").write_bytes(gzip.compress(_idx_bytes(images)))
    (tmp_path / "lbl").write_bytes(_idx_bytes(labels))
    x, y = data.load_idx(tmp_path / "img.gz", tmp_path / "lbl")
    assert x.dtype == torch.uint8 and x.shape == (7, 1, 5, 4)
    assert torch.equal(x[:, 0], torch.from_numpy(images))
    assert y.dtype == torch.int64 and y.tolist() == labels.tolist()


def test_idx_header_checks(tmp_path):
    good = _idx_bytes(np.zeros((2, 3, 3), dtype=np.uint8))
    (tmp_path / "lbl").write_bytes(_idx_bytes(np.zeros(2, dtype=np.uint8)))
    (tmp_path / "short").write_bytes(good[:-1])
    with pytest.raises(ConfigError, match="header promises"):
        data.load_idx(tmp_path / "short", tmp_path / "lbl")
    (tmp_path / "float").write_bytes(bytes([0, 0, 0x0D]) + good[3:])
    with pytest.raises(ConfigError, match="unsigned-byte"):
        data.load_idx(tmp_path / "float", tmp_path / "lbl")
    (tmp_path / "junk").write_bytes(b"\x89PNG" + good[4:])
    with pytest.raises(ConfigError, match="bad magic"):
        data.load_idx(tmp_path / "junk", tmp_path / "lbl")
    (tmp_path / "img").write_bytes(_idx_bytes(np.zeros((3, 3, 3), dtype=np.uint8)))
    with pytest.raises(ConfigError, match="3 images but"):
        data.load_idx(tmp_path / "img", tmp_path / "lbl")
    with pytest.raises(ConfigError, match="md5"):
        data.load_idx(tmp_path / "img", tmp_path / "lbl", md5={"img": "0" * 32})


# --- imagefolder -------------------------------------------------------------------------------


def _toy_images():
    """{relative path: HxWx3 uint8} for 2 splits × 3 classes, 4×6 pixels, unsorted class names."""
    rng = np.random.default_rng(1)
    return {
        f"{split}/{cls}/{i:04d}.png": rng.integers(0, 256, size=(4, 6, 3), dtype=np.uint8)
        for split in ("test", "train")
        for cls in ("cat", "ant", "bee")
        for i in (1, 0)
    }


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _check_toy(raw, images):
    assert raw.classes == ["ant", "bee", "cat"]
    assert raw.x_train.shape == (6, 3, 4, 6) and raw.x_test.shape == (6, 3, 4, 6)
    expected = [images[f"train/{c}/{i:04d}.png"] for c in raw.classes for i in (0, 1)]
    assert torch.equal(raw.x_train, torch.from_numpy(np.stack(expected)).permute(0, 3, 1, 2))
    assert raw.y_train.tolist() == [0, 0, 1, 1, 2, 2] and raw.y_test.tolist() == [0, 0, 1, 1, 2, 2]


def test_imagefolder_from_tar_gz_and_folder_agree(tmp_path):
    images = _toy_images()
    archive = tmp_path / "toy.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for rel, pixels in images.items():
            blob = _png(pixels)
            info = tarfile.TarInfo(f"toy/{rel}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    for rel, pixels in images.items():
        (tmp_path / "folder" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "folder" / rel).write_bytes(_png(pixels))
    (tmp_path / "folder" / "README.txt").write_text("not an image")
    from_tar = data.load_imagefolder(archive)
    from_folder = data.load_imagefolder(tmp_path / "folder")
    _check_toy(from_tar, images)
    _check_toy(from_folder, images)
    manifest = data.prepare("imagefolder", tmp_path / "out", root=archive)
    assert manifest["shape"] == [3, 4, 6] and manifest["classes"] == ["ant", "bee", "cat"]


def test_imagefolder_grayscale_gives_one_channel(tmp_path):
    for split in ("train", "test"):
        (tmp_path / split / "a").mkdir(parents=True)
        Image.fromarray(np.full((5, 5), 7, dtype=np.uint8)).save(tmp_path / split / "a" / "0.png")
    raw = data.load_imagefolder(tmp_path)
    assert raw.x_train.shape == (1, 1, 5, 5) and int(raw.x_train[0, 0, 0, 0]) == 7


def test_imagefolder_bad_inputs(tmp_path):
    with pytest.raises(ConfigError, match="not found") as err:
        data.load_imagefolder(tmp_path / "missing.tar.gz")
    assert err.value.key == "data.root"
    (tmp_path / "train" / "a").mkdir(parents=True)
    Image.fromarray(np.zeros((5, 5), dtype=np.uint8)).save(tmp_path / "train" / "a" / "0.png")
    with pytest.raises(ConfigError, match="no images for split"):
        data.load_imagefolder(tmp_path)
    (tmp_path / "test" / "a").mkdir(parents=True)
    Image.fromarray(np.zeros((6, 5), dtype=np.uint8)).save(tmp_path / "test" / "a" / "0.png")
    with pytest.raises(ConfigError, match="the others are"):
        data.load_imagefolder(tmp_path)
    with pytest.raises(ConfigError, match="needs data.root"):
        data.prepare("imagefolder", tmp_path / "out")


@pytest.mark.skipif(not CIFAR_JPEG.is_file(), reason="offline CIFAR-10 JPEG archive not present")
def test_real_cifar10_jpeg_archive_members():
    seen = 0
    with tarfile.open(CIFAR_JPEG, "r|gz") as tar:
        for member in tar:
            key = _image_key(tuple(member.name.split("/")))
            if key is None or not member.isfile():
                continue
            assert key[0] in ("train", "test") and key[1] in CIFAR10_CLASSES
            with Image.open(tar.extractfile(member)) as image:
                assert image.size == (32, 32) and image.mode == "RGB"
            seen += 1
            if seen == 5:
                break
    assert seen == 5


# --- mnist10k ----------------------------------------------------------------------------------


@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason="offline MNIST test set not present")
def test_real_mnist10k(tmp_path):
    x, y = data.load_idx(MNIST_DIR / "t10k-images-idx3-ubyte.gz", MNIST_DIR / "t10k-labels-idx1-ubyte.gz")
    assert x.shape == (10000, 1, 28, 28)
    assert torch.bincount(y).tolist() == MNIST_TEST_COUNTS
    manifest = data.prepare("mnist10k", tmp_path, root=MNIST_DIR)
    assert manifest["counts"] == {"train": 8000, "test": 2000}
    per_class = np.add(manifest["class_counts"]["train"], manifest["class_counts"]["test"])
    assert per_class.tolist() == MNIST_TEST_COUNTS
    assert manifest["class_counts"]["train"] == class_allocation(y, 8000, 10).tolist()
    x_train, _ = data.load_split(tmp_path, "train")
    x_test, _ = data.load_split(tmp_path, "test")
    assert len(_rows(torch.cat([x_train, x_test]))) == len(_rows(x.float() / 255))


@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason="offline MNIST test set not present")
def test_mnist10k_default_root_and_checksum(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the default root is relative to the repository root
    assert len(data.DATASETS.get("mnist10k")(None).y_test) == 2000
    images = bytearray(gzip.decompress((MNIST_DIR / "t10k-images-idx3-ubyte.gz").read_bytes()))
    images[1000] ^= 0xFF
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(bytes(images))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes((MNIST_DIR / "t10k-labels-idx1-ubyte.gz").read_bytes())
    with pytest.raises(ConfigError, match="md5 of the decompressed file is"):
        data.DATASETS.get("mnist10k")(tmp_path)


def test_mnist10k_missing_files_name_what_is_expected(tmp_path):
    with pytest.raises(ConfigError, match="t10k-images-idx3-ubyte.gz") as err:
        data.prepare("mnist10k", tmp_path / "out", root=tmp_path)
    assert err.value.key == "data.root"


# --- torchvision (monkeypatched, no network) ---------------------------------------------------


class _Unavailable:
    calls: list[bool] = []

    def __init__(self, root, download=False, **kwargs):
        type(self).calls.append(download)
        if download:
            raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")
        raise RuntimeError("Dataset not found or corrupted. You can use download=True to download it")


@pytest.mark.parametrize(
    ("name", "cls_name", "expected"),
    [("mnist", "MNIST", "MNIST/raw"), ("cifar10", "CIFAR10", "cifar-10-batches-py"),
     ("cifar100", "CIFAR100", "cifar-100-python"), ("svhn", "SVHN", "train_32x32.mat")],
)
def test_torchvision_unavailable_is_one_config_error(tmp_path, monkeypatch, name, cls_name, expected):
    _Unavailable.calls = []
    monkeypatch.setattr(torchvision.datasets, cls_name, _Unavailable)
    with pytest.raises(ConfigError, match=expected) as err:
        data.prepare(name, tmp_path / "out", root=tmp_path / "raw")
    assert err.value.key == "data.root"
    assert str(tmp_path / "raw") in str(err.value) and "name resolution" in str(err.value)
    assert _Unavailable.calls == [False, True]  # offline first, then one download attempt
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("key", "cls_name", "expected"),
                         [("cifar100", "CIFAR100", "cifar-100-python"), ("svhn", "SVHN", "train_32x32.mat")])
def test_a_study_dataset_that_cannot_be_found_names_its_own_root(tmp_path, monkeypatch, key, cls_name, expected):
    monkeypatch.setattr(torchvision.datasets, cls_name, _Unavailable)
    params = _study_params("cpu")
    # params.yaml's own entry, at the cpu profile
    params[key] = {**load_params(REPO / "params.yaml")[key], "root": str(tmp_path / "raw")}
    with pytest.raises(ConfigError, match=expected) as err:
        prepare_dataset(params, key, tmp_path / "out")
    assert err.value.key == f"{key}.root" and f"'{key}.root'" in str(err.value)


def _fake(data_by_split, label_attr, classes=None, offline=True):
    class Fake:
        downloads: list[bool] = []

        def __init__(self, root, download=False, train=None, split=None):
            if not offline and not download:
                raise RuntimeError("Dataset not found")
            Fake.downloads.append(download)
            key = split if split is not None else ("train" if train else "test")
            images, labels = data_by_split[key]
            self.data = images
            setattr(self, label_attr, labels)
            if classes is not None:
                self.classes = classes

    return Fake


def test_torchvision_mnist_conversion(monkeypatch):
    train = torch.randint(0, 256, (6, 5, 4), dtype=torch.uint8)
    test = torch.randint(0, 256, (3, 5, 4), dtype=torch.uint8)
    fake = _fake({"train": (train, torch.arange(6) % 3), "test": (test, torch.tensor([2, 1, 0]))},
                 "targets", ["0 - zero", "1 - one", "2 - two"], offline=False)
    monkeypatch.setattr(torchvision.datasets, "MNIST", fake)
    raw = data.DATASETS.get("mnist")(None)
    assert fake.downloads == [True, True]  # the offline attempt failed, the download did not
    assert raw.x_train.shape == (6, 1, 5, 4) and torch.equal(raw.x_train[:, 0], train)
    assert raw.y_test.tolist() == [2, 1, 0] and raw.classes == ["0 - zero", "1 - one", "2 - two"]
    assert "data/raw" in raw.source


def test_torchvision_cifar_conversion(monkeypatch):
    rng = np.random.default_rng(2)
    train = rng.integers(0, 256, size=(4, 5, 6, 3), dtype=np.uint8)
    test = rng.integers(0, 256, size=(2, 5, 6, 3), dtype=np.uint8)
    fake = _fake({"train": (train, [0, 1, 1, 0]), "test": (test, [1, 0])}, "targets", ["a", "b"])
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", fake)
    raw = data.DATASETS.get("cifar10")("somewhere")
    assert raw.x_train.shape == (4, 3, 5, 6) and raw.x_train.dtype == torch.uint8
    assert int(raw.x_train[1, 2, 3, 4]) == int(train[1, 3, 4, 2])
    assert raw.y_train.dtype == torch.int64 and raw.y_train.tolist() == [0, 1, 1, 0]


def test_torchvision_svhn_conversion(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    train = rng.integers(0, 256, size=(10, 3, 5, 6), dtype=np.uint8)
    test = rng.integers(0, 256, size=(10, 3, 5, 6), dtype=np.uint8)
    fake = _fake({"train": (train, np.arange(10)), "test": (test, np.arange(10)[::-1].copy())}, "labels")
    monkeypatch.setattr(torchvision.datasets, "SVHN", fake)
    raw = data.DATASETS.get("svhn")(None)
    assert torch.equal(raw.x_train, torch.from_numpy(train)) and raw.y_test[0] == 9
    assert raw.classes == [str(d) for d in range(10)]
    manifest = data.prepare("svhn", tmp_path, max_train=5)
    assert manifest["counts"] == {"train": 5, "test": 10} and manifest["shape"] == [3, 5, 6]
