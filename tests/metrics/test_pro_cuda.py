"""The CUDA pro_curve kernel against the official fp64 algorithm (skipped without a GPU)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import reconad.metrics as M
from reconad.ops import backend
from _oracle import blob_masks, official_aupro, official_pro_curve

pytestmark = pytest.mark.cuda


@pytest.fixture
def cuda_kernel():
    if backend("pro_curve", "cuda") != "cuda":
        pytest.skip("no CUDA pro_curve kernel in this build")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["random", "ties", "sparse", "dense"])
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


def test_cuda_public_api_and_streaming(cuda_kernel, rng):
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
