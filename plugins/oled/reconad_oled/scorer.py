"""OLED's anomaly scores (paper 001, §3.6): s_mask, s_cont, s_rec and their average s_avg.

The paper scales each part to [0, 1] by min-max and averages them into s_avg; it reports AUROC only, so it
needs no threshold. Over which images the min and max are taken (``scale``):

* ``"reference"`` (the default): the held-out normal images, once, when training ends (``fit_reference``; kept
  in the buffers ``ref_low`` / ``ref_high``, saved with the weights). Every image is then scored on its own,
  on one scale: a threshold taken on held-out images carries to any test set, one image scores the same
  alone or in a batch, and the score exports. Anomalies score above 1.
* ``"set"``: every scored set's own min and max (``finalize``), the paper's evaluation as written. A set full
  of anomalies stretches the range, so a threshold taken on one set does not carry to another (F1 0.001-0.003
  next to AUROC 0.97 on one-class MNIST); for comparing AUROCs with the paper only.

Until the reference is fitted (validation during training) the scores are scaled over the set, as ``"set"``.
The masks are the model's masker's (MM at test time).

s_rec needs ``R(x)``, the reconstruction of the intact image, which a composed model's forward pass does not
compute (its encoder reads the masked image): the scorer declares ``requires = ("recon_unmasked",)`` and the
core's ``ReconModel.score`` hands it ``outputs["recon_unmasked"]`` (``ReconModel.reconstruct(x)``: encoder ->
[memory] -> decoder without the masker).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from reconad.components import Scorer, Scores
from reconad.metrics import normalize_scores

from .losses import check_cont, oled_terms

__all__ = ["OLEDScorer"]

PARTS = ("mask", "cont", "rec")
SCALES = ("reference", "set")


class OLEDScorer(Scorer):
    """OLED's scores: parts s_mask, s_cont, s_rec (each min-max scaled, over the held-out normal images with
    ``scale: reference`` or over the scored set with ``scale: set``) and s_avg, their mean, as the image score.
    Pixel map: the squared error of the masked image's reconstruction (in [-1, 1] units, mean over channels).
    Needs a masker in the model (``oled``, or ``random_block`` for the CAE). ``cont``: the norm of s_cont's
    term, ``"l2"`` or ``"l1"`` (the authors' code), as the objective's."""

    requires = ("recon_unmasked",)  # R(x) for s_rec, given by ReconModel.score

    def __init__(self, cont: str = "l2", scale: str = "reference") -> None:
        super().__init__()
        self.cont = check_cont(cont, "oled scorer")
        if scale not in SCALES:
            raise ValueError(f"oled scorer: scale must be one of {', '.join(SCALES)} (the held-out normal "
                             f"images' min-max, or each scored set's as in the paper), got {scale!r}")
        self.scale = scale
        self.register_buffer("ref_low", torch.full((len(PARTS),), float("nan")))
        self.register_buffer("ref_high", torch.full((len(PARTS),), float("nan")))

    @property
    def fitted(self) -> bool:
        return self.scale == "reference" and not bool(torch.isnan(self.ref_low).any())

    @property
    def set_level(self) -> bool:  # type: ignore[override]
        return not self.fitted

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # a checkpoint written before the reference existed scores over the set, as it did then
        for key in ("ref_low", "ref_high"):
            state_dict.setdefault(prefix + key, torch.full((len(PARTS),), float("nan")))
        super()._load_from_state_dict(state_dict, prefix, *args)

    def _unmasked(self, outputs: dict[str, Any]) -> torch.Tensor:
        if outputs.get("recon_unmasked") is None:
            raise ValueError("oled scorer: s_rec needs outputs['recon_unmasked'] (R(x) on the intact image); "
                             "score through reconad.model.ReconModel.score, which provides it")
        return outputs["recon_unmasked"]

    def forward(self, outputs: dict[str, Any]) -> Scores:
        if "mask" not in outputs:
            raise ValueError("oled scorer: the model has no masker (outputs carry no 'mask'); set model.masker "
                             "(oled, or random_block with at_eval: true for the CAE baseline)")
        x, recon = outputs["input"], outputs["recon"]
        t = oled_terms(x, recon, outputs["mask"], self._unmasked(outputs), self.cont)
        pixel = (2.0 * (x.float() - recon.float())).pow(2).mean(1)
        parts = {"mask": t.mask, "cont": t.cont, "rec": t.rec}
        if self.scale == "reference":
            # a tensor condition, not `if self.fitted`: torch.export traces it (ONNX export); raw until fitted
            fitted = ~torch.isnan(self.ref_low).any()
            low = self.ref_low.nan_to_num(0.0)          # no NaN even in the branch not taken
            span = (self.ref_high - self.ref_low).nan_to_num(0.0)
            for i, p in enumerate(PARTS):   # as normalize_scores: a part constant on the reference reads 0
                scaled = torch.where(span[i] > 0, (parts[p] - low[i]) / span[i].clamp_min(1e-30),
                                     torch.zeros_like(parts[p]))
                parts[p] = torch.where(fitted, scaled, parts[p])
        return Scores((parts["mask"] + parts["cont"] + parts["rec"]) / 3.0, pixel, parts)

    def finalize(self, scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.fitted:
            return scores    # scaled in forward, image by image
        out = {p: normalize_scores(scores[p]) for p in PARTS}  # min-max over the set
        out["image"] = (out["mask"] + out["cont"] + out["rec"]) / 3.0
        return out

    def fit_reference(self, scores: dict[str, np.ndarray] | None) -> bool:
        self.ref_low.fill_(float("nan"))
        self.ref_high.fill_(float("nan"))
        if self.scale != "reference" or scores is None:
            return False
        if any(scores[p].size == 0 for p in PARTS):
            raise ValueError("oled scorer: scale 'reference' needs held-out normal images (none were scored); "
                             "set data.holdout_fraction > 0 or use scale: set")
        for i, p in enumerate(PARTS):
            self.ref_low[i] = float(np.min(scores[p]))
            self.ref_high[i] = float(np.max(scores[p]))
        return True
