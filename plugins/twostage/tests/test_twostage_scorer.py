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


def _outputs(rng, n=6):
    x = rng.random((n, 1, 16, 16))
    t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return {"input": t(x), "recon": t(np.clip(x + rng.normal(0, 0.05, x.shape), 0, 1)),
            "recon_ssim": t(np.clip(x + rng.normal(0, rng.uniform(0.05, 0.4, (n, 1, 1, 1)), x.shape), 0, 1))}


def test_balance_holdout_scales_lam_by_the_spread_of_the_terms_on_the_reference():
    rng = np.random.default_rng(0)
    plain, balanced = TwoStageScorer(lam=0.5), TwoStageScorer(lam=0.5, balance="holdout")
    assert "weight" not in plain.state_dict() and not plain.fit_reference({"mse": np.ones(3), "ssim": np.ones(3)})
    ref = plain(_outputs(rng, 20)).parts                  # raw terms on 'held-out normal' images
    ref = {k: v.numpy().astype(np.float64) for k, v in ref.items()}
    assert balanced.fit_reference(ref)
    w = ref["mse"].std() / ref["ssim"].std()              # numpy, population std
    assert float(balanced.weight) == pytest.approx(w, rel=1e-6)
    out = _outputs(rng)
    a, b = plain(out), balanced(out)
    mse, dssim = a.parts["mse"].numpy(), a.parts["ssim"].numpy()
    np.testing.assert_allclose(b.image.numpy(), mse - 0.5 * w * (1 - dssim), rtol=1e-5, atol=1e-7)
    # the same ranking as the sum of the two terms standardised on the reference (lam = 1)
    z = mse / ref["mse"].std() + dssim / ref["ssim"].std()
    one = TwoStageScorer(balance="holdout")
    one.fit_reference(ref)
    np.testing.assert_array_equal(np.argsort(one(out).image.numpy()), np.argsort(z))
    sq = ((out["recon"] - out["input"]) ** 2).mean(1).numpy()
    np.testing.assert_allclose(b.pixel.numpy() - sq, (a.pixel.numpy() - sq) * w, rtol=1e-4, atol=1e-7)
    assert not balanced.fit_reference(None) and float(balanced.weight) == 1.0   # forgotten: eq. 10 again
    np.testing.assert_allclose(balanced(out).image.numpy(), a.image.numpy(), rtol=1e-6)


def test_balance_needs_a_known_name_and_a_spread_on_the_reference():
    with pytest.raises(ValueError, match="balance must be one of none, holdout.*got 'auto'"):
        TwoStageScorer(balance="auto")
    sc = TwoStageScorer(balance="holdout")
    with pytest.raises(ValueError, match=r"got 1 image\(s\).*data.holdout_fraction"):
        sc.fit_reference({"mse": np.array([0.1]), "ssim": np.array([0.2]), "image": np.array([0.0])})
    with pytest.raises(ValueError, match=r"std of MSE 0.1.*of 1 - SSIM 0"):
        sc.fit_reference({"mse": np.array([0.1, 0.3]), "ssim": np.array([0.2, 0.2])})
