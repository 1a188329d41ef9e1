"""PRO curve / AUPRO against the official algorithm in float64 (tests/metrics/_oracle.py), for every
implementation (numpy/scipy fallback, C++ kernel when built), on the issue's edge cases."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

import reconad.metrics as M
from _oracle import blob_masks, official_aupro, official_pro_curve

LIMITS = (0.05, 0.3, 1.0)


def _case(rng: np.random.Generator, kind: str, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    n, h, w = 6, 23, 31
    maps = rng.random((n, h, w))
    if kind == "ties":                                   # few distinct scores: large tie groups
        maps = np.floor(maps * 12) / 12
        masks = blob_masks(rng, n, h, w)
    elif kind == "single_pixels":                        # sparse isolated pixels, some diagonal neighbours
        masks = rng.random((n, h, w)) < 0.03
    elif kind == "diagonal":                             # regions connected only through corners
        masks = np.zeros((n, h, w), bool)
        for i in range(n):
            off = int(rng.integers(-h, w))
            for y in range(h):
                for x in (y + off, h - y + off + 5):
                    if 0 <= x < w:
                        masks[i, y, x] = True
    elif kind == "border":                               # regions on every edge and corner
        masks = blob_masks(rng, n, h, w, 0.6)
        masks[:, 0, : w // 3] = True
        masks[:, -1, -4:] = True
        masks[:, h // 2 :, 0] = True
        masks[:, 0, -1] = True
    elif kind == "no_anomaly_images":                    # half the images have an empty mask
        masks = blob_masks(rng, n, h, w)
        masks[::2] = False
    else:
        masks = blob_masks(rng, n, h, w)
    # anomalous pixels score a little higher, so the curves are not all near the diagonal
    maps = maps + 0.25 * masks * (kind != "ties")
    if not masks.any():
        masks[0, 0, 0] = True
    return maps.astype(dtype), masks


@pytest.mark.parametrize("kind", ["random", "ties", "single_pixels", "diagonal", "border", "no_anomaly_images"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_area_and_curve_match_official(pro_impl, rng, kind, dtype):
    maps, masks = _case(rng, kind, dtype)
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


# ---- public API ---------------------------------------------------------------------------------------------


def test_aupro_inputs_numpy_torch_dtypes(rng):
    maps, masks = _case(rng, "random", np.float64)
    expected = official_aupro(maps.astype(np.float32).astype(np.float64), masks, 0.3)
    m32 = maps.astype(np.float32)
    assert M.aupro(m32, masks) == pytest.approx(expected, abs=1e-9)
    assert M.aupro(torch.from_numpy(m32), torch.from_numpy(masks.astype(np.uint8) * 255)) == pytest.approx(
        expected, abs=1e-9)
    assert M.aupro(torch.from_numpy(m32), torch.from_numpy(masks.astype(np.float32))) == pytest.approx(
        expected, abs=1e-9)
    half = torch.from_numpy(m32).half()
    assert M.aupro(half, masks) == pytest.approx(
        official_aupro(half.double().numpy(), masks, 0.3), abs=1e-9)
    i = int(np.argmax(masks.reshape(len(masks), -1).any(axis=1)))      # a single (H, W) map with an anomaly
    assert M.aupro(maps[i], masks[i], 1.0) == pytest.approx(
        official_aupro(maps[i : i + 1], masks[i : i + 1], 1.0), abs=1e-9)
    fpr, pro = M.pro_curve(m32, masks)
    fpr_o, pro_o = official_pro_curve(m32, masks)
    np.testing.assert_allclose(fpr, fpr_o, atol=1e-12)
    np.testing.assert_allclose(pro, pro_o, atol=1e-12)


def test_aupro_errors():
    maps = np.random.default_rng().random((2, 4, 4)).astype(np.float32)
    masks = np.zeros((2, 4, 4), bool)
    with pytest.raises(ValueError, match="no anomalous pixel"):
        M.aupro(maps, masks)
    with pytest.raises(ValueError, match="every pixel"):
        M.aupro(maps, ~masks)
    masks[0, 1, 1] = True
    with pytest.raises(ValueError, match="fpr_limit"):
        M.aupro(maps, masks, 0.0)
    with pytest.raises(ValueError, match="shape"):
        M.aupro(maps, masks[:1])
    with pytest.raises(ValueError, match="0/1"):
        M.aupro(maps, masks.astype(np.float32) * 0.5)
    bad = maps.copy()
    bad[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        M.aupro(bad, masks)


def test_perfect_and_inverted_maps(rng):
    masks = blob_masks(rng, 4, 32, 32)
    perfect = masks.astype(np.float32) + 0.01 * rng.random(masks.shape).astype(np.float32)
    assert M.aupro(perfect, masks, 0.3) == pytest.approx(1.0, abs=1e-12)
    assert M.aupro(-perfect, masks, 0.3) == pytest.approx(0.0, abs=1e-12)


def test_pixel_auroc_matches_sklearn(rng):
    sklearn = pytest.importorskip("sklearn.metrics")
    maps, masks = _case(rng, "ties")
    assert M.pixel_auroc(maps, masks) == pytest.approx(
        sklearn.roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-12)


def test_opcheck_schema_and_fake(rng):
    from reconad.ops import backend, load_extension

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
