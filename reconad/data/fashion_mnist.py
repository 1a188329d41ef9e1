"""``fashion_mnist``: Zalando's Fashion-MNIST (10 classes of 28x28 grey clothing photos) from its idx files, one
class normal, in the two-stage paper's Table 1 protocol.

The files are Debian's ``dataset-fashion-mnist`` (``apt-get install dataset-fashion-mnist``: idx files in
/usr/share/datasets/fashion-mnist, the default ``data.root``; the environment variable ``RECONAD_FASHION_MNIST``
moves that default, and a run's config, hence a benchmark cell's cache key, stays the same) or any folder holding
``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]`` and the ``t10k`` pair; nothing downloads.
Training: the train file's images of ``data.normal_class`` (6000 in the full set), less the
``data.holdout_fraction`` held out for the threshold. Test: every t10k image (10000: 1000 normal, the other
nine classes anomalous), or a seeded ``anomalies_per_class`` of each other class. Ids are
``fashion_mnist/<train|test>/<index in its file>``; an anomaly's defect is its class name.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .base import NORMAL, DataError, DatasetSplits, DataSettings, TensorImageDataset, check_settings, \
    holdout_count, image_size, resize_images, to_channels
from .digits import IDX_PAIRS, read_idx_pair

__all__ = ["CLASSES", "DEFAULT_ROOT", "ROOT_ENV", "default_root", "fashion_mnist", "load_fashion_mnist"]

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
ROOT_ENV = "RECONAD_FASHION_MNIST"
_INSTALL = ("install Debian's package (apt-get install dataset-fashion-mnist) or set data.root (or the environment "
            f"variable {ROOT_ENV}) to a folder holding Fashion-MNIST's idx files")


def default_root() -> str:
    """Where the idx files are when ``data.root`` is null: ``$RECONAD_FASHION_MNIST``, else Debian's folder."""
    return os.environ.get(ROOT_ENV) or DEFAULT_ROOT


@lru_cache(maxsize=2)
def load_fashion_mnist(root: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train": (x, y), "test": (x, y)}`` from the idx files in ``root``: images (N, 28, 28) uint8, labels
    (N,) in 0..9, read-only."""
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise DataError(f"data.root: {root} is not a folder; fashion_mnist reads the idx files of "
                        f"{DEFAULT_ROOT} by default: {_INSTALL}")
    out = {}
    for split, (images_name, labels_name) in zip(("train", "test"), IDX_PAIRS):
        pair = read_idx_pair(folder, images_name, labels_name)
        if pair is None:
            raise DataError(f"data.root: {folder} has no {images_name}[.gz] with {labels_name}[.gz] (Fashion-MNIST's "
                            f"{split} split); {_INSTALL}")
        for a in pair:
            a.flags.writeable = False
        out[split] = pair
    return out


def fashion_mnist(settings: DataSettings, anomalies_per_class: int | None = None) -> DatasetSplits:
    """One-class Fashion-MNIST: ``normal_class`` (0..9, ``CLASSES``) is normal; see the module docstring.

    Args:
        anomalies_per_class: test anomalies taken from each other class (seeded); null takes all 9000.
    """
    check_settings(settings)
    c = settings.normal_class
    if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c <= 9:
        raise DataError(f"data.normal_class: fashion_mnist needs the normal class, an int in 0..9 "
                        f"({', '.join(f'{i} {n}' for i, n in enumerate(CLASSES))}), got {c!r}")
    if anomalies_per_class is not None and (isinstance(anomalies_per_class, bool)
                                            or not isinstance(anomalies_per_class, int) or anomalies_per_class < 1):
        raise DataError(f"data.anomalies_per_class: expected a positive int or null (all), got {anomalies_per_class!r}")
    files = load_fashion_mnist(str(settings.root or default_root()))
    (x_train, y_train), (x_test, y_test) = files["train"], files["test"]
    rng = np.random.default_rng(settings.seed)
    normal = rng.permutation(np.flatnonzero(y_train == c))
    n_hold = holdout_count(len(normal), settings.holdout_fraction, f"fashion_mnist class {c} ({CLASSES[c]})")
    hold, train = np.sort(normal[:n_hold]), np.sort(normal[n_hold:])
    test = [np.flatnonzero(y_test == c)]
    if len(test[0]) == 0:
        raise DataError(f"data.normal_class: the t10k files in {settings.root or DEFAULT_ROOT} hold no image of class "
                        f"{c} ({CLASSES[c]}); the test needs normal images")
    for k in range(10):
        idx = np.flatnonzero(y_test == k)
        if k != c and anomalies_per_class is not None and anomalies_per_class < len(idx):
            idx = np.sort(rng.choice(idx, anomalies_per_class, replace=False))
        if k != c:
            test.append(idx)
    channels = settings.channels or 1
    own = x_train.shape[-1]                 # 28: Fashion-MNIST's own size
    size = image_size(settings, own)

    def split(name: str, x: np.ndarray, y: np.ndarray, index: np.ndarray) -> TensorImageDataset:
        images = torch.from_numpy(x[index].astype(np.float32) / 255.0).unsqueeze(1)
        images = to_channels(resize_images(images, size), channels)
        labels = (y[index] != c).astype(np.int64).tolist()
        width = max(5, len(str(len(y) - 1)))
        return TensorImageDataset(images, labels, [f"fashion_mnist/{name}/{i:0{width}d}" for i in index.tolist()],
                                  [NORMAL if lab == 0 else CLASSES[k] for lab, k in zip(labels, y[index].tolist())])

    return DatasetSplits(train=split("train", x_train, y_train, train),
                         holdout=split("train", x_train, y_train, hold),
                         test=split("test", x_test, y_test, np.concatenate(test)), channels=channels,
                         image_size=size, has_masks=False, skipped=[], own_size=own)
