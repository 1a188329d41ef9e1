"""PRO curve / AUPRO of ``reconad.metrics`` against the official algorithm in float64 (tests/metrics/_oracle.py):
inputs, errors and the public API on every device. The op's own tests (every implementation of
``reconad.ops.pro_curve`` on the edge cases) are tests/ops/test_pro_curve.py."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import reconad.metrics as M
from reconad.ops import backend
from _oracle import blob_masks, official_aupro, official_pro_curve, pro_case


def test_aupro_inputs_numpy_torch_dtypes(rng):
    maps, masks = pro_case(rng, "random", np.float64)
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
    maps, masks = pro_case(rng, "ties")
    assert M.pixel_auroc(maps, masks) == pytest.approx(
        sklearn.roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-12)


@pytest.mark.cuda
def test_cuda_public_api_and_streaming(rng):
    if backend("pro_curve", "cuda") != "cuda":
        pytest.skip("no CUDA pro_curve kernel in this build")
    masks = blob_masks(rng, 6, 64, 64)
    maps = (rng.random(masks.shape) * 0.8 + 0.3 * masks).astype(np.float32)
    expected = official_aupro(maps, masks, 0.3)
    mt, kt = torch.from_numpy(maps).cuda(), torch.from_numpy(masks).cuda()
    assert M.aupro(mt, kt) == pytest.approx(expected, abs=1e-9)
    assert M.aupro(mt.half(), kt) == pytest.approx(official_aupro(mt.half().float().cpu().numpy(), masks, 0.3),
                                                   abs=1e-9)
    binned = M.AUPRO(0.3, mode="binned", bins=65536, score_range=(0.0, 1.1))
    binned.update(mt, kt)
    assert abs(binned.compute() - expected) <= binned.error_bound() + 1e-12
    with pytest.raises(ValueError, match="NaN"):
        bad = mt.clone()
        bad[0, 0, 0] = float("nan")
        M.aupro(bad, kt)
