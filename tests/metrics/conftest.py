"""Fixtures for the metric tests: fresh random generators."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng()       # fresh inputs on every run; failures print the data they used
