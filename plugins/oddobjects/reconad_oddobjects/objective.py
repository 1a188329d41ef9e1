"""ODDObjects' training losses: the summed squared error plus alpha x memory entropy (eqs. 7, 8, 10), and the
CVAE's negative ELBO (eq. 4)."""
from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F

from reconad.builtin.objectives import ReconstructionObjective
from reconad.components import Objective

from .model import gaussian_kl

__all__ = ["ELBOObjective", "ReconstructionEntropyObjective", "squared_error"]


def squared_error(outputs: dict[str, Any]) -> torch.Tensor:
    """Per-image ``||x - x_hat||_2^2`` summed over channels and pixels (eq. 7): ``(B,)``."""
    diff = outputs["recon"].float() - outputs["input"].float()
    return diff.pow(2).flatten(1).sum(1)


class ReconstructionEntropyObjective(ReconstructionObjective):
    """ODDObjects' loss (eq. 10): summed squared error + alpha x memory addressing entropy.

    The batch mean of ``||x - x_hat||^2 + alpha E(w_hat)``; the entropy term only with a memory. This is the
    core ``reconstruction`` objective with the error summed per image (``reconstruction``) and without a KL
    term: eq. 10 has none, so a variational encoder's ``outputs["kl"]`` is ignored (``odd_elbo`` is the CVAE's
    loss).

    ``reduction: mean`` divides the squared error by the number of values per image (the core's MSE scale).
    """

    kl_term = False

    def __init__(self, entropy_weight: float = 0.0002, reduction: Literal["sum", "mean"] = "sum") -> None:
        if entropy_weight < 0:
            raise ValueError(f"odd_reconstruction: entropy_weight (alpha) must be >= 0, got {entropy_weight}")
        super().__init__(entropy_weight=float(entropy_weight))
        self.reduction = reduction

    def reconstruction(self, outputs: dict[str, Any]) -> torch.Tensor:
        err = squared_error(outputs)
        if self.reduction == "mean":
            err = err / outputs["input"][0].numel()
        return err.mean()


class ELBOObjective(Objective):
    """ODDObjects' CVAE loss: the negative ELBO (eq. 4), Bernoulli or Gaussian likelihood + KL.

    Per image ``-log p(x | z) + KL(q(z | x) || N(0, I))``, averaged over the batch.

    ``likelihood: bernoulli`` is the authors' sigmoid cross-entropy on the decoder's logits; ``gaussian`` is
    ``N(x; x_hat, sigma^2)`` per pixel. The KL is the closed form for a diagonal Gaussian posterior (the
    authors' one-sample estimate has the same expectation). Needs an encoder returning ``mu`` and ``logvar``.
    """

    def __init__(self, likelihood: Literal["bernoulli", "gaussian"] = "bernoulli", sigma: float = 0.1,
                 kl_weight: float = 1.0) -> None:
        if sigma <= 0:
            raise ValueError(f"odd_elbo: sigma must be > 0, got {sigma}")
        self.likelihood, self.sigma, self.kl_weight = likelihood, float(sigma), float(kl_weight)

    def nll(self, outputs: dict[str, Any]) -> torch.Tensor:
        """Per-image ``-log p(x | z)``: ``(B,)``."""
        x = outputs["input"].float()
        if self.likelihood == "bernoulli":
            logits = outputs.get("recon_logits")
            if logits is not None:
                per = F.binary_cross_entropy_with_logits(logits.float(), x, reduction="none")
            else:
                per = F.binary_cross_entropy(outputs["recon"].float().clamp(1e-6, 1 - 1e-6), x, reduction="none")
        else:
            per = (0.5 * ((x - outputs["recon"].float()) / self.sigma) ** 2
                   + math.log(self.sigma) + 0.5 * math.log(2 * math.pi))
        return per.flatten(1).sum(1)

    def loss(self, outputs: dict[str, Any], batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        if outputs.get("mu") is None or outputs.get("logvar") is None:
            raise ValueError("odd_elbo: the model's outputs have no 'mu' / 'logvar'; use a variational encoder "
                             "such as odd_cvae (model.encoder.name: odd_cvae)")
        nll = self.nll(outputs).mean()
        kl = gaussian_kl(outputs["mu"], outputs["logvar"]).mean()
        return {"loss": nll + self.kl_weight * kl, "nll": nll, "kl": kl}
