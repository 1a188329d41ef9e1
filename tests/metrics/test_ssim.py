"""``reconad.metrics.ssim`` / ``ssim_map`` against scikit-image's structural_similarity (Gaussian weights,
population covariance), on random and natural images, grey and colour, odd sizes, data ranges 1 and 255."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data as skdata
from skimage.metrics import structural_similarity

from reconad.metrics import ssim, ssim_map


def _sk(a: np.ndarray, b: np.ndarray, data_range: float, sigma: float = 1.5, full: bool = False):
    """skimage on one (C, H, W) float64 pair."""
    return structural_similarity(a.astype(np.float64), b.astype(np.float64), gaussian_weights=True, sigma=sigma,
                                 use_sample_covariance=False, data_range=data_range, channel_axis=0, full=full)


def _natural(name: str, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A crop of a scikit-image photo as (C, H, W) in [0, 1]."""
    img = getattr(skdata, name)().astype(np.float64) / 255.0
    img = img[None] if img.ndim == 2 else img.transpose(2, 0, 1)
    h, w = size
    y0 = rng.integers(0, img.shape[1] - h + 1)
    x0 = rng.integers(0, img.shape[2] - w + 1)
    return img[:, y0:y0 + h, x0:x0 + w]


def _distort(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blur-ish, noisy, shifted version of ``a`` (clipped to [0, 1]): SSIM well inside (0, 1)."""
    b = 0.6 * a + 0.4 * np.roll(a, (1, 2), axis=(1, 2)) + rng.normal(0, 0.08, a.shape)
    return np.clip(b, 0, 1)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [(11, 11), (28, 28), (33, 47), (64, 31)])
@pytest.mark.parametrize("data_range", [1.0, 255.0])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_random_images_match_skimage(channels, size, data_range, dtype):
    rng = np.random.default_rng()
    x = rng.random((3, channels, *size))
    y = np.clip(x + rng.normal(0, 0.2, x.shape), 0, 1)
    x, y = x * data_range, y * data_range
    got = ssim(torch.tensor(x, dtype=dtype), torch.tensor(y, dtype=dtype), data_range=data_range, reduction="none")
    want = np.array([_sk(a, b, data_range) for a, b in zip(x, y)])
    assert got.shape == (3,) and got.dtype == dtype
    np.testing.assert_allclose(got.double().numpy(), want, atol=1e-4 if dtype == torch.float32 else 1e-10)
    mean = ssim(torch.tensor(x, dtype=dtype), torch.tensor(y, dtype=dtype), data_range=data_range)
    assert mean.dim() == 0 and abs(float(mean) - want.mean()) < 1e-4


@pytest.mark.parametrize("name,channels", [("camera", 1), ("brick", 1), ("astronaut", 3)])
@pytest.mark.parametrize("size", [(32, 32), (57, 45), (128, 96)])
@pytest.mark.parametrize("data_range", [1.0, 255.0])
def test_natural_images_match_skimage(name, channels, size, data_range):
    rng = np.random.default_rng()
    x = np.stack([_natural(name, size, rng) for _ in range(2)])
    assert x.shape[1] == channels
    y = np.stack([_distort(a, rng) for a in x])
    x, y = x * data_range, y * data_range
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-4)):
        got = ssim(torch.tensor(x, dtype=dtype), torch.tensor(y, dtype=dtype), data_range=data_range,
                   reduction="none")
        want = np.array([_sk(a, b, data_range) for a, b in zip(x, y)])
        np.testing.assert_allclose(got.double().numpy(), want, atol=tol)
    # identical images: exactly 1
    same = ssim(torch.tensor(x), torch.tensor(x), data_range=data_range, reduction="none")
    np.testing.assert_allclose(same.numpy(), 1.0, atol=1e-12)


@pytest.mark.parametrize("channels", [1, 3])
def test_full_map_matches_skimage(channels):
    rng = np.random.default_rng()
    x = rng.random((2, channels, 23, 30))
    y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1)
    got = ssim_map(torch.tensor(x), torch.tensor(y), data_range=1.0)
    assert got.shape == x.shape
    for i in range(2):
        _, want = _sk(x[i], y[i], 1.0, full=True)
        np.testing.assert_allclose(got[i].numpy(), want, atol=1e-10)
    avg = ssim_map(torch.tensor(x), torch.tensor(y), data_range=1.0, channel_mean=True)
    assert avg.shape == (2, 23, 30)
    np.testing.assert_allclose(avg.numpy(), got.mean(1).numpy(), atol=1e-12)
    # the image value is the map's mean away from the border
    np.testing.assert_allclose(got[:, :, 5:-5, 5:-5].flatten(1).mean(1).numpy(),
                               ssim(torch.tensor(x), torch.tensor(y), data_range=1.0, reduction="none").numpy(),
                               atol=1e-12)


@pytest.mark.parametrize("sigma", [1.0, 2.0])
def test_other_sigmas_match_skimage(sigma):
    rng = np.random.default_rng()
    x = rng.random((2, 1, 40, 40))
    y = np.clip(x + rng.normal(0, 0.2, x.shape), 0, 1)
    window = 2 * int(3.5 * sigma + 0.5) + 1          # skimage's window for that sigma
    got = ssim(torch.tensor(x), torch.tensor(y), data_range=1.0, sigma=sigma, window_size=window, reduction="none")
    want = [_sk(a, b, 1.0, sigma=sigma) for a, b in zip(x, y)]
    np.testing.assert_allclose(got.numpy(), want, atol=1e-10)


def test_gradcheck():
    torch.manual_seed(0)
    x = torch.rand(1, 2, 11, 12, dtype=torch.float64, requires_grad=True)
    y = torch.rand(1, 2, 11, 12, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: ssim(a, b, data_range=1.0, reduction="none"), (x, y))
    assert torch.autograd.gradcheck(lambda a, b: ssim_map(a, b, data_range=1.0, channel_mean=True), (x, y))


def test_errors_name_the_problem():
    x = torch.rand(2, 1, 16, 16)
    with pytest.raises(ValueError, match=r"same shape.*\(2, 1, 16, 16\).*\(2, 1, 16, 15\)"):
        ssim(x, torch.rand(2, 1, 16, 15), data_range=1.0)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\), got shape \(1, 16, 16\)"):
        ssim(x[0], x[0], data_range=1.0)
    with pytest.raises(ValueError, match="data_range must be a positive"):
        ssim(x, x, data_range=0)
    with pytest.raises(ValueError, match="data_range must be a positive"):
        ssim(x, x, data_range=float("nan"))
    with pytest.raises(TypeError, match="data_range"):
        ssim(x, x, data_range=torch.tensor(1.0))
    with pytest.raises(TypeError, match="data_range"):
        ssim(x, x)                                               # keyword-only and required
    with pytest.raises(ValueError, match="smaller than the 11x11 window"):
        ssim(torch.rand(1, 1, 10, 20), torch.rand(1, 1, 10, 20), data_range=1.0)
    with pytest.raises(ValueError, match="odd"):
        ssim(x, x, data_range=1.0, window_size=4)
    with pytest.raises(ValueError, match="reduction"):
        ssim(x, x, data_range=1.0, reduction="sum")
    with pytest.raises(TypeError, match="floating-point"):
        ssim(x.to(torch.uint8), x.to(torch.uint8), data_range=255)
