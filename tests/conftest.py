"""Shared test configuration and small-run factories.

Tests marked ``@pytest.mark.cuda`` are skipped without a CUDA GPU.
"""
from __future__ import annotations

import copy
import os

import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Parallel test workers share the cores: one thread each (inherited by the CLI subprocesses tests start).
    # OpenMP threads that wait on a descheduled sibling make a 2-thread conv ~20x slower than 1 thread.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

# A run small enough for a test: 16x16 brick patches, a two-block conv AE with a MemAE memory.
TINY = {
    "name": "tiny",
    "seed": 0,
    "data": {"name": "textures", "category": "brick", "image_size": 16, "patch_size": 16, "patch_stride": 24},
    "model": {"encoder": {"name": "conv", "channels": [8, 16]}, "memory": {"name": "memae", "slots": 20},
              "decoder": {"name": "conv"}, "scorers": [{"name": "l2", "smoothing_sigma": 1.0}]},
    "train": {"epochs": 1, "batch_size": 32, "device": "cpu", "progress": False},
}


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_base():
    """The tiny run's raw config mapping, shared (do not modify; module fixtures train from it)."""
    return copy.deepcopy(TINY)


@pytest.fixture
def tiny_raw():
    """A fresh copy of the tiny run's raw config mapping."""
    return copy.deepcopy(TINY)
