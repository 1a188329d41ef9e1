"""``fashion_mnist``: Fashion-MNIST from idx files (small ones written here), the two-stage paper's protocol."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reconad.data import DataError, DataSettings, fashion_mnist
from reconad.data.fashion_mnist import CLASSES
from test_data_mnist_idx import _write_pairs


@pytest.fixture()
def fashion_root(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return (tmp_path, *_write_pairs(tmp_path, 1, 30, 8))


def test_protocol_trains_on_the_class_and_tests_on_every_t10k_image(fashion_root) -> None:
    root, xa, ya, xb, yb = fashion_root
    splits = fashion_mnist(DataSettings("fashion_mnist", root=str(root), normal_class=7, image_size=28,
                                        holdout_fraction=0.1))
    train_idx = [int(p.rsplit("/", 1)[1]) for p in splits.train.paths + splits.holdout.paths]
    assert sorted(train_idx) == np.flatnonzero(ya == 7).tolist()          # every training image of the class
    assert len(splits.holdout) == 3 and not set(splits.train.paths) & set(splits.holdout.paths)
    test_idx = sorted(int(p.rsplit("/", 1)[1]) for p in splits.test.paths)
    assert test_idx == list(range(len(yb)))                                # every t10k image
    i = splits.test.paths.index("fashion_mnist/test/00000")
    np.testing.assert_allclose(splits.test.images[i, 0].numpy(), xb[0] / 255.0, atol=1e-6)
    assert splits.test.labels[i] == int(yb[0] != 7)
    assert splits.test.defects[i] == ("good" if yb[0] == 7 else CLASSES[yb[0]])
    assert set(splits.test.defects) == {"good", *(CLASSES[k] for k in range(10) if k != 7)}
    assert CLASSES[0] == "T-shirt/top" and CLASSES[9] == "Ankle boot"


def test_anomalies_per_class(fashion_root) -> None:
    root, *_ = fashion_root
    splits = fashion_mnist(DataSettings("fashion_mnist", root=str(root), normal_class=0, image_size=16),
                           anomalies_per_class=2)
    assert sum(splits.test.labels) == 18 and len(splits.test) == 26
    assert splits.test.images.shape[-1] == 16


def test_missing_files_name_the_package(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"fashion-mnist.*apt-get install dataset-fashion-mnist"):
        fashion_mnist(DataSettings("fashion_mnist", root=str(tmp_path / "nowhere"), normal_class=0))
    with pytest.raises(DataError, match=r"has no train-images-idx3-ubyte.*apt-get install dataset-fashion-mnist"):
        fashion_mnist(DataSettings("fashion_mnist", root=str(tmp_path), normal_class=0))


def test_bad_class(fashion_root) -> None:
    with pytest.raises(DataError, match=r"data.normal_class: .*0 T-shirt/top.*got 10"):
        fashion_mnist(DataSettings("fashion_mnist", root=str(fashion_root[0]), normal_class=10))


def test_the_environment_variable_moves_the_default_folder(fashion_root, monkeypatch) -> None:
    root, xa, ya, *_ = fashion_root
    monkeypatch.setenv("RECONAD_FASHION_MNIST", str(root))
    splits = fashion_mnist(DataSettings("fashion_mnist", normal_class=3, image_size=28))
    train = splits.train.paths + splits.holdout.paths
    assert sorted(int(p.rsplit("/", 1)[1]) for p in train) == np.flatnonzero(ya == 3).tolist()
    monkeypatch.setenv("RECONAD_FASHION_MNIST", str(root / "nowhere"))
    with pytest.raises(DataError, match=r"nowhere is not a folder.*or the environment variable RECONAD_FASHION_MNIST"):
        fashion_mnist(DataSettings("fashion_mnist", normal_class=3))
