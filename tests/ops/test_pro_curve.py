"""Tests of ``reconad.ops.pro_curve``: every implementation (numpy / scipy fallback, C++ kernel when built,
CUDA kernel on a GPU) against the official MVTec AD algorithm in float64 (tests/metrics/_oracle.py), on the
issue's edge cases; the compiled op's schema and fake implementation. The metric-level tests (``aupro``,
``pro_curve`` of reconad.metrics) are tests/metrics/test_pro.py."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch
from scipy import ndimage

import reconad.metrics as M
from reconad.ops import backend, load_extension
from reconad.ops.pro_curve import pro_curve_reference

# the official algorithm is shared with the metric tests and benchmarks/bm_pro_curve.py
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "metrics"))
from _oracle import blob_masks, official_aupro, official_pro_curve, pro_case  # noqa: E402

LIMITS = (0.05, 0.3, 1.0)


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


@pytest.mark.parametrize("kind", ["random", "ties", "single_pixels", "diagonal", "border", "no_anomaly_images"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_area_and_curve_match_official(pro_impl, rng, kind, dtype):
    maps, masks = pro_case(rng, kind, dtype)
    fpr_o, pro_o = official_pro_curve(maps, masks)
    n_regions = sum(ndimage.label(m, np.ones((3, 3)))[1] for m in masks)
    for limit in LIMITS:
        fpr, pro, area, n_normal, regions = pro_impl(maps, masks, limit, True)
        assert regions == n_regions
        assert n_normal == int((~masks).sum())
        assert area / limit == pytest.approx(official_aupro(maps, masks, limit), abs=1e-9)
        stop = len(fpr_o) if limit >= 1 else int(np.argmax(fpr_o > limit)) + 1
        assert len(fpr) == stop
        np.testing.assert_allclose(fpr, fpr_o[:stop], rtol=0, atol=1e-12)
        np.testing.assert_allclose(pro, pro_o[:stop], rtol=0, atol=1e-12)
        # the area-only path (no curve) gives the same area
        assert pro_impl(maps, masks, limit, False)[2] == pytest.approx(area, abs=1e-12)


def test_larger_random_set(pro_impl, rng):
    maps = rng.random((20, 64, 64)).astype(np.float32)
    masks = blob_masks(rng, 20, 64, 64)
    maps += 0.3 * masks
    for limit in (0.01, 0.3):
        got = pro_impl(maps, masks, limit, False)[2] / limit
        assert got == pytest.approx(official_aupro(maps, masks, limit), abs=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_score_bins(pro_impl, rng, dtype):
    # scores packed into a narrow range: a few histogram bins hold thousands of pixels each (the C++ kernel
    # aggregates such bins through a table instead of sorting them), with and without ties
    masks = blob_masks(rng, 8, 48, 48)
    base = 0.75 + rng.random(masks.shape) * 2.0 ** -9 + 2.0 ** -11 * masks
    # half the normal pixels far below: the dense bins then lie wholly above the FPR limit's crossing
    split = np.where(rng.random(masks.shape) < 0.6, base, 0.3 + 0.1 * rng.random(masks.shape))
    for maps in (base, np.round(base * 2.0 ** 16) / 2.0 ** 16, split):
        maps = maps.astype(dtype)
        for limit in (0.05, 0.3, 1.0):
            expected = official_aupro(maps, masks, limit)
            assert pro_impl(maps, masks, limit, False)[2] / limit == pytest.approx(expected, abs=1e-9)
            assert pro_impl(maps, masks, limit, True)[2] / limit == pytest.approx(expected, abs=1e-9)


def test_misleading_sample(pro_impl, rng):
    # the C++ kernel estimates its cut from every 7th pixel (global raster index); make exactly those pixels
    # score high so the estimate is wrong and its exact fallback must take over
    n, h, w = 4, 30, 35
    masks = blob_masks(rng, n, h, w)
    maps = 0.5 * rng.random((n, h, w))
    flat = maps.reshape(-1)
    flat[::7] = 0.9 + 0.1 * rng.random(flat[::7].shape)
    maps = maps.astype(np.float32)
    for limit in (0.05, 0.3):
        assert pro_impl(maps, masks, limit, False)[2] / limit == pytest.approx(
            official_aupro(maps, masks, limit), abs=1e-9)


def test_signed_zeros_are_one_point(pro_impl):
    maps = np.array([[[0.0, -0.0, 1.0, 0.5], [-0.0, 0.0, 0.25, 0.0]]], np.float32)
    masks = np.array([[[1, 0, 1, 0], [0, 1, 0, 0]]], bool)
    fpr, pro, area, *_ = pro_impl(maps, masks, 1.0, True)
    fpr_o, pro_o = official_pro_curve(maps, masks)
    np.testing.assert_allclose(fpr, fpr_o, atol=1e-15)
    np.testing.assert_allclose(pro, pro_o, atol=1e-15)


def test_degenerate_sets_report_counts(pro_impl):
    maps = np.random.default_rng().random((2, 5, 5)).astype(np.float32)
    _, _, area, n_normal, regions = pro_impl(maps, np.zeros((2, 5, 5), bool), 0.3, False)
    assert (area, n_normal, regions) == (0.0, 50, 0)
    _, _, area, n_normal, regions = pro_impl(maps, np.ones((2, 5, 5), bool), 0.3, False)
    assert (area, n_normal, regions) == (0.0, 0, 2)


def test_opcheck_schema_and_fake(rng):
    load_extension()
    if backend("pro_curve", "cpu") != "cpp":
        pytest.skip("reconad._C has no CPU pro_curve kernel (not built)")
    masks = torch.from_numpy(blob_masks(rng, 3, 20, 24))
    maps = torch.rand(masks.shape)
    for curve in (True, False):
        torch.library.opcheck(torch.ops.reconad.pro_curve.default, (maps, masks, 0.3, curve),
                              test_utils=("test_schema", "test_faketensor"))
    # non-contiguous inputs give the contiguous result
    assert M.aupro(maps.transpose(1, 2), masks.transpose(1, 2)) == pytest.approx(
        official_aupro(maps.transpose(1, 2).numpy(), masks.transpose(1, 2).numpy(), 0.3), abs=1e-9)


# ---- CUDA -----------------------------------------------------------------------------------------------


@pytest.fixture
def cuda_kernel():
    if backend("pro_curve", "cuda") != "cuda":
        pytest.skip("no CUDA pro_curve kernel in this build")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["random", "ties", "sparse", "dense"])
@pytest.mark.cuda
def test_cuda_matches_official(cuda_kernel, rng, dtype, kind):
    n, h, w = 5, 37, 29
    masks = blob_masks(rng, n, h, w) if kind != "sparse" else rng.random((n, h, w)) < 0.03
    masks[1] = False                                            # an image without anomalies
    maps = rng.random((n, h, w)) + 0.3 * masks
    if kind == "ties":
        maps = np.floor(maps * 10) / 10
    if kind == "dense":
        maps = 0.75 + maps * 2.0 ** -12
    maps = maps.astype(dtype)
    fpr_o, pro_o = official_pro_curve(maps, masks)
    for limit in (0.05, 0.3, 1.0):
        fpr, pro, stats = torch.ops.reconad.pro_curve(torch.from_numpy(maps).cuda(), torch.from_numpy(masks).cuda(),
                                                      limit, True)
        area, n_normal, n_regions = stats.cpu().tolist()
        assert n_normal == (~masks).sum()
        assert area / limit == pytest.approx(official_aupro(maps, masks, limit), abs=1e-9)
        stop = len(fpr_o) if limit >= 1 else int(np.argmax(fpr_o > limit)) + 1
        np.testing.assert_allclose(fpr.cpu().numpy(), fpr_o[:stop], atol=1e-12)
        np.testing.assert_allclose(pro.cpu().numpy(), pro_o[:stop], atol=1e-12)
