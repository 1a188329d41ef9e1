"""Fixtures for the metric tests: fresh random generators, and the available pro_curve implementations."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from reconad.ops import backend, load_extension
from reconad.ops.pro_curve import pro_curve_reference


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng()       # fresh inputs on every run; failures print the data they used


def _compiled(maps, masks, limit, curve):
    fpr, pro, stats = torch.ops.reconad.pro_curve(torch.from_numpy(np.ascontiguousarray(maps)),
                                                  torch.from_numpy(np.ascontiguousarray(masks)), limit, curve)
    st = stats.tolist()
    return fpr.numpy(), pro.numpy(), st[0], int(st[1]), int(st[2])


def _reference(maps, masks, limit, curve):
    r = pro_curve_reference(maps, masks, limit, curve)
    return r.fpr, r.pro, r.area, r.n_normal, r.n_regions


@pytest.fixture(params=["reference", "cpp"])
def pro_impl(request):
    """``f(maps, masks, limit, return_curve) -> (fpr, pro, area, n_normal, n_regions)`` per implementation."""
    if request.param == "cpp":
        load_extension()
        if backend("pro_curve", "cpu") != "cpp":
            pytest.skip("reconad._C has no CPU pro_curve kernel (not built)")
        return _compiled
    return _reference
