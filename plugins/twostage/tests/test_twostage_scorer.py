"""The two-stage anomaly score (eq. 10) against numpy / scikit-image."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from reconad_twostage.scorer import TwoStageScorer


@pytest.mark.parametrize("channels,lam", [(1, 1.0), (3, 0.5)])
def test_score_matches_numpy_and_skimage(channels, lam):
    rng = np.random.default_rng()
    x = rng.random((3, channels, 32, 32))
    x1 = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1)
    x2 = np.clip(x + rng.normal(0, 0.2, x.shape), 0, 1)
    t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    sc = TwoStageScorer(lam=lam)(
        {"input": t(x), "recon": t(x1), "recon_ssim": t(x2), "features": torch.zeros(3, 8)})
    mse = ((x1 - x) ** 2).reshape(3, -1).mean(1)
    sk = [structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                data_range=1.0, channel_axis=0, full=True) for a, b in zip(x, x2)]
    s = np.array([v for v, _ in sk])
    np.testing.assert_allclose(sc.image.numpy(), mse - lam * s, atol=1e-4)      # eq. 10
    np.testing.assert_allclose(sc.parts["mse"].numpy(), mse, rtol=1e-5)
    np.testing.assert_allclose(sc.parts["ssim"].numpy(), 1 - s, atol=1e-4)
    smap = np.stack([m for _, m in sk]).mean(1)
    np.testing.assert_allclose(sc.pixel.numpy(), ((x1 - x) ** 2).mean(1) + lam * (1 - smap), atol=1e-4)
    assert sc.image.shape == (3,) and sc.pixel.shape == (3, 32, 32)


def test_perfect_reconstructions_score_lowest():
    x = torch.rand(2, 1, 16, 16)
    sc = TwoStageScorer()({"input": x, "recon": x.clone(), "recon_ssim": x.clone()})
    torch.testing.assert_close(sc.image, torch.full((2,), -1.0))
    worse = TwoStageScorer()({"input": x, "recon": 1 - x, "recon_ssim": 1 - x})
    assert (worse.image > sc.image).all()


def test_missing_second_reconstruction_names_the_decoder():
    x = torch.rand(2, 1, 16, 16)
    with pytest.raises(KeyError, match="recon_ssim.*twostage_dual"):
        TwoStageScorer()({"input": x, "recon": x})
