"""The two-stage autoencoder's anomaly score (paper 003 eq. 10)."""
from __future__ import annotations

from typing import Any

from reconad.components import Scorer, Scores
from reconad.metrics import ssim, ssim_map

__all__ = ["TwoStageScorer"]


class TwoStageScorer(Scorer):
    """AS(x) = MSE(x, x1) - lam * SSIM(x, x2) (eq. 10; lam = 1 in the paper), x1 = ``outputs["recon"]`` (the
    MSE decoder), x2 = ``outputs["recon_ssim"]`` (the SSIM decoder). Parts: ``mse`` = MSE(x, x1) and
    ``ssim`` = 1 - SSIM(x, x2), each decoder alone. Pixel map: the squared error of x1 plus lam times
    1 - the SSIM map of x2, both averaged over channels. SSIM: Gaussian window ``window_size`` / ``sigma``,
    images in [0, ``data_range``] (``reconad.metrics.ssim``)."""

    def __init__(self, lam: float = 1.0, data_range: float = 1.0, window_size: int = 11, sigma: float = 1.5,
                 mse_key: str = "recon", ssim_key: str = "recon_ssim") -> None:
        super().__init__()
        if lam < 0:
            raise ValueError(f"twostage scorer: lam must be >= 0, got {lam}")
        self.lam, self.data_range, self.window_size, self.sigma = lam, data_range, window_size, sigma
        self.mse_key, self.ssim_key = mse_key, ssim_key

    def forward(self, outputs: dict[str, Any]) -> Scores:
        missing = [k for k in (self.mse_key, self.ssim_key) if k not in outputs]
        if missing:
            raise KeyError(f"twostage scorer: the model's outputs have no {', '.join(map(repr, missing))} "
                           f"(keys: {', '.join(sorted(outputs))}); use the twostage_dual decoder")
        x = outputs["input"].float()
        x1, x2 = outputs[self.mse_key].float(), outputs[self.ssim_key].float()
        kw = {"data_range": self.data_range, "window_size": self.window_size, "sigma": self.sigma}
        sq = (x1 - x) ** 2
        mse = sq.flatten(1).mean(1)
        s = ssim(x, x2, reduction="none", **kw)
        image = mse - self.lam * s
        pixel = sq.mean(1) + self.lam * (1 - ssim_map(x, x2, channel_mean=True, **kw))
        return Scores(image, pixel, {"mse": mse, "ssim": 1 - s})
