"""reconad.imageops against scipy / numpy references."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from reconad.imageops import gaussian_blur, gaussian_kernel1d, reduce_map


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.3])
def test_gaussian_blur_matches_scipy(sigma):
    maps = np.random.default_rng().random((3, 24, 19))
    # torch's "reflect" leaves the edge out: scipy's "mirror"; both truncate at int(4 sigma + 0.5)
    expected = ndimage.gaussian_filter(maps, (0, sigma, sigma), mode="mirror", truncate=4.0)
    out = gaussian_blur(torch.from_numpy(maps), sigma)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(gaussian_blur(torch.from_numpy(maps), 0.0).numpy(), maps)


def test_gaussian_blur_on_maps_smaller_than_the_kernel():
    maps = torch.rand(2, 3, 5, dtype=torch.float64)
    out = gaussian_blur(maps, 2.0)                  # radius 8 > the map: cut to 2 (the reflect limit)
    k = gaussian_kernel1d(2, 2.0).numpy()
    expected = ndimage.correlate1d(ndimage.correlate1d(maps.numpy(), k, axis=2, mode="mirror"), k, axis=1,
                                   mode="mirror")
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12)
    np.testing.assert_array_equal(gaussian_blur(maps[:, :1], 2.0).numpy(), maps[:, :1].numpy())   # one row


def test_gaussian_kernel1d():
    k = gaussian_kernel1d(3, 1.5)
    t = np.arange(-3, 4)
    ref = np.exp(-t ** 2 / (2 * 1.5 ** 2))
    np.testing.assert_allclose(k.numpy(), ref / ref.sum(), rtol=1e-15)
    assert gaussian_kernel1d(2, 1.0, dtype=torch.float32).dtype == torch.float32


def test_reduce_map():
    maps = torch.rand(4, 10, 10)
    flat = maps.flatten(1).numpy()
    np.testing.assert_allclose(reduce_map(maps, "mean").numpy(), flat.mean(1), rtol=1e-6)
    np.testing.assert_array_equal(reduce_map(maps, "max").numpy(), flat.max(1))
    top5 = np.sort(flat, 1)[:, -5:].mean(1)          # 5 % of 100 pixels
    np.testing.assert_allclose(reduce_map(maps, "topk", 0.05).numpy(), top5, rtol=1e-6)
    np.testing.assert_array_equal(reduce_map(maps, "topk", 1e-6).numpy(), flat.max(1))   # at least one pixel
    with pytest.raises(ValueError, match="reduction must be one of mean, max, topk, got 'median'"):
        reduce_map(maps, "median")
