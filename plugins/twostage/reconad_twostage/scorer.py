"""The two-stage autoencoder's anomaly score (paper 003 eq. 10)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from reconad.components import Scorer, Scores
from reconad.metrics import ssim, ssim_map

__all__ = ["BALANCES", "TwoStageScorer"]

BALANCES = ("none", "holdout")


class TwoStageScorer(Scorer):
    """AS(x) = MSE(x, x1) - lam * SSIM(x, x2) (eq. 10; lam = 1 in the paper), x1 = ``outputs["recon"]`` (the
    MSE decoder), x2 = ``outputs["recon_ssim"]`` (the SSIM decoder). Parts: ``mse`` = MSE(x, x1) and
    ``ssim`` = 1 - SSIM(x, x2), each decoder alone. Pixel map: the squared error of x1 plus lam times
    1 - the SSIM map of x2, both averaged over channels. SSIM: Gaussian window ``window_size`` / ``sigma``,
    images in [0, ``data_range``] (``reconad.metrics.ssim``).

    ``balance``: ``"none"`` (eq. 10 as written) or ``"holdout"``: lam is multiplied by ``std(MSE) / std(1 - SSIM)``
    over the held-out normal images, taken once when training ends (``fit_reference``; the buffer ``weight``,
    saved with the weights), so that each decoder's term moves the score as much on normal images. On images
    in [0, 1] the SSIM term's spread is several times the MSE's and eq. 10 with lam = 1 ranks images by the SSIM
    decoder nearly alone (docs/benchmarks.md, fashion_mnist)."""

    def __init__(self, lam: float = 1.0, data_range: float = 1.0, window_size: int = 11, sigma: float = 1.5,
                 mse_key: str = "recon", ssim_key: str = "recon_ssim", balance: str = "none") -> None:
        super().__init__()
        if lam < 0:
            raise ValueError(f"twostage scorer: lam must be >= 0, got {lam}")
        if balance not in BALANCES:
            raise ValueError(f"twostage scorer: balance must be one of {', '.join(BALANCES)} (eq. 10 as written, or "
                             f"each term scaled by its spread over the held-out normal images), got {balance!r}")
        self.lam, self.data_range, self.window_size, self.sigma = lam, data_range, window_size, sigma
        self.mse_key, self.ssim_key, self.balance = mse_key, ssim_key, balance
        # lam's factor, 1 until fitted; a buffer only with balance: holdout, so that older checkpoints load
        self.register_buffer("weight", torch.tensor(1.0) if balance == "holdout" else None)

    def fit_reference(self, scores: dict[str, np.ndarray] | None) -> bool:
        if self.weight is None:
            return False
        self.weight.fill_(1.0)
        if scores is None:
            return False
        mse, dssim = np.asarray(scores["mse"], np.float64), np.asarray(scores["ssim"], np.float64)
        spread = (float(mse.std()), float(dssim.std())) if mse.size else (0.0, 0.0)
        if mse.size < 2 or not (spread[0] > 0 and spread[1] > 0):
            raise ValueError(f"twostage scorer: balance 'holdout' needs the spread of both terms over at least two "
                             f"held-out normal images (got {mse.size} image(s), std of MSE {spread[0]:.3g}, of "
                             f"1 - SSIM {spread[1]:.3g}); set data.holdout_fraction higher or use balance: none")
        self.weight.fill_(spread[0] / spread[1])
        return True

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
        lam = self.lam if self.weight is None else self.lam * self.weight
        image = mse - lam * s
        pixel = sq.mean(1) + lam * (1 - ssim_map(x, x2, channel_mean=True, **kw))
        return Scores(image, pixel, {"mse": mse, "ssim": 1 - s})
