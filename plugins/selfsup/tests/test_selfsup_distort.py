"""The distortion generator: guarantees of §3.2 (||X_hat - X||_1 > 0, M covers every change), seeding, batching,
dtypes and option errors."""
from __future__ import annotations

import pytest
import torch

from reconad_selfsup.distort import distort, smooth_noise


def _images(b=6, c=1, s=32, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
    stripes = (0.5 + 0.4 * torch.sin(xx / 2.0 + yy / 3.0)).to(dtype)
    return (stripes + 0.05 * torch.rand(b, c, s, s, generator=g, dtype=dtype)).clamp(0, 1)


@pytest.mark.parametrize("shape", ["blob", "ellipse", "rect"])
@pytest.mark.parametrize("c", [1, 3])
def test_every_image_changes_and_only_inside_the_mask(shape, c):
    x = _images(8, c)
    x_hat, m = distort(x, torch.Generator().manual_seed(1), shape=shape, brightness=0.2)
    assert x_hat.shape == x.shape and m.shape == (8, 1, 32, 32) and m.dtype == x.dtype
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    assert ((x_hat - x).abs().flatten(1).sum(1) > 0).all()
    assert not ((x_hat != x) & (m == 0)).any(), "a pixel changed outside M"
    assert (m.flatten(1).sum(1) > 0).all()
    assert x_hat.min() >= 0 and x_hat.max() <= 1


def test_flat_images_still_change_through_the_fallback():
    # a constant image is unchanged by any deformation: the redraws fail and the masked pixels are nudged
    for value in (0.0, 0.3, 1.0):
        x = torch.full((4, 1, 16, 16), value)
        x_hat, m = distort(x, torch.Generator().manual_seed(0), max_tries=2)
        assert ((x_hat - x).abs().flatten(1).sum(1) > 0).all()
        assert not ((x_hat != x) & (m == 0)).any()
        assert x_hat.min() >= 0 and x_hat.max() <= 1


def test_rect_mask_is_one_rectangle_within_the_size_range():
    x = _images(16, s=40)
    _, m = distort(x, torch.Generator().manual_seed(3), shape="rect", patch_min=0.2, patch_max=0.3)
    for mi in m[:, 0]:
        rows, cols = mi.any(1).nonzero().flatten(), mi.any(0).nonzero().flatten()
        h, w = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        assert int(mi.sum()) == h * w
        assert 8 <= h <= 12 and 8 <= w <= 12


def test_reproducible_per_seed_and_different_across_seeds():
    x = _images()
    a = distort(x, torch.Generator().manual_seed(5), brightness=0.1)
    b = distort(x, torch.Generator().manual_seed(5), brightness=0.1)
    c = distort(x, torch.Generator().manual_seed(6), brightness=0.1)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])
    # the global RNG is left alone
    torch.manual_seed(0)
    before = torch.get_rng_state()
    distort(x, torch.Generator().manual_seed(5))
    assert torch.equal(before, torch.get_rng_state())


def test_vectorised_images_of_a_batch_get_independent_distortions():
    x = _images(1).expand(12, -1, -1, -1).contiguous()       # twelve copies of one image
    x_hat, m = distort(x, torch.Generator().manual_seed(2))
    masks = {tuple(mi.flatten().tolist()) for mi in m}
    assert len(masks) == 12
    assert x_hat.shape == x.shape


def test_float64_and_sizes():
    for s in (8, 17, 64):
        x = _images(3, s=s, dtype=torch.float64)
        x_hat, m = distort(x, torch.Generator().manual_seed(0))
        assert x_hat.dtype == torch.float64 and m.dtype == torch.float64
        assert ((x_hat - x).abs().flatten(1).sum(1) > 0).all()
        assert not ((x_hat != x) & (m == 0)).any()


def test_elastic_deformation_moves_content_inside_the_mask():
    # no brightness change: the pasted content is the deformed image, so values stay within the image's range
    x = _images(8)
    x_hat, m = distort(x, torch.Generator().manual_seed(4), alpha=0.4, brightness=0.0, max_tries=0)
    inside = m.bool().expand_as(x)
    assert (x_hat[inside] >= x.min() - 1e-6).all() and (x_hat[inside] <= x.max() + 1e-6).all()
    assert (x_hat[inside] != x[inside]).float().mean() > 0.5


def test_smooth_noise_is_scaled_to_unit_peak():
    n = smooth_noise(torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)), 2.0)
    assert torch.allclose(n.abs().amax(dim=(-2, -1)), torch.ones(2, 3))


@pytest.mark.parametrize("bad", [dict(patch_min=0.5, patch_max=0.2), dict(alpha=-1.0), dict(shape="star"),
                                 dict(grid=1), dict(brightness_prob=2.0)])
def test_bad_options_are_errors_naming_them(bad):
    with pytest.raises(ValueError, match="distort:"):
        distort(_images(2), torch.Generator().manual_seed(0), **bad)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_runs_on_the_gpu_with_the_cpu_generators_draws():
    x = _images(4)
    a = distort(x, torch.Generator().manual_seed(1))
    b = distort(x.cuda(), torch.Generator().manual_seed(1))
    assert b[0].is_cuda
    assert torch.equal(a[1], b[1].cpu())
    assert torch.allclose(a[0], b[0].cpu(), atol=1e-5)
